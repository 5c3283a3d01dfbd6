// The CLI's output, byte for byte, from fixed inputs.
#include "client/cli_format.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "service/common/status_details.h"

namespace uploadwatch {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;
using ::testing::HasSubstr;

v1::Uploading Documented() {
  v1::Uploading u;
  u.set_id(12);
  u.mutable_create_time()->set_seconds(1672336921);  // 2022-12-29T18:02:01Z
  u.set_source_quantity(1500);
  u.set_line_quantity(1480);
  u.set_linked_quantity(1392);
  u.set_user_not_found_quantity(86);
  u.set_goal_not_found_quantity(2);
  u.set_comment("CRM export, December");
  u.set_client_id_type(v1::Uploading::CLIENT_ID);
  u.set_type(v1::Uploading::BASIC);
  u.set_status(v1::Uploading::PROCESSED);
  return u;
}

TEST(FormatUploadingTest, PrintsAlignedFieldsNamedAsTheProto) {
  EXPECT_EQ(FormatUploading(Documented()),
            "id:                      12\n"
            "status:                  PROCESSED\n"
            "type:                    BASIC\n"
            "client_id_type:          CLIENT_ID\n"
            "create_time:             2022-12-29T18:02:01Z\n"
            "source_quantity:         1500\n"
            "line_quantity:           1480\n"
            "linked_quantity:         1392\n"
            "user_not_found_quantity: 86\n"
            "goal_not_found_quantity: 2\n"
            "comment:                 CRM export, December\n");
}

TEST(FormatUploadingTest, ShowsCallQuantitiesForCallUploadings) {
  v1::Uploading u = Documented();
  u.set_type(v1::Uploading::CALLS);
  u.set_static_calls_quantity(204);
  const std::string text = FormatUploading(u);
  EXPECT_THAT(text, HasSubstr("\nstatic_calls_quantity:   204\n"));
  EXPECT_THAT(text, HasSubstr("\ndynamic_calls_quantity:  0\n"));
}

TEST(FormatUploadingTest, ShowsRawStringsOfUnknownEnumsAndDashesForUnset) {
  v1::Uploading u;
  u.set_id(7);
  u.set_status_raw("REVALIDATING");
  u.set_type_raw("OFFLINE_ORDERS");
  const std::string text = FormatUploading(u);
  EXPECT_THAT(text, HasSubstr("\nstatus:                  REVALIDATING\n"));
  EXPECT_THAT(text, HasSubstr("\ntype:                    OFFLINE_ORDERS\n"));
  EXPECT_THAT(text, HasSubstr("\nclient_id_type:          -\n"));
  EXPECT_THAT(text, HasSubstr("\ncreate_time:             -\n"));
}

TEST(FormatUploadingTest, KeepsEveryRecordOnOneLineAndUtf8Intact) {
  v1::Uploading u = Documented();
  u.set_comment("Выгрузка\nиз CRM\t2");
  EXPECT_THAT(FormatUploading(u),
              HasSubstr("\ncomment:                 Выгрузка из CRM 2\n"));
}

TEST(FormatUploadingTableTest, PrintsAHeaderAndOneAlignedRowPerUploading) {
  v1::Uploading moving = Documented();
  moving.set_id(101);
  moving.set_status(v1::Uploading::MATCHED);
  moving.set_line_quantity(985);
  moving.set_linked_quantity(90);
  moving.set_comment("Live demo: CRM sync");
  EXPECT_EQ(
      FormatUploadingTable({moving, Documented()}),
      " ID  STATUS     TYPE   CREATED               LINES  LINKED  COMMENT\n"
      "101  MATCHED    BASIC  2022-12-29T18:02:01Z    985      90  Live demo: CRM sync\n"
      " 12  PROCESSED  BASIC  2022-12-29T18:02:01Z   1480    1392  CRM export, December\n");
}

TEST(FormatUploadingTableTest, AnEmptyPageIsTheHeaderAlone) {
  EXPECT_EQ(FormatUploadingTable({}),
            "ID  STATUS  TYPE  CREATED  LINES  LINKED  COMMENT\n");
}

TEST(FormatErrorTest, PrintsCodeAndMessage) {
  EXPECT_EQ(FormatError(absl::NotFoundError("uploading 7 not found")),
            "error: NOT_FOUND: uploading 7 not found");
  EXPECT_EQ(FormatError(absl::UnavailableError("")), "error: UNAVAILABLE");
}

TEST(FormatErrorTest, AddsTheErrorInfoReasonAndTheRetryDelay) {
  absl::Status status = absl::ResourceExhaustedError("quota spent");
  SetErrorInfo(status, "QUOTA_REQUESTS_BY_UID", "api-metrika.yandex.net");
  SetRetryInfo(status, absl::Seconds(90));
  EXPECT_EQ(FormatError(status),
            "error: RESOURCE_EXHAUSTED: quota spent "
            "(reason QUOTA_REQUESTS_BY_UID, retry after 1m30s)");
}

TEST(FormatElapsedTest, TruncatesToSecondsWithPaddedMinutesAndSeconds) {
  EXPECT_EQ(FormatElapsed(absl::ZeroDuration()), "0s");
  EXPECT_EQ(FormatElapsed(absl::Milliseconds(31900)), "31s");
  EXPECT_EQ(FormatElapsed(absl::Seconds(62)), "1m02s");
  EXPECT_EQ(FormatElapsed(absl::Seconds(3785)), "1h03m05s");
  EXPECT_EQ(FormatElapsed(absl::Seconds(-3)), "0s");
}

class WatchTimelineTest : public ::testing::Test {
 protected:
  // When the watch began: 17:02:41 UTC.
  const absl::Time t0 = absl::FromCivil(absl::CivilSecond(2024, 3, 1, 17, 2, 41),
                                        absl::UTCTimeZone());

  static v1::WatchUploadingResponse Message(v1::Uploading::Status status,
                                            int32_t linked, absl::Time observed,
                                            bool terminal = false) {
    v1::WatchUploadingResponse m;
    *m.mutable_uploading() = Documented();
    m.mutable_uploading()->set_status(status);
    m.mutable_uploading()->set_linked_quantity(linked);
    m.mutable_observe_time()->set_seconds(absl::ToUnixSeconds(observed));
    *m.mutable_check_time() = m.observe_time();
    m.set_terminal(terminal);
    return m;
  }
};

TEST_F(WatchTimelineTest, ShowsWallTimeStatusElapsedAndWhatChanged) {
  WatchTimeline timeline(t0, absl::UTCTimeZone());
  // The server saw EXPORTED 20 s before the watch began.
  EXPECT_EQ(timeline.Line(Message(v1::Uploading::EXPORTED, 0, t0 - absl::Seconds(20)), t0),
            "17:02:41  EXPORTED         +0s      (watching)             "
            "lines=1480 linked=0 user_not_found=86 goal_not_found=2");
  EXPECT_EQ(timeline.Line(Message(v1::Uploading::MATCHED, 90, t0 + absl::Seconds(31)),
                          t0 + absl::Seconds(31)),
            "17:03:12  MATCHED          +31s     (in EXPORTED 51s)      "
            "lines=1480 linked=90 user_not_found=86 goal_not_found=2");
  EXPECT_EQ(timeline.Line(Message(v1::Uploading::MATCHED, 900, t0 + absl::Seconds(46)),
                          t0 + absl::Seconds(47)),
            "17:03:28  MATCHED          +47s     (updated after 15s)    "
            "lines=1480 linked=900 user_not_found=86 goal_not_found=2");
  EXPECT_EQ(timeline.Line(Message(v1::Uploading::PROCESSED, 1392,
                                  t0 + absl::Seconds(62), /*terminal=*/true),
                          t0 + absl::Seconds(62)),
            "17:03:43  PROCESSED        +1m02s   (in MATCHED 31s)       "
            "lines=1480 linked=1392 user_not_found=86 goal_not_found=2  terminal");
}

TEST_F(WatchTimelineTest, UsesTheGivenZoneForWallTime) {
  WatchTimeline timeline(t0, absl::FixedTimeZone(3 * 3600));
  EXPECT_THAT(timeline.Line(Message(v1::Uploading::EXPORTED, 0, t0), t0),
              ::testing::StartsWith("20:02:41  EXPORTED "));
}

TEST(WatchResponseToJsonLineTest, WritesTheWholeMessageWithProtoFieldNames) {
  v1::WatchUploadingResponse m;
  *m.mutable_uploading() = Documented();
  m.set_version(3);
  m.mutable_observe_time()->set_seconds(1709312561);
  m.mutable_check_time()->set_seconds(1709312571);
  const std::string line = WatchResponseToJsonLine(m);
  EXPECT_THAT(line, ::testing::StartsWith("{\"uploading\":{"));
  EXPECT_THAT(line, HasSubstr("\"version\":\"3\""));
  EXPECT_THAT(line, HasSubstr("\"observe_time\":\"2024-03-01T17:02:41Z\""));
  EXPECT_THAT(line, HasSubstr("\"check_time\":\"2024-03-01T17:02:51Z\""));
  EXPECT_THAT(line, HasSubstr("\"terminal\":false"));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("\n")));

  // It is the proto's JSON: it parses back into the same message.
  v1::WatchUploadingResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok()) << line;
  EXPECT_EQ(parsed.SerializeAsString(), m.SerializeAsString());
}

TEST(WatchResponseToJsonLineTest, WritesUnknownEnumsAsMetricaSentThem) {
  v1::WatchUploadingResponse m;
  m.mutable_uploading()->set_id(7);
  m.mutable_uploading()->set_status_raw("REVALIDATING");
  m.set_terminal(true);
  const std::string line = WatchResponseToJsonLine(m);
  EXPECT_THAT(line, HasSubstr("\"status\":\"REVALIDATING\""));
  EXPECT_THAT(line, HasSubstr("\"terminal\":true"));
}

// --- watch COUNTER ---

v1::UploadingEvent Event(v1::UploadingEvent::Type type, int64_t id,
                         v1::Uploading::Status status) {
  v1::UploadingEvent e;
  e.set_type(type);
  *e.mutable_uploading() = Documented();
  e.mutable_uploading()->set_id(id);
  e.mutable_uploading()->set_status(status);
  e.mutable_uploading()->set_comment(absl::StrCat("upload ", id));
  e.mutable_observe_time()->set_seconds(1672336921);
  return e;
}

v1::WatchUploadingsResponse Message(std::vector<v1::UploadingEvent> events,
                                    bool synced, bool reset, std::string token) {
  v1::WatchUploadingsResponse m;
  for (auto& e : events) *m.add_events() = std::move(e);
  m.set_synced(synced);
  m.set_reset(reset);
  m.set_resume_token(std::move(token));
  return m;
}

class CounterWatchPrinterTest : public ::testing::Test {
 protected:
  // 17:02:41 UTC, then one second per message.
  absl::Time At(int second) {
    return absl::FromUnixSeconds(1672333361 + second);
  }

  const v1::WatchUploadingsResponse snapshot_ = Message(
      {Event(v1::UploadingEvent::ADDED, 12, v1::Uploading::PROCESSED),
       Event(v1::UploadingEvent::ADDED, 101, v1::Uploading::PREPARED)},
      /*synced=*/true, /*reset=*/false, "t1");
  const v1::WatchUploadingsResponse bookmark_ = Message({}, false, false, "t2");
  const v1::WatchUploadingsResponse modified_ = Message(
      {Event(v1::UploadingEvent::MODIFIED, 101, v1::Uploading::UPLOADED)},
      false, false, "t3");
  const v1::WatchUploadingsResponse reset_ = Message(
      {Event(v1::UploadingEvent::ADDED, 102, v1::Uploading::PREPARED)}, false,
      /*reset=*/true, "t4");
};

TEST_F(CounterWatchPrinterTest, LinesShowOneLinePerEventAndTheResetAndSync) {
  CounterWatchPrinter printer(CounterWatchPrinter::Mode::kLines, 2215573,
                              v1::Uploading::TYPE_UNSPECIFIED, absl::UTCTimeZone());
  EXPECT_EQ(printer.Print(snapshot_, At(0)),
            "17:02:41  ADDED     12  PROCESSED        lines=1480 linked=1392 "
            "user_not_found=86 goal_not_found=2  upload 12\n"
            "17:02:41  ADDED     101  PREPARED         lines=1480 linked=1392 "
            "user_not_found=86 goal_not_found=2  upload 101\n"
            "17:02:41  SYNCED    2 uploadings\n");
  EXPECT_EQ(printer.Print(bookmark_, At(1)), "");
  EXPECT_EQ(printer.Print(modified_, At(2)),
            "17:02:43  MODIFIED  101  UPLOADED         lines=1480 linked=1392 "
            "user_not_found=86 goal_not_found=2  upload 101\n");
  EXPECT_EQ(printer.Print(reset_, At(3)),
            "17:02:44  RESET     dropped 2 uploadings, a fresh snapshot follows\n"
            "17:02:44  ADDED     102  PREPARED         lines=1480 linked=1392 "
            "user_not_found=86 goal_not_found=2  upload 102\n");
  EXPECT_EQ(printer.view().size(), 1u);
}

TEST_F(CounterWatchPrinterTest, TableRedrawsTheWholeCounterOnEachChange) {
  CounterWatchPrinter printer(CounterWatchPrinter::Mode::kTable, 2215573,
                              v1::Uploading::TYPE_UNSPECIFIED, absl::UTCTimeZone());
  const std::string kClear = "\x1b[H\x1b[2J";
  EXPECT_EQ(printer.Print(snapshot_, At(0)),
            kClear +
                "counter 2215573 BASIC: 2 uploadings, synced, updated 17:02:41\n"
                " ID  STATUS     TYPE   CREATED               LINES  LINKED  COMMENT\n"
                "101  PREPARED   BASIC  2022-12-29T18:02:01Z   1480    1392  upload 101\n"
                " 12  PROCESSED  BASIC  2022-12-29T18:02:01Z   1480    1392  upload 12\n");
  EXPECT_EQ(printer.Print(bookmark_, At(1)), "");  // nothing to redraw
  EXPECT_THAT(printer.Print(modified_, At(2)),
              HasSubstr("updated 17:02:43\n ID  STATUS     TYPE   CREATED     "
                        "          LINES  LINKED  COMMENT\n101  UPLOADED   "));
  // The reset drops 12 and 101: only what the new snapshot sends is shown.
  EXPECT_EQ(printer.Print(reset_, At(3)),
            kClear +
                "counter 2215573 BASIC: 1 uploading, syncing, updated 17:02:44\n"
                " ID  STATUS    TYPE   CREATED               LINES  LINKED  COMMENT\n"
                "102  PREPARED  BASIC  2022-12-29T18:02:01Z   1480    1392  upload 102\n");
}

TEST_F(CounterWatchPrinterTest, JsonIsOneResponsePerLineBookmarksIncluded) {
  CounterWatchPrinter printer(CounterWatchPrinter::Mode::kJson, 2215573,
                              v1::Uploading::CALLS, absl::UTCTimeZone());
  for (const auto* m : {&snapshot_, &bookmark_, &modified_, &reset_}) {
    const std::string line = printer.Print(*m, At(0));
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
    v1::WatchUploadingsResponse parsed;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok())
        << line;
    EXPECT_EQ(parsed.SerializeAsString(), m->SerializeAsString()) << line;
  }
  EXPECT_EQ(CounterWatchResponseToJsonLine(bookmark_),
            "{\"events\":[],\"synced\":false,\"reset\":false,"
            "\"resume_token\":\"t2\"}");
  // Uploadings as Metrica writes them: an int64 id as a number.
  EXPECT_THAT(CounterWatchResponseToJsonLine(modified_),
              HasSubstr("{\"events\":[{\"uploading\":{\"id\":101,"));
  EXPECT_THAT(CounterWatchResponseToJsonLine(modified_),
              HasSubstr(",\"type\":\"MODIFIED\","));
  EXPECT_THAT(CounterWatchResponseToJsonLine(modified_),
              HasSubstr(",\"observe_time\":\"2022-12-29T18:02:01Z\"}]"));
}

}  // namespace
}  // namespace uploadwatch
