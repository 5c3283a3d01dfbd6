#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang and runs each for a bounded
# time. Last line: `N passed, M failed` (one case per target: passed = ran its
# time without a crash). Exit code 0 only when nothing failed.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   default 30 s, all targets
#   scripts/fuzz.sh --smoke                            10 s per target, for CI
#
# Targets are fuzz/<target>_fuzzer.cc. Each starts from its seed corpus
# fuzz/corpus/<target>/ and replays fuzz/regressions/<target>/ (inputs that
# once failed). New corpus entries and crash inputs go to a temporary folder,
# never into the repository; the folder is printed and kept when a target
# crashed. UPLOADWATCH_FUZZ_WORK names a folder to use (and keep) instead.
#
# Why clang outside Bazel: the workspace's toolchain is gcc, and switching
# Bazel's C++ toolchain (CC=clang) would reconfigure it for every build in
# this output base. Debian's protobuf/Abseil/gRPC are gcc-built against
# libstdc++, which clang links against fine. Bazel still names the sources
# (a query of the parsers' libraries) and generates the protobuf code, so
# neither list nor protoc invocation is repeated here.
#
# The system libraries (libprotobuf's JSON parser among them) are not
# instrumented: coverage guidance comes from the project's code and from
# libFuzzer's comparison hooks, hence the dictionaries.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=30
targets=()
for arg in "$@"; do
  case "$arg" in
    --smoke) seconds=10 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *[!0-9]*) targets+=("$arg") ;;
    *) seconds=$arg ;;
  esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in fuzz/*_fuzzer.cc; do
    name=${src#fuzz/}
    targets+=("${name%_fuzzer.cc}")
  done
fi

# Which dictionary (fuzz/<name>.dict) each target uses, if any.
declare -A dict_of=(
  [uploading_body]=metrica_json [uploadings_body]=metrica_json
  [error_body]=metrica_json [retry_after]=retry_after
  [authorization]=authorization
)

fail_all() {
  echo "uploadwatch fuzz: $1" >&2
  echo "0 passed, ${#targets[@]} failed"
  exit 1
}

source scripts/lib/deps.sh
UPLOADWATCH_APT_PACKAGES+=(clang libclang-rt-dev)
uploadwatch_install_deps || fail_all "dependency install failed"

work=${UPLOADWATCH_FUZZ_WORK:-$(mktemp -d -t uploadwatch-fuzz.XXXXXX)}
mkdir -p "$work/obj" "$work/bin"
keep_work=${UPLOADWATCH_FUZZ_WORK:+1}
cleanup() { [[ -n "$keep_work" ]] || rm -rf "$work"; }
trap cleanup EXIT

# --- Build -----------------------------------------------------------------
echo "uploadwatch fuzz: building in $work" >&2
# The libraries under test; their sources and generated protobuf code come
# from Bazel's graph, so the list follows the BUILD files.
libraries=(//service/metrica:json_mapping //service/metrica:error_mapping
           //service/auth:token)
closure="deps(set(${libraries[*]}))"
labels_of() {  # labels_of KIND REGEX: this repository's files of that kind
  bazel query --noshow_progress "kind('$1', $closure)" 2>>"$work/query.log" |
    grep -E '^//' | grep -E "$2"
}
project_labels=$(labels_of 'source file' '\.cc$') &&
  generated_labels=$(labels_of 'generated file' '[^c]\.pb\.cc$') ||  # not .grpc.pb.cc
  { cat "$work/query.log" >&2; fail_all "bazel query failed"; }
bazel build $generated_labels 2>&1 | grep -E '^(ERROR|FAILED)' >&2
[[ ${PIPESTATUS[0]} -eq 0 ]] || fail_all "generating protobuf code (bazel build) failed"
bin=$(bazel info bazel-bin 2>/dev/null)
path_of() { sed -e 's|^//||' -e 's|:|/|'; }  # //a/b:c/d.cc -> a/b/c/d.cc
mapfile -t project_srcs < <(echo "$project_labels" | path_of)
mapfile -t generated_srcs < <(echo "$generated_labels" | path_of | sed "s|^|$bin/|")
# Generated headers are included relative to their package (cc_grpc_proto's
# `includes`) or to the root.
includes=(-I"$root" -I"$bin")
for pkg in $(echo "$generated_labels" | sed 's|^//||; s|:.*||' | sort -u); do
  includes+=(-I"$bin/$pkg")
done

pkgs=(protobuf grpc++ absl_status absl_statusor absl_strings absl_str_format
      absl_time libcrypto)
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=all)
cxxflags=(-std=c++17 -g -O1 -fno-omit-frame-pointer "${sanitize[@]}"
          "${includes[@]}" $(pkg-config --cflags "${pkgs[@]}"))

# Objects are compiled $(nproc) at a time; each one's errors go to its .log.
objs=()
compile() {  # compile SRC [FLAG...]
  local src=$1; shift
  local obj="$work/obj/$(basename "$src" .cc).o"
  objs+=("$obj")
  while (( $(jobs -rp | wc -l) >= $(nproc) )); do wait -n; done
  clang++ "${cxxflags[@]}" "$@" -c "$src" -o "$obj" 2>"$obj.log" || rm -f "$obj" &
}
# Coverage instrumentation for the project's code; generated code needs none.
for src in "${project_srcs[@]}"; do compile "$src" -fsanitize=fuzzer-no-link; done
for src in "${generated_srcs[@]}"; do compile "$src" -w; done
wait
for obj in "${objs[@]}"; do
  [[ -f "$obj" ]] || { cat "$obj.log" >&2; fail_all "compiling $(basename "$obj" .o) failed"; }
done
ar rcs "$work/obj/libuploadwatch_fuzz.a" "${objs[@]}"

libs=$(pkg-config --libs "${pkgs[@]}")
build_failed=()
for t in "${targets[@]}"; do
  if [[ ! -f "fuzz/${t}_fuzzer.cc" ]]; then
    echo "uploadwatch fuzz: no target $t (fuzz/${t}_fuzzer.cc)" >&2
    build_failed+=("$t"); continue
  fi
  clang++ "${cxxflags[@]}" -fsanitize=fuzzer "fuzz/${t}_fuzzer.cc" \
    "$work/obj/libuploadwatch_fuzz.a" $libs -o "$work/bin/${t}_fuzzer" 2>"$work/bin/$t.log" ||
    { cat "$work/bin/$t.log" >&2; build_failed+=("$t"); }
done

# --- Run -------------------------------------------------------------------
passed=0 failed=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
for t in "${targets[@]}"; do
  if [[ " ${build_failed[*]} " == *" $t "* ]]; then
    echo "FAIL $t: did not build"; failed=$((failed + 1)); continue
  fi
  corpus="$work/corpus/$t" artifacts="$work/artifacts/$t"
  rm -rf "$artifacts"   # a kept work folder keeps its corpus, not old crashes
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  for dir in "fuzz/corpus/$t" "fuzz/regressions/$t"; do
    [[ -d "$dir" ]] && seeds+=("$dir")
  done
  flags=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10
         -print_final_stats=1 -artifact_prefix="$artifacts/")
  dict=${dict_of[$t]:-}
  [[ -n "$dict" && -f "fuzz/$dict.dict" ]] && flags+=(-dict="fuzz/$dict.dict")
  log="$work/$t.log"
  "$work/bin/${t}_fuzzer" "${flags[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  crashes=("$artifacts"/*)
  if [[ $rc -eq 0 && ! -e "${crashes[0]}" ]]; then
    echo "ok   $t: ${runs:-?} executions in ${seconds}s (${speed:-?}/s), corpus $(ls "$corpus" | wc -l) new entries"
    passed=$((passed + 1))
  else
    keep_work=1
    echo "FAIL $t: exit $rc after ${runs:-?} executions; log $log"
    grep -E -m 3 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|invariant violated' "$log" | sed 's/^/     /'
    for crash in "${crashes[@]}"; do
      [[ -e "$crash" ]] || continue
      known=$(for r in "fuzz/regressions/$t"/*; do [[ -f "$r" ]] && cmp -s "$r" "$crash" && echo " = $r"; done)
      echo "     input: $crash$known"
    done
    echo "     reproduce: $work/bin/${t}_fuzzer <input>"
    failed=$((failed + 1))
  fi
done

[[ -n "$keep_work" ]] && echo "uploadwatch fuzz: work folder kept: $work" >&2
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
