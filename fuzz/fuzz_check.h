#ifndef UPLOADWATCH_FUZZ_FUZZ_CHECK_H_
#define UPLOADWATCH_FUZZ_FUZZ_CHECK_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"

// FUZZ_CHECK(condition, detail): an invariant of a fuzz target. A violation
// prints `detail` (a std::string) and aborts, which libFuzzer records as a
// crash together with the input that caused it. Unlike assert(), it is never
// compiled out.
#define FUZZ_CHECK(condition, detail)                                        \
  do {                                                                       \
    if (!(condition)) {                                                      \
      ::uploadwatch::fuzz::Violated(__FILE__, __LINE__, #condition, detail); \
    }                                                                        \
  } while (false)

namespace uploadwatch::fuzz {

[[noreturn]] inline void Violated(const char* file, int line,
                                  const char* condition,
                                  const std::string& detail) {
  std::fprintf(stderr, "%s:%d: invariant violated: %s\n%s\n", file, line,
               condition, detail.c_str());
  std::abort();
}

// The fuzzer's input as text.
inline absl::string_view AsText(const uint8_t* data, size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(data), size);
}

// Splits `input` at its first '\n' into a header line and the rest: how the
// targets that take two values lay them out, so seeds stay readable.
struct Split {
  absl::string_view line;
  absl::string_view rest;
};
inline Split SplitFirstLine(absl::string_view input) {
  const size_t eol = input.find('\n');
  if (eol == absl::string_view::npos) return {input, absl::string_view()};
  return {input.substr(0, eol), input.substr(eol + 1)};
}

}  // namespace uploadwatch::fuzz

#endif  // UPLOADWATCH_FUZZ_FUZZ_CHECK_H_
