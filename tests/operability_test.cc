// Health, reflection and graceful shutdown, end to end.
#include <thread>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.pb.h"
#include "grpcpp/impl/codegen/client_callback.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/impl/codegen/sync_stream.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;

class OperabilityTest : public ServiceTest {};

TEST_F(OperabilityTest, HealthServiceSaysServing) {
  StartServer();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  HealthCheckResponse response;
  grpc::Status status =
      health->Check(Context().get(), HealthCheckRequest(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
}

TEST_F(OperabilityTest, ReflectionDescribesTheUploadingService) {
  StartServer();
  namespace wire = ::uploadwatch::testing::reflection_wire;
  // What a generated stub would do, on the real method path (see the proto).
  const grpc::internal::RpcMethod method(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      grpc::internal::RpcMethod::BIDI_STREAMING, channel_);
  auto ctx = Context();
  std::unique_ptr<grpc::ClientReaderWriter<wire::ServerReflectionRequest,
                                           wire::ServerReflectionResponse>>
      stream(grpc::internal::ClientReaderWriterFactory<
             wire::ServerReflectionRequest,
             wire::ServerReflectionResponse>::Create(channel_.get(), method,
                                                     ctx.get()));
  wire::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  wire::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> names;
  for (const auto& s : response.list_services_response().service()) {
    names.push_back(s.name());
  }
  EXPECT_THAT(names, ::testing::Contains(
                         "metrika.offline_conversions.v1.UploadingService"));
  EXPECT_THAT(names, ::testing::Contains("grpc.health.v1.Health"));

  request.set_file_containing_symbol(
      "metrika.offline_conversions.v1.UploadingService");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_GT(response.file_descriptor_response().file_descriptor_proto_size(), 0);
  google::protobuf::FileDescriptorProto file;
  ASSERT_TRUE(file.ParseFromString(
      response.file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(file.package(), "metrika.offline_conversions.v1");
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(OperabilityTest, ShutdownEndsOpenWatchesWithUnavailableAndAHint) {
  metrica_.AddUploading(kCounter, MakeUploading(41, v1::Uploading::EXPORTED));
  metrica_.AddUploading(kCounter, MakeUploading(42, v1::Uploading::MATCHED));
  StartServer();
  constexpr int kWatchers = 6;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::WatchUploadingResponse>>>
      readers;
  for (int i = 0; i < kWatchers; ++i) {
    contexts.push_back(Context());
    v1::WatchUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(41 + i % 2);
    readers.push_back(stub_->WatchUploading(contexts.back().get(), request));
    v1::WatchUploadingResponse m;
    ASSERT_TRUE(readers.back()->Read(&m));
  }
  EXPECT_EQ(server_->stats().watchers, static_cast<size_t>(kWatchers));

  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Seconds(5));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));  // nothing to wait for
  for (auto& reader : readers) {
    v1::WatchUploadingResponse m;
    EXPECT_FALSE(reader->Read(&m));
    grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(), HasSubstr("re-watch"));
  }
  // New calls are refused.
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(41);
  v1::GetUploadingResponse response;
  EXPECT_FALSE(stub_->GetUploading(Context(absl::Seconds(1)).get(), request,
                                   &response)
                   .ok());
}

TEST_F(OperabilityTest, ShutdownLetsACallInProgressFinishWithinTheGrace) {
  metrica_.AddUploading(kCounter, MakeUploading(43, v1::Uploading::MATCHED));
  FakeMetrica::Fault slow;
  slow.path_substring = "/uploading/43";
  slow.delay = absl::Milliseconds(600);
  metrica_.InjectFault(slow);
  StartServer();
  grpc::Status status;
  v1::GetUploadingResponse response;
  std::thread caller([&] {
    v1::GetUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(43);
    status = stub_->GetUploading(Context().get(), request, &response);
  });
  absl::SleepFor(absl::Milliseconds(200));  // the call is waiting on Metrica
  server_->Shutdown(absl::Seconds(5));
  caller.join();
  EXPECT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
}

TEST_F(OperabilityTest, OversizedRequestsAreRefused) {
  config_.max_receive_message_bytes = 1024;
  StartServer();
  v1::ListUploadingsRequest request;
  request.set_counter_id(kCounter);
  // Unknown field 99 padded to 4 KiB: a request far larger than any real one.
  request.GetReflection()->MutableUnknownFields(&request)->AddLengthDelimited(
      99, std::string(4096, 'x'));
  v1::ListUploadingsResponse response;
  grpc::Status status =
      stub_->ListUploadings(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(metrica_.requests().empty());
}

}  // namespace
}  // namespace uploadwatch::testing
