#ifndef UPLOADWATCH_CLIENT_CHANNEL_CREDENTIALS_H_
#define UPLOADWATCH_CLIENT_CHANNEL_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"

namespace uploadwatch {

// How a client reaches the server: plaintext, TLS, or mutual TLS. The server
// side is uploading_server's --tls_cert_file, --tls_key_file and
// --tls_client_ca_file.
struct ChannelSecurity {
  // Use TLS. Implied by any of the files below.
  bool tls = false;
  // PEM bundle of the CAs to trust for the server's certificate; empty: the
  // system's roots (gRPC's default).
  std::string ca_file;
  // PEM client certificate chain and its private key, for a server that
  // requires client certificates (mTLS). Both or neither.
  std::string cert_file;
  std::string key_file;

  bool UsesTls() const {
    return tls || !ca_file.empty() || !cert_file.empty() || !key_file.empty();
  }
};

// Credentials for `security`: insecure ones without TLS, else SSL credentials
// with the files' contents. INVALID_ARGUMENT for a certificate without its
// key (or the reverse), NOT_FOUND (or the error) naming the file that cannot
// be read. Reads the files once, now.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const ChannelSecurity& security);

// A channel to `target` ("host:port") with ChannelCredentialsFor(security).
// The host name in `target` is the one the server's certificate must name.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateUploadingChannel(
    const std::string& target, const ChannelSecurity& security);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_CLIENT_CHANNEL_CREDENTIALS_H_
