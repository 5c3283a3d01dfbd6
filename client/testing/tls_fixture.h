#ifndef UPLOADWATCH_CLIENT_TESTING_TLS_FIXTURE_H_
#define UPLOADWATCH_CLIENT_TESTING_TLS_FIXTURE_H_

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "client/testing/service_fixture.h"
#include "gtest/gtest.h"

namespace uploadwatch::client_testing {

// ServiceFixture with the server serving TLS (mutual TLS when `mutual`), with
// a CA and certificates that tests/make_test_certs.sh makes with openssl in
// TEST_TMPDIR: ca.pem, server.{pem,key}, client.{pem,key} (signed by the CA,
// for localhost and 127.0.0.1) and stranger.{pem,key} (another CA's).
class TlsServiceFixture : public ServiceFixture {
 protected:
  explicit TlsServiceFixture(bool mutual) {
    const std::string script = std::string(std::getenv("TEST_SRCDIR")) +
                               "/uploadwatch/tests/make_test_certs.sh";
    EXPECT_EQ(std::system((script + " " + dir_).c_str()), 0);
    config_.tls_cert_pem = Read("server.pem");
    config_.tls_key_pem = Read("server.key");
    if (mutual) config_.tls_client_ca_pem = Read("ca.pem");
  }

  // The path of one of the files above.
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string Read(const std::string& name) const {
    std::ifstream in(Path(name));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  const std::string dir_ = std::getenv("TEST_TMPDIR");
};

}  // namespace uploadwatch::client_testing

#endif  // UPLOADWATCH_CLIENT_TESTING_TLS_FIXTURE_H_
