#ifndef UPLOADWATCH_SERVICE_WEB_WEB_PEER_H_
#define UPLOADWATCH_SERVICE_WEB_WEB_PEER_H_

namespace uploadwatch::web {

// The metadata key under which the gRPC-Web gateway tells the service which
// browser connection a call came from (gRPC's peer format,
// "ipv4:1.2.3.4:5678"): on the in-process channel every call has the same
// peer, so per-connection limits read this instead (ConnectionOf in
// service/grpc/request_checks.h). The gateway sets it on every call
// and never forwards a browser's own.
inline constexpr char kWebPeerMetadata[] = "uploadwatch-web-peer";

}  // namespace uploadwatch::web

#endif  // UPLOADWATCH_SERVICE_WEB_WEB_PEER_H_
