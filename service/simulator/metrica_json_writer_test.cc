#include "service/simulator/metrica_json_writer.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "service/metrica/json_mapping.h"

namespace uploadwatch {
namespace {

using ::google::protobuf::util::MessageDifferencer;
namespace v1 = ::metrika::offline_conversions::v1;
using ::metrika::offline_conversions::v1::Uploading;

Uploading Full(int64_t id) {
  Uploading u;
  u.set_id(id);
  u.mutable_create_time()->set_seconds(1672336921);  // 2022-12-29T18:02:01Z
  u.set_source_quantity(1500);
  u.set_line_quantity(1480);
  u.set_comment("CRM \"export\", December\n");
  u.set_client_id_type(Uploading::CLIENT_ID);
  u.set_status(Uploading::MATCHED);
  u.set_type(Uploading::CALLS);
  u.set_goal_not_found_quantity(2);
  u.set_user_not_found_quantity(86);
  u.set_linked_quantity(1392);
  u.set_static_calls_quantity(7);
  u.set_dynamic_calls_quantity(5);
  return u;
}

TEST(MetricaJsonWriter, CanonicalFormIsMetricasDocumentedShape) {
  MetricaJsonWriter writer(/*vary=*/false, 1);
  EXPECT_EQ(
      writer.UploadingBody(Full(12)),
      R"({"uploading":{"id":12,"create_time":"2022-12-29T18:02:01Z",)"
      R"("source_quantity":1500,"line_quantity":1480,)"
      R"("comment":"CRM \"export\", December\n","client_id_type":"CLIENT_ID",)"
      R"("status":"MATCHED","type":"CALLS","goal_not_found_quantity":2,)"
      R"("user_not_found_quantity":86,"linked_quantity":1392,)"
      R"("static_calls_quantity":7,"dynamic_calls_quantity":5}})");
}

TEST(MetricaJsonWriter, EveryVariationParsesToTheSameUploading) {
  MetricaJsonWriter writer(/*vary=*/true, 7);
  for (int i = 0; i < 200; ++i) {
    const Uploading u = Full(1000 + i);
    const std::string body = writer.UploadingBody(u);
    absl::StatusOr<v1::GetUploadingResponse> parsed = ParseUploadingBody(body);
    ASSERT_TRUE(parsed.ok()) << parsed.status() << " in " << body;
    EXPECT_TRUE(MessageDifferencer::Equals(parsed->uploading(), u)) << body;
  }
}

TEST(MetricaJsonWriter, ListsVaryPerUploading) {
  MetricaJsonWriter writer(/*vary=*/true, 3);
  std::vector<Uploading> page;
  for (int i = 0; i < 50; ++i) page.push_back(Full(i + 1));
  const std::string body = writer.UploadingsBody(page);
  absl::StatusOr<v1::ListUploadingsResponse> parsed = ParseUploadingsBody(body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->uploadings_size(), 50);
  for (int i = 0; i < 50; ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(parsed->uploadings(i), page[i]));
  }
  EXPECT_TRUE(absl::StrContains(body, R"("id":"7")") ||
              absl::StrContains(body, R"("id":"8")"));
}

// Each variation the issue names shows up (the seed is fixed: this is exact).
TEST(MetricaJsonWriter, ShowsEveryVariation) {
  MetricaJsonWriter writer(/*vary=*/true, 11);
  std::string all;
  int reordered = 0;
  for (int i = 0; i < 64; ++i) {
    const std::string object = writer.UploadingObject(Full(42));
    if (!absl::StartsWith(object, R"({"id":)")) ++reordered;
    all += object;
  }
  EXPECT_THAT(all, ::testing::HasSubstr(R"("id":"42")"));
  EXPECT_THAT(all, ::testing::HasSubstr(R"("id":42)"));
  EXPECT_THAT(all, ::testing::HasSubstr(R"("status":"matched")"));
  EXPECT_THAT(all, ::testing::HasSubstr(R"("client_id_type":"client_id")"));
  EXPECT_THAT(all, ::testing::HasSubstr(R"("status":"MATCHED")"));
  EXPECT_THAT(all, ::testing::HasSubstr(R"("create_time":"2022-12-29T21:02:01+03:00")"));
  EXPECT_THAT(all, ::testing::HasSubstr(R"("create_time":"2022-12-29T18:02:01Z")"));
  EXPECT_THAT(all, ::testing::HasSubstr(R"("processing":{)"));
  EXPECT_GT(reordered, 0);
}

TEST(MetricaJsonWriter, UnknownValuesAreWrittenVerbatimEvenInLowerCaseMode) {
  MetricaJsonWriter writer(/*vary=*/true, 5);
  Uploading u = Full(9);
  u.clear_status();
  u.set_status_raw("REVALIDATING");
  for (int i = 0; i < 20; ++i) {
    const std::string body = writer.UploadingBody(u);
    EXPECT_THAT(body, ::testing::HasSubstr(R"("status":"REVALIDATING")"));
    absl::StatusOr<v1::GetUploadingResponse> parsed = ParseUploadingBody(body);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->uploading().status_raw(), "REVALIDATING");
  }
}

TEST(MetricaJsonWriter, QuotesControlCharacters) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), R"("a\"b\\c\n\u0001")");
}

}  // namespace
}  // namespace uploadwatch
