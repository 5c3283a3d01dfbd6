#ifndef UPLOADWATCH_BENCH_REPLICA_PHASE_H_
#define UPLOADWATCH_BENCH_REPLICA_PHASE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "service/simulator/fake_metrica.h"

namespace uploadwatch::bench {

// What the replica phase runs against, from the harness's flags.
struct ReplicaPhaseSetup {
  FakeMetrica* metrica = nullptr;  // not owned
  std::string token;               // the servers' Metrica token
  std::string server_binary;       // //service:uploading_server
  std::vector<std::string> server_env;
  std::string work_dir;  // server and Redis logs
  absl::Duration poll_interval = absl::Seconds(1);
};

// Issue 14's figures (`--phases=replicas`): the same watchers of one
// counter's uploadings on one uploading_server alone, then spread over three
// on one real redis-server: upstream requests per poll interval for each;
// Redis commands the three send per upstream request; and, for changes of
// one uploading watched on every replica, how much later a watcher on a
// non-polling replica gets it than the one on the polling replica. Prints
// `replicas_*` lines on stdout; docs/PERFORMANCE.md explains them.
absl::Status RunReplicaPhase(const ReplicaPhaseSetup& setup);

}  // namespace uploadwatch::bench

#endif  // UPLOADWATCH_BENCH_REPLICA_PHASE_H_
