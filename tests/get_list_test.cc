// GetUploading and ListUploadings end to end: real server, real simulator.
#include <thread>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/generic/generic_stub.h"
#include "service/common/status_details.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using ::testing::Not;

class GetListTest : public ServiceTest {};

TEST_F(GetListTest, GetReturnsMetricasUploadingFieldForField) {
  v1::Uploading u = MakeUploading(12, v1::Uploading::MATCHED);
  u.set_linked_quantity(90);
  u.set_goal_not_found_quantity(2);
  metrica_.AddUploading(kCounter, u);
  StartServer();

  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(12);
  v1::GetUploadingResponse response;
  grpc::Status status = stub_->GetUploading(Context().get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(MessageDifferencer::Equals(response.uploading(), u))
      << response.uploading().DebugString();
}

// The first answer comes from Metrica, the next ones from the cache, each
// serialized its own way (service/grpc/uploading_service_impl.cc): the same
// message every time.
TEST_F(GetListTest, ACachedAnswerIsMetricasUploadingFieldForField) {
  v1::Uploading u = MakeUploading(12, v1::Uploading::PROCESSED);
  u.set_linked_quantity(90);
  u.set_goal_not_found_quantity(2);
  metrica_.AddUploading(kCounter, u);
  StartServer();
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(12);
  for (int i = 0; i < 3; ++i) {
    v1::GetUploadingResponse response;
    grpc::Status status =
        stub_->GetUploading(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message();
    EXPECT_TRUE(MessageDifferencer::Equals(response.uploading(), u))
        << i << ": " << response.uploading().DebugString();
  }
  EXPECT_EQ(UpstreamCallsFor(12), 1);  // the others were cached
}

TEST_F(GetListTest, InvalidIdsAreRejectedWithoutAnUpstreamCall) {
  StartServer();
  for (auto [counter, id] : std::vector<std::pair<int32_t, int64_t>>{
           {0, 12}, {-5, 12}, {kCounter, 0}, {kCounter, -1}}) {
    v1::GetUploadingRequest request;
    request.set_counter_id(counter);
    request.set_uploading_id(id);
    v1::GetUploadingResponse response;
    grpc::Status status =
        stub_->GetUploading(Context().get(), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("must be a positive"));
  }
  EXPECT_TRUE(metrica_.requests().empty());
}

TEST_F(GetListTest, AnEmptyRequestIsInvalidNotUndecodable) {
  StartServer();
  v1::GetUploadingResponse response;
  grpc::Status status = stub_->GetUploading(
      Context().get(), v1::GetUploadingRequest(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("counter_id must be a positive"));
  EXPECT_TRUE(metrica_.requests().empty());
}

// Bytes that are no protobuf (a truncated varint), sent to `method` as they
// are: the status of the call.
grpc::Status CallWithUndecodableBytes(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& method) {
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  const char garbage[] = {'\x08', '\xff', '\xff', '\xff'};
  grpc::Slice slice(garbage, sizeof(garbage));
  grpc::ByteBuffer request(&slice, 1);
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      generic.PrepareUnaryCall(&context, method, request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(cq.Next(&tag, &ok));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// GetUploading and the two watches parse their own requests (raw API),
// ListUploadings through the DecodeErrorInterceptor: all say the same.
TEST_F(GetListTest, UndecodableRequestsAreInvalidArgumentSayingWhy) {
  StartServer();
  for (const char* method : {"GetUploading", "ListUploadings", "WatchUploading",
                             "WatchUploadings"}) {
    grpc::Status status = CallWithUndecodableBytes(
        channel_,
        absl::StrCat("/metrika.offline_conversions.v1.UploadingService/",
                     method));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << method << ": " << status.error_message();
    EXPECT_THAT(status.error_message(),
                HasSubstr(absl::StrCat("the request is not a valid ", method,
                                       " request")));
  }
  EXPECT_TRUE(metrica_.requests().empty());
}

TEST_F(GetListTest, NoTokenAnywhereIsUnauthenticatedWithoutAnUpstreamCall) {
  config_.default_token = "";
  StartServer();
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(12);
  v1::GetUploadingResponse response;
  grpc::Status status = stub_->GetUploading(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("authorization: OAuth"));
  EXPECT_TRUE(metrica_.requests().empty());
}

TEST_F(GetListTest, TheCallsTokenWinsOverTheServers) {
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PREPARED));
  metrica_.GrantAccess("tenant-b-token", kCounter);
  StartServer();
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(12);
  v1::GetUploadingResponse response;
  ASSERT_TRUE(stub_->GetUploading(Context(absl::Seconds(5), "tenant-b-token").get(),
                                  request, &response)
                  .ok());
  auto requests = metrica_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].token, "tenant-b-token");
}

TEST_F(GetListTest, ConcurrentIdenticalGetsShareOneUpstreamRequest) {
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::UPLOADED));
  FakeMetrica::Fault slow;
  slow.path_substring = "/uploading/12";
  slow.delay = absl::Milliseconds(400);
  slow.times = -1;
  metrica_.InjectFault(slow);
  StartServer();

  constexpr int kCallers = 30;
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&] {
      v1::GetUploadingRequest request;
      request.set_counter_id(kCounter);
      request.set_uploading_id(12);
      v1::GetUploadingResponse response;
      if (stub_->GetUploading(Context().get(), request, &response).ok() &&
          response.uploading().status() == v1::Uploading::UPLOADED) {
        ++ok;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(ok.load(), kCallers);
  // All 30 arrived while the first request was on its way (400 ms).
  EXPECT_EQ(UpstreamCallsFor(12), 1);
}

TEST_F(GetListTest, TerminalStatesAreCachedLongOthersBriefly) {
  metrica_.AddUploading(kCounter, MakeUploading(1, v1::Uploading::PROCESSED));
  metrica_.AddUploading(kCounter, MakeUploading(2, v1::Uploading::EXPORTED));
  StartServer();
  auto get = [&](int64_t id) {
    v1::GetUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(id);
    v1::GetUploadingResponse response;
    EXPECT_TRUE(stub_->GetUploading(Context().get(), request, &response).ok());
  };
  get(1);
  get(2);
  get(1);
  get(2);
  EXPECT_EQ(UpstreamCallsFor(1), 1);
  EXPECT_EQ(UpstreamCallsFor(2), 1);  // within cache_ttl (50 ms)
  absl::SleepFor(absl::Milliseconds(150));
  get(1);
  get(2);
  EXPECT_EQ(UpstreamCallsFor(1), 1);  // terminal: never asked again
  EXPECT_EQ(UpstreamCallsFor(2), 2);  // stale: asked again
}

TEST_F(GetListTest, ATenantNeverSeesAnotherTenantsCachedAnswer) {
  metrica_.AddUploading(kCounter, MakeUploading(7, v1::Uploading::PROCESSED));
  metrica_.AddToken("tenant-b-token");  // known, but no access to kCounter
  StartServer();
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(7);
  v1::GetUploadingResponse response;
  ASSERT_TRUE(stub_->GetUploading(Context().get(), request, &response).ok());

  grpc::Status denied = stub_->GetUploading(
      Context(absl::Seconds(5), "tenant-b-token").get(), request, &response);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(UpstreamCallsFor(7), 2);  // tenant B was asked about, not served

  absl::Status rich = FromGrpcStatus(denied);
  auto info = GetErrorInfo(rich);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "ACCESS_DENIED");
}

TEST_F(GetListTest, UpstreamErrorsReachTheCallerWithTheirCodeAndDetails) {
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PREPARED));
  StartServer();
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(404404);
  v1::GetUploadingResponse response;
  grpc::Status status = stub_->GetUploading(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  auto info = GetErrorInfo(FromGrpcStatus(status));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "NOT_FOUND");

  FakeMetrica::Fault quota;
  quota.path_substring = "/uploading/12";
  quota.http_status = 429;
  quota.error_type = "quota_requests_by_uid";
  quota.retry_after_seconds = 7;
  quota.times = -1;
  metrica_.InjectFault(quota);
  request.set_uploading_id(12);
  status = stub_->GetUploading(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  absl::Status rich = FromGrpcStatus(status);
  ASSERT_TRUE(GetErrorInfo(rich).has_value());
  EXPECT_EQ(GetErrorInfo(rich)->reason(), "QUOTA_REQUESTS_BY_UID");
  EXPECT_EQ(GetRetryDelay(rich), absl::Seconds(7));
}

TEST_F(GetListTest, ListPassesParametersAndKeepsMetricasOrder) {
  for (int id = 1; id <= 5; ++id) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::PREPARED));
  }
  v1::Uploading call = MakeUploading(6, v1::Uploading::PREPARED);
  call.set_type(v1::Uploading::CALLS);
  metrica_.AddUploading(kCounter, call);
  StartServer();

  v1::ListUploadingsRequest request;
  request.set_counter_id(kCounter);
  request.set_limit(2);
  request.set_offset(1);
  v1::ListUploadingsResponse response;
  ASSERT_TRUE(stub_->ListUploadings(Context().get(), request, &response).ok());
  ASSERT_EQ(response.uploadings_size(), 2);
  EXPECT_EQ(response.uploadings(0).id(), 4);  // newest first, one skipped
  EXPECT_EQ(response.uploadings(1).id(), 3);
  auto requests = metrica_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0].query, HasSubstr("limit=2"));
  EXPECT_THAT(requests[0].query, HasSubstr("offset=1"));

  request.Clear();
  request.set_counter_id(kCounter);
  request.set_type(v1::Uploading::CALLS);
  ASSERT_TRUE(stub_->ListUploadings(Context().get(), request, &response).ok());
  ASSERT_EQ(response.uploadings_size(), 1);
  EXPECT_EQ(response.uploadings(0).id(), 6);
}

TEST_F(GetListTest, ListRejectsBadParametersWithoutAnUpstreamCall) {
  StartServer();
  std::vector<v1::ListUploadingsRequest> bad(4);
  bad[0].set_counter_id(0);
  bad[1].set_counter_id(kCounter);
  bad[1].set_limit(10001);
  bad[2].set_counter_id(kCounter);
  bad[2].set_offset(-1);
  bad[3].set_counter_id(kCounter);
  bad[3].set_type(static_cast<v1::Uploading::Type>(42));
  for (const auto& request : bad) {
    v1::ListUploadingsResponse response;
    grpc::Status status =
        stub_->ListUploadings(Context().get(), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << request.DebugString();
  }
  EXPECT_TRUE(metrica_.requests().empty());
}

TEST_F(GetListTest, TokensNeverAppearInLogsOrStatusMessages) {
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PREPARED));
  StartServer();
  std::vector<grpc::Status> statuses;
  for (const char* token : {"", "wrong-token-xyz"}) {
    for (int64_t id : {12, 13}) {
      v1::GetUploadingRequest request;
      request.set_counter_id(kCounter);
      request.set_uploading_id(id);
      v1::GetUploadingResponse response;
      statuses.push_back(stub_->GetUploading(
          Context(absl::Seconds(5), token).get(), request, &response));
    }
  }
  auto ctx = Context();
  ctx->AddMetadata("authorization", "Basic secret-basic-creds");
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(12);
  v1::GetUploadingResponse response;
  statuses.push_back(stub_->GetUploading(ctx.get(), request, &response));
  EXPECT_EQ(statuses.back().error_code(), grpc::StatusCode::UNAUTHENTICATED);

  const auto lines = LogLines();
  ASSERT_EQ(lines.size(), statuses.size());
  for (const auto& line : lines) {
    EXPECT_THAT(line, HasSubstr("rpc=GetUploading"));
    EXPECT_THAT(line, HasSubstr("counter=2215573"));
    EXPECT_THAT(line, HasSubstr("latency_ms="));
    for (const char* secret : {kToken, "wrong-token-xyz", "secret-basic-creds"}) {
      EXPECT_THAT(line, Not(HasSubstr(secret)));
    }
  }
  for (const auto& s : statuses) {
    for (const char* secret : {kToken, "wrong-token-xyz", "secret-basic-creds"}) {
      EXPECT_THAT(s.error_message(), Not(HasSubstr(secret)));
      EXPECT_THAT(s.error_details(), Not(HasSubstr(secret)));
    }
  }
}

}  // namespace
}  // namespace uploadwatch::testing
