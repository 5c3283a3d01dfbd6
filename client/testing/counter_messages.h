#ifndef UPLOADWATCH_CLIENT_TESTING_COUNTER_MESSAGES_H_
#define UPLOADWATCH_CLIENT_TESTING_COUNTER_MESSAGES_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "metrika/offline_conversions/v1/uploading_service.pb.h"

namespace uploadwatch::client_testing {

// A WatchUploadingsResponse for tests: one `type` event per (id, status)
// pair, the uploading holding only those two fields.
inline metrika::offline_conversions::v1::WatchUploadingsResponse CounterMessage(
    std::string token,
    std::vector<std::pair<int64_t, metrika::offline_conversions::v1::Uploading::Status>>
        events,
    bool synced = false, bool reset = false,
    metrika::offline_conversions::v1::UploadingEvent::Type type =
        metrika::offline_conversions::v1::UploadingEvent::ADDED) {
  metrika::offline_conversions::v1::WatchUploadingsResponse m;
  for (const auto& [id, status] : events) {
    auto* event = m.add_events();
    event->set_type(type);
    event->mutable_uploading()->set_id(id);
    event->mutable_uploading()->set_status(status);
  }
  m.set_synced(synced);
  m.set_reset(reset);
  m.set_resume_token(std::move(token));
  return m;
}

}  // namespace uploadwatch::client_testing

#endif  // UPLOADWATCH_CLIENT_TESTING_COUNTER_MESSAGES_H_
