#ifndef UPLOADWATCH_CLIENT_TESTING_SERVICE_FIXTURE_H_
#define UPLOADWATCH_CLIENT_TESTING_SERVICE_FIXTURE_H_

#include "tests/service_fixture.h"

namespace uploadwatch::client_testing {

namespace v1 = ::metrika::offline_conversions::v1;

// The end-to-end fixture of tests/ (the real server on loopback against the
// Metrica simulator), started at once and with no token of its own: a call
// succeeds only when the client sends kToken. A test's constructor may adjust
// config_ first (e.g. watch_limits).
class ServiceFixture : public ::uploadwatch::testing::ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    config_.default_token = "";
    StartServer();
  }
};

}  // namespace uploadwatch::client_testing

#endif  // UPLOADWATCH_CLIENT_TESTING_SERVICE_FIXTURE_H_
