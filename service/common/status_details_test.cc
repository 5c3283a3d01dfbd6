#include "service/common/status_details.h"

#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

TEST(StatusDetails, ErrorAndRetryInfoSurviveTheTripThroughGrpc) {
  absl::Status status = absl::ResourceExhaustedError("Metrica 429 quota");
  SetErrorInfo(status, "QUOTA_REQUESTS_BY_UID", "api-metrika.yandex.net");
  SetRetryInfo(status, absl::Milliseconds(1500));

  grpc::Status wire = ToGrpcStatus(status);
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(wire.error_message(), "Metrica 429 quota");
  google::rpc::Status rich;
  ASSERT_TRUE(rich.ParseFromString(wire.error_details()));
  EXPECT_EQ(rich.code(), 8);
  ASSERT_EQ(rich.details_size(), 2);

  absl::Status back = FromGrpcStatus(wire);
  EXPECT_EQ(back.code(), absl::StatusCode::kResourceExhausted);
  auto info = GetErrorInfo(back);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "QUOTA_REQUESTS_BY_UID");
  EXPECT_EQ(info->domain(), "api-metrika.yandex.net");
  EXPECT_EQ(GetRetryDelay(back), absl::Milliseconds(1500));
}

TEST(StatusDetails, PlainStatusHasNoDetails) {
  grpc::Status wire = ToGrpcStatus(absl::NotFoundError("no such uploading"));
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(wire.error_details().empty());
  EXPECT_FALSE(GetErrorInfo(FromGrpcStatus(wire)).has_value());
}

TEST(StatusDetails, UnknownPayloadsStayInside) {
  absl::Status status = absl::InternalError("x");
  status.SetPayload("type.example.com/secret", absl::Cord("token"));
  EXPECT_TRUE(ToGrpcStatus(status).error_details().empty());
}

TEST(StatusDetails, OkMapsToOk) {
  absl::Status ok;
  SetErrorInfo(ok, "X", "y");
  EXPECT_TRUE(ok.ok());
  EXPECT_TRUE(ToGrpcStatus(ok).ok());
}

}  // namespace
}  // namespace uploadwatch
