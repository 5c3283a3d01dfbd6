// Checks the ThreadSanitizer setup itself (bazel/tsan_run.sh, .bazelrc's
// tsan config, scripts/lib/tsan_absl.sh). Under --config=tsan:
// - threads that share data under an absl::Mutex are race-free only if the
//   Abseil loaded is instrumented; with Debian's, TSan reports a race here
//   and the test fails (exit 66);
// - a JSON object parsed by Debian's libprotobuf into google.protobuf.Struct
//   (a map field) reads back in our code only if the protobuf shim keeps
//   MapFieldBase's layout (without it: a crash in Map::find).
// In other configurations it passes as a plain concurrency/JSON test.
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace {

TEST(TsanSetup, AbslMutexOrdersPlainAccesses) {
  absl::Mutex mu;
  std::vector<int> values;  // plain memory: only the Mutex orders it
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        absl::MutexLock lock(&mu);
        values.push_back(t);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(values.size(), 800u);
}

TEST(TsanSetup, ProtobufMapFieldsMatchDebiansLibrary) {
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"status": "MATCHED", "line_quantity": 3})", &parsed)
                  .ok());
  ASSERT_EQ(parsed.fields().size(), 2u);
  auto it = parsed.fields().find("status");
  ASSERT_NE(it, parsed.fields().end());
  EXPECT_EQ(it->second.string_value(), "MATCHED");
  EXPECT_EQ(parsed.fields().at("line_quantity").number_value(), 3);
}

}  // namespace
