#include "service/metrica/json_mapping.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

using ::metrika::offline_conversions::v1::Uploading;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The example body on Metrica's reference page, verbatim.
constexpr char kSeedPageExample[] = R"({
    "uploading": {
        "id": 0,
        "create_time": "2022-12-29T18:02:01Z",
        "source_quantity": 0,
        "line_quantity": 0,
        "comment": "string",
        "client_id_type": "USER_ID",
        "status": "string"
    }
})";

TEST(ParseUploadingBody, SeedPageExampleParsesExactly) {
  auto parsed = ParseUploadingBody(kSeedPageExample);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Uploading& u = parsed->uploading();
  EXPECT_EQ(u.id(), 0);
  EXPECT_EQ(u.create_time().seconds(), 1672336921);  // 2022-12-29T18:02:01Z
  EXPECT_EQ(u.create_time().nanos(), 0);
  EXPECT_EQ(u.comment(), "string");
  EXPECT_EQ(u.client_id_type(), Uploading::USER_ID);
  EXPECT_EQ(u.client_id_type_raw(), "");
  // The page's "status": "string" is no status we know: kept, not lost.
  EXPECT_EQ(u.status(), Uploading::STATUS_UNSPECIFIED);
  EXPECT_EQ(u.status_raw(), "string");
}

TEST(ParseUploadingBody, EveryNewerFieldIsMapped) {
  auto parsed = ParseUploadingBody(R"({"uploading": {
      "id": 9007199254740993, "create_time": "2024-03-01T10:00:00.250Z",
      "source_quantity": 120, "line_quantity": 117, "comment": "CRM export",
      "client_id_type": "CLIENT_ID", "status": "PROCESSED", "type": "CALLS",
      "goal_not_found_quantity": 3, "user_not_found_quantity": 4,
      "linked_quantity": 110, "static_calls_quantity": 7,
      "dynamic_calls_quantity": 8}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Uploading& u = parsed->uploading();
  EXPECT_EQ(u.id(), 9007199254740993);  // beyond a double's exact range
  EXPECT_EQ(u.create_time().nanos(), 250000000);
  EXPECT_EQ(u.source_quantity(), 120);
  EXPECT_EQ(u.line_quantity(), 117);
  EXPECT_EQ(u.comment(), "CRM export");
  EXPECT_EQ(u.client_id_type(), Uploading::CLIENT_ID);
  EXPECT_EQ(u.status(), Uploading::PROCESSED);
  EXPECT_EQ(u.type(), Uploading::CALLS);
  EXPECT_EQ(u.goal_not_found_quantity(), 3);
  EXPECT_EQ(u.user_not_found_quantity(), 4);
  EXPECT_EQ(u.linked_quantity(), 110);
  EXPECT_EQ(u.static_calls_quantity(), 7);
  EXPECT_EQ(u.dynamic_calls_quantity(), 8);
  EXPECT_EQ(u.status_raw(), "");
  EXPECT_EQ(u.type_raw(), "");
}

TEST(ParseUploadingBody, UnknownFieldsAreIgnored) {
  auto parsed = ParseUploadingBody(R"({"uploading": {"id": 5,
      "status": "MATCHED", "new_field": {"nested": [1, 2]}, "other": null},
      "meta": "x"})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->uploading().id(), 5);
  EXPECT_EQ(parsed->uploading().status(), Uploading::MATCHED);
}

TEST(ParseUploadingBody, UnknownEnumValuesAreKeptRaw) {
  auto parsed = ParseUploadingBody(R"({"uploading": {"id": 5,
      "status": "ARCHIVED", "client_id_type": "PHONE", "type": "EMAILS"}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Uploading& u = parsed->uploading();
  EXPECT_EQ(u.status(), Uploading::STATUS_UNSPECIFIED);
  EXPECT_EQ(u.status_raw(), "ARCHIVED");
  EXPECT_EQ(u.client_id_type(), Uploading::CLIENT_ID_TYPE_UNSPECIFIED);
  EXPECT_EQ(u.client_id_type_raw(), "PHONE");
  EXPECT_EQ(u.type(), Uploading::TYPE_UNSPECIFIED);
  EXPECT_EQ(u.type_raw(), "EMAILS");
}

TEST(ParseUploadingBody, NumericEnumValuesWithoutANameAreUnknownToo) {
  // Found by fuzzing: 4 was kept as an enum value no name maps to, then
  // lost when printed.
  auto parsed = ParseUploadingBody(R"({"uploading":{"id":1,"client_id_type":4}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->uploading().client_id_type(),
            Uploading::CLIENT_ID_TYPE_UNSPECIFIED);
  EXPECT_EQ(parsed->uploading().client_id_type_raw(), "4");
}

TEST(ParseUploadingBody, RawKeysInTheBodyAreNotTrusted) {
  auto parsed = ParseUploadingBody(
      R"({"uploading":{"id":1,"status":"PROCESSED","status_raw":"x"}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->uploading().status(), Uploading::PROCESSED);
  EXPECT_EQ(parsed->uploading().status_raw(), "");
}

TEST(ParseUploadingBody, LowerCaseEnumValuesParse) {
  auto parsed = ParseUploadingBody(R"({"uploading": {"id": 5,
      "status": "linkage_failure", "client_id_type": "yclid", "type": "chats"}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Uploading& u = parsed->uploading();
  EXPECT_EQ(u.status(), Uploading::LINKAGE_FAILURE);
  EXPECT_EQ(u.client_id_type(), Uploading::YCLID);
  EXPECT_EQ(u.type(), Uploading::CHATS);
  EXPECT_EQ(u.status_raw(), "");
}

TEST(ParseUploadingBody, MalformedJsonIsAClearError) {
  for (const char* body : {"", "{", "not json", R"({"uploading": {"id": 5,)",
                           R"({"uploading": {"id": "five"}})", "[]", "null"}) {
    auto parsed = ParseUploadingBody(body);
    ASSERT_FALSE(parsed.ok()) << body;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(),
                HasSubstr("malformed Metrica uploading body"));
  }
}

TEST(ParseUploadingBody, TruncatedBodyIsAClearErrorAtEveryCut) {
  const std::string full = kSeedPageExample;
  for (size_t cut = 0; cut + 1 < full.size(); ++cut) {
    auto parsed = ParseUploadingBody(full.substr(0, cut));
    EXPECT_FALSE(parsed.ok()) << "accepted a body cut at " << cut;
  }
}

TEST(ParseUploadingBody, MissingEnvelopeKeyIsAnError) {
  auto parsed = ParseUploadingBody(R"({"uploadings": []})");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr("\"uploading\""));
}

TEST(ParseUploadingsBody, ListKeepsOrderAndRawValuesPerItem) {
  auto parsed = ParseUploadingsBody(R"({"uploadings": [
      {"id": 3, "status": "PREPARED"},
      {"id": 2, "status": "SOMETHING_NEW"},
      {"id": 1, "status": "processed"}]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->uploadings_size(), 3);
  EXPECT_EQ(parsed->uploadings(0).status(), Uploading::PREPARED);
  EXPECT_EQ(parsed->uploadings(1).status_raw(), "SOMETHING_NEW");
  EXPECT_EQ(parsed->uploadings(2).status(), Uploading::PROCESSED);
  EXPECT_EQ(parsed->uploadings(2).id(), 1);
}

TEST(ParseUploadingsBody, NullItemsDoNotShiftRawValuesOntoOtherUploadings) {
  // Found with the fuzzer: the typed parse skips nulls, the raw view did not.
  auto parsed = ParseUploadingsBody(
      R"({"uploadings":[null,{"id":1,"status":"FOO"},{"id":2,"status":"BAR"}]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->uploadings_size(), 2);
  EXPECT_EQ(parsed->uploadings(0).id(), 1);
  EXPECT_EQ(parsed->uploadings(0).status_raw(), "FOO");
  EXPECT_EQ(parsed->uploadings(1).status_raw(), "BAR");
}

TEST(ParseUploadingsBody, EmptyListIsFineButNoListIsNot) {
  auto empty = ParseUploadingsBody(R"({"uploadings": []})");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->uploadings_size(), 0);
  EXPECT_FALSE(ParseUploadingsBody(R"({"uploadings": {}})").ok());
  EXPECT_FALSE(ParseUploadingsBody(R"({})").ok());
}

TEST(ParseErrorBody, MetricaErrorBodyIsStructured) {
  MetricaError e = ParseErrorBody(403, R"({"errors":[
      {"error_type":"access_denied","message":"Access is denied"},
      {"error_type":"quota_requests_by_uid","message":"Quota"}],
      "code":403,"message":"Access is denied"})");
  EXPECT_EQ(e.http_code, 403);
  EXPECT_EQ(e.error_type, "access_denied");
  EXPECT_EQ(e.message, "Access is denied");
  EXPECT_THAT(e.error_types, ElementsAre("access_denied", "quota_requests_by_uid"));
}

TEST(ParseErrorBody, NonJsonBodyGivesOnlyTheHttpCode) {
  for (const char* body : {"<html>502 Bad Gateway</html>", "", "{\"errors\":",
                           R"({"errors": "nope", "code": "x"})"}) {
    MetricaError e = ParseErrorBody(502, body);
    EXPECT_EQ(e.http_code, 502) << body;
    EXPECT_EQ(e.error_type, "") << body;
    EXPECT_TRUE(e.error_types.empty()) << body;
  }
}

TEST(ToJson, RoundTripsThroughMetricasShape) {
  Uploading u;
  u.set_id(12);
  u.mutable_create_time()->set_seconds(1672336921);
  u.set_source_quantity(10);
  u.set_comment("q4 \"deals\"");
  u.set_client_id_type(Uploading::YCLID);
  u.set_status_raw("ARCHIVED");
  u.set_type(Uploading::BASIC);
  const std::string json = UploadingToJson(u);
  EXPECT_THAT(json, HasSubstr(R"("id":12)"));
  EXPECT_THAT(json, HasSubstr(R"("status":"ARCHIVED")"));
  EXPECT_THAT(json, HasSubstr(R"("create_time":"2022-12-29T18:02:01Z")"));
  EXPECT_THAT(json, ::testing::Not(HasSubstr("_raw")));
  // Metrica's field order, every time.
  EXPECT_TRUE(absl::StartsWith(
      json, R"({"id":12,"create_time":"2022-12-29T18:02:01Z","source_quantity":10,)"))
      << json;
  EXPECT_LT(json.find("\"comment\""), json.find("\"client_id_type\""));
  EXPECT_LT(json.find("\"client_id_type\""), json.find("\"status\""));

  metrika::offline_conversions::v1::GetUploadingResponse envelope;
  *envelope.mutable_uploading() = u;
  auto back = ParseUploadingBody(GetUploadingResponseToJson(envelope));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      back->uploading(), u))
      << back->uploading().DebugString();
}

TEST(ToJson, UnknownEnumsAreLeftOutAndHugeIdsStayExact) {
  Uploading u;
  u.set_id(9007199254740993);
  const std::string json = UploadingToJson(u);
  EXPECT_THAT(json, HasSubstr(R"("id":"9007199254740993")"));
  EXPECT_THAT(json, ::testing::Not(HasSubstr("status")));
  EXPECT_THAT(json, ::testing::Not(HasSubstr("UNSPECIFIED")));
  EXPECT_THAT(json, ::testing::Not(HasSubstr("create_time")));
  auto back = ParseUploadingBody(absl::StrCat(R"({"uploading":)", json, "}"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->uploading().id(), 9007199254740993);
}

TEST(ToJson, ListEnvelopeRoundTrips) {
  metrika::offline_conversions::v1::ListUploadingsResponse list;
  list.add_uploadings()->set_id(2);
  list.add_uploadings()->set_id(1);
  list.mutable_uploadings(1)->set_status(Uploading::MATCHED);
  auto back = ParseUploadingsBody(ListUploadingsResponseToJson(list));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*back, list));
}

}  // namespace
}  // namespace uploadwatch
