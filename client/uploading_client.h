#ifndef UPLOADWATCH_CLIENT_UPLOADING_CLIENT_H_
#define UPLOADWATCH_CLIENT_UPLOADING_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"

namespace uploadwatch {

// Per-client settings of UploadingClient (its `Options`).
struct UploadingClientOptions {
  // Metrica OAuth token sent as `authorization: OAuth <token>`. Empty: no
  // metadata, so the server uses the token it was started with.
  std::string token;
  // Deadline of each GetUploading and ListUploadings call.
  absl::Duration timeout = absl::Seconds(30);
  // Deadline of each WatchUploading call. Watches last as long as Metrica's
  // processing (minutes to hours), hence no deadline by default.
  absl::Duration watch_timeout = absl::InfiniteDuration();
};

// A C++ client of UploadingService: the generated stub with `absl::Status`
// errors, the caller's Metrica token and a deadline on every call. Choose it
// over the raw stub unless you need the async API.
//
// Errors keep the server's code and message, and its google.rpc.ErrorInfo and
// RetryInfo details as payloads: read them with GetErrorInfo() and
// GetRetryDelay() from service/common/status_details.h.
//
// Thread-safe: calls may run concurrently from any number of threads.
class UploadingClient {
 public:
  using Options = UploadingClientOptions;

  // Called once per message of a watch, on the caller's thread.
  using WatchCallback = absl::FunctionRef<void(
      const metrika::offline_conversions::v1::WatchUploadingResponse&)>;
  // Called once per message of a counter watch, on the caller's thread;
  // returns false to stop the watch.
  using CounterWatchCallback = absl::FunctionRef<bool(
      const metrika::offline_conversions::v1::WatchUploadingsResponse&)>;

  // Over a channel, e.g. grpc::CreateChannel("localhost:50051", creds), or
  // CreateUploadingChannel() from client/channel_credentials.h for TLS.
  explicit UploadingClient(std::shared_ptr<grpc::ChannelInterface> channel,
                           Options options = {});
  // Over any stub: a test's fake, or a stub with its own interceptors.
  explicit UploadingClient(
      std::unique_ptr<metrika::offline_conversions::v1::UploadingService::
                          StubInterface>
          stub,
      Options options = {});

  UploadingClient(const UploadingClient&) = delete;
  UploadingClient& operator=(const UploadingClient&) = delete;

  // The current state of one uploading.
  absl::StatusOr<metrika::offline_conversions::v1::Uploading> GetUploading(
      int32_t counter_id, int64_t uploading_id) const;

  // One page of a counter's uploadings, in Metrica's order (newest first).
  absl::StatusOr<std::vector<metrika::offline_conversions::v1::Uploading>>
  ListUploadings(
      const metrika::offline_conversions::v1::ListUploadingsRequest& request)
      const;

  // Follows one uploading: calls `on_message` for every message of the
  // stream, the current state first. Returns OK once a terminal message was
  // delivered; otherwise the error that ended the watch (a stream that ends
  // OK without a terminal message breaks the contract and gives UNKNOWN).
  // Blocks until then; Options::watch_timeout bounds the whole watch.
  //
  // The server ends long-lived streams with UNAVAILABLE (to rebalance, or
  // when it restarts). When a stream that had answered ends so, this
  // re-watches at once and leaves out the re-watch's first message if it
  // repeats the state last delivered: the caller sees one stream. A
  // re-watch that fails before its first message ends the watch with that
  // error, so a server that is gone is not retried forever.
  absl::Status WatchUploading(int32_t counter_id, int64_t uploading_id,
                              WatchCallback on_message) const;

  // Follows a whole counter (WatchUploadings): calls `on_message` for every
  // message, bookmarks and resets included; feed them to a CounterView to
  // hold the counter's uploadings. `request.resume_token` may carry a token
  // saved earlier; empty starts with a snapshot.
  //
  // The stream does not end by itself, so neither does this: it returns OK
  // when `on_message` returned false (the call is then cancelled), else the
  // error that ended the watch (PERMISSION_DENIED, NOT_FOUND, ...;
  // DEADLINE_EXCEEDED once Options::watch_timeout has passed). A stream that
  // ends OK breaks the contract and gives UNKNOWN.
  //
  // When a stream that had answered ends with UNAVAILABLE (the server's
  // stream lifetime, a restart), this resumes at once with the last
  // `resume_token` received: the caller sees one stream, and a `reset` in it
  // if the server could not honour the token. A resumed stream that fails
  // before its first message ends the watch with that error, so a server
  // that is gone is not retried forever.
  absl::Status WatchCounter(
      metrika::offline_conversions::v1::WatchUploadingsRequest request,
      CounterWatchCallback on_message) const;

 private:
  // A context carrying the token and `deadline` (none if InfiniteFuture).
  std::unique_ptr<grpc::ClientContext> NewContext(absl::Time deadline) const;

  std::unique_ptr<metrika::offline_conversions::v1::UploadingService::
                      StubInterface>
      stub_;
  const Options options_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_CLIENT_UPLOADING_CLIENT_H_
