#include "bench/workload.h"

#include "absl/strings/str_cat.h"

namespace uploadwatch::bench {

v1::Uploading MakeUploading(int64_t id, v1::Uploading::Status status,
                            int32_t marker) {
  v1::Uploading u;
  u.set_id(id);
  u.mutable_create_time()->set_seconds(1700000000);
  u.set_source_quantity(12000);
  u.set_line_quantity(11874);
  u.set_comment(absl::StrCat("crm export #", id));
  u.set_client_id_type(v1::Uploading::CLIENT_ID);
  u.set_status(status);
  u.set_type(v1::Uploading::BASIC);
  u.set_goal_not_found_quantity(12);
  u.set_user_not_found_quantity(340);
  u.set_linked_quantity(marker);
  return u;
}

}  // namespace uploadwatch::bench
