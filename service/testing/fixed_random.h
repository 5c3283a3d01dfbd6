#ifndef UPLOADWATCH_SERVICE_TESTING_FIXED_RANDOM_H_
#define UPLOADWATCH_SERVICE_TESTING_FIXED_RANDOM_H_

#include "service/metrica/backoff.h"

namespace uploadwatch::testing {

// A RandomSource that always draws `u`. Jitter is 1 + jitter * (2u - 1), so
// the default 0.5 gives the exact base delays; 0 and 1 the jitter's ends.
class FixedRandom : public RandomSource {
 public:
  explicit FixedRandom(double u = 0.5) : u_(u) {}
  double Uniform01() override { return u_; }

 private:
  double u_;
};

}  // namespace uploadwatch::testing

#endif  // UPLOADWATCH_SERVICE_TESTING_FIXED_RANDOM_H_
