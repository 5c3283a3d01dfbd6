#include "client/counter_view.h"

namespace uploadwatch {

namespace v1 = ::metrika::offline_conversions::v1;

void CounterView::Apply(const v1::WatchUploadingsResponse& message) {
  if (message.reset()) {
    uploadings_.clear();
    synced_ = false;
  }
  for (const v1::UploadingEvent& event : message.events()) {
    uploadings_[event.uploading().id()] = event.uploading();
  }
  if (message.synced()) synced_ = true;
}

std::vector<v1::Uploading> CounterView::Uploadings() const {
  std::vector<v1::Uploading> out;
  out.reserve(uploadings_.size());
  for (auto it = uploadings_.rbegin(); it != uploadings_.rend(); ++it) {
    out.push_back(it->second);
  }
  return out;
}

}  // namespace uploadwatch
