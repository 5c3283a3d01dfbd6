// Shim for --config=tsan only; scripts/lib/tsan_absl.sh installs it as
// /usr/local/include/uploadwatch-tsan/google/protobuf/map_field.h, and
// .bazelrc puts that folder ahead of /usr/include for the tsan build.
//
// Why: protobuf 3.21's MapFieldBase gains two members (seq1_, seq2_: its
// own const/mutable-race check) when __SANITIZE_THREAD__ is defined
// (map_field.h, "Support thread sanitizer"). Debian's libprotobuf is built
// without TSan, so every message with a map field (google.protobuf.Struct,
// which JsonStringToMessage fills) would have one layout in libprotobuf and
// another in our TSan-built code: a silent ABI break that crashed the JSON
// mapping tests (SEGV in Map::find). Here map_field.h is read as Debian
// compiled it; everything else still sees TSan.
#ifndef UPLOADWATCH_TSAN_PROTOBUF_MAP_FIELD_SHIM_H_
#define UPLOADWATCH_TSAN_PROTOBUF_MAP_FIELD_SHIM_H_

// Headers that derive their own TSan switches from __SANITIZE_THREAD__ are
// read first, while it is still defined (libstdc++'s _GLIBCXX_TSAN, used by
// shared_ptr; Abseil's ABSL_HAVE_THREAD_SANITIZER).
#include <bits/c++config.h>
#include <memory>
#include <absl/base/config.h>

#pragma push_macro("__SANITIZE_THREAD__")
#undef __SANITIZE_THREAD__
#include_next <google/protobuf/map_field.h>
#pragma pop_macro("__SANITIZE_THREAD__")

#endif  // UPLOADWATCH_TSAN_PROTOBUF_MAP_FIELD_SHIM_H_
