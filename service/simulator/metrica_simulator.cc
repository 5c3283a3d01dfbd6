// Serves the demo Metrica (counter 2215573) on loopback until SIGINT/SIGTERM.
//
//   bazel run //service/simulator:metrica_simulator -- --port=0
//
// Prints `listening on http(s)://HOST:PORT` on stdout once it accepts, so that
// scripts can start it with --port=0 and read the port.

#include <pthread.h>
#include <signal.h>

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "service/simulator/fake_metrica.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on.");
ABSL_FLAG(int, port, 8080, "Port to listen on; 0 picks a free one.");
ABSL_FLAG(std::string, token, "demo-token",
          "OAuth token that may read the demo counter 2215573.");
ABSL_FLAG(double, demo_speed, 1.0,
          "Runs the live demo uploads this many times faster (tests use 10).");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain: serve HTTPS (with --tls_key_file).");
ABSL_FLAG(std::string, tls_key_file, "", "PEM key for --tls_cert_file.");
ABSL_FLAG(bool, vary_json, true,
          "Vary the JSON the way Metrica may (ids as strings, lower-case "
          "values, +03:00 offsets, unknown fields, any order).");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A Yandex Metrica offline-conversions simulator for demos and tests.");
  absl::ParseCommandLine(argc, argv);

  // Blocked before any thread starts, so every thread inherits the mask and
  // only sigwait() below receives them. A shell starts background jobs with
  // SIGINT ignored, and an ignored signal never reaches sigwait(): restore
  // the default first.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int signal_number : {SIGINT, SIGTERM}) {
    sigaddset(&stop_signals, signal_number);
    ::signal(signal_number, SIG_DFL);
  }
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  uploadwatch::FakeMetrica::Options options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.vary_json = absl::GetFlag(FLAGS_vary_json);
  uploadwatch::FakeMetrica metrica(options);
  const absl::Status started = metrica.Start();
  if (!started.ok()) {
    std::cerr << started << std::endl;
    return 1;
  }
  const std::string token = absl::GetFlag(FLAGS_token);
  const double speed = absl::GetFlag(FLAGS_demo_speed);
  metrica.SeedDemo(token, speed);
  std::cerr << "demo: counter 2215573, token \"" << token
            << "\"; uploadings 12-19 settled; a new live upload (101, 102, "
               "...) every "
            << absl::FormatDuration(absl::Seconds(30) / speed)
            << ", each done in "
            << absl::FormatDuration(absl::Seconds(90) / speed) << std::endl;
  std::cout << "listening on " << metrica.base_url() << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  metrica.Stop();
  return 0;
}
