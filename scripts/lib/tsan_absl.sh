#!/usr/bin/env bash
# Abseil built with ThreadSanitizer, for `bazel test --config=tsan`.
#
# Why: Debian's libabsl is not instrumented, so TSan cannot see absl::Mutex
# (nor gRPC's locks, which are absl::Mutex too) and reports every access
# guarded by one as a race. This builds the very source Debian's binary
# package is built from (`apt-get source abseil` at the installed version,
# with Debian's patches), with Debian's configuration (options.h as patched,
# C++17, the same SONAME libabsl_*.so.20220623, Debian's compiler flags) plus
# -fsanitize=thread. /usr/local/lib/uploadwatch-tsan points at the result,
# and the tsan config links that folder into every binary as DT_RPATH (which,
# unlike RUNPATH, also serves the dependencies' dependencies), so our
# binaries AND Debian's libgrpc/libprotobuf (which link libabsl_*.so.20220623)
# share the one instrumented copy, while uninstrumented programs a test runs
# (python3 with Debian's grpcio) keep Debian's. See .bazelrc.
#
# The result is cached under ~/.cache/uploadwatch-tsan-absl/<version>/<key>/lib,
# <key> a hash of the build function and the compiler, so a second run costs nothing.
#
#   scripts/lib/tsan_absl.sh           build if needed, link it from
#                                      /usr/local/lib/uploadwatch-tsan,
#                                      install the protobuf shim (bazel/tsan/);
#                                      print the lib folder
#   scripts/lib/tsan_absl.sh --where   print the lib folder it would use
#                                      (exit 1 if it is not built yet)
# Sourcing it defines uploadwatch_tsan_absl_dir and uploadwatch_tsan_absl_build.

# The build tools (cmake, ninja, dpkg-dev) are listed in deps.sh.
source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

# Prints the cache folder for the installed Abseil and this recipe.
uploadwatch_tsan_absl_dir() {
  local version key
  version=$(dpkg-query -W -f='${source:Version}' libabsl-dev 2>/dev/null) || return 1
  [[ -n "$version" ]] || return 1
  # The recipe is the build function itself (comments aside) and the compiler.
  key=$( { declare -f uploadwatch_tsan_absl_build; g++ --version 2>/dev/null | head -n 1; } \
    | sha256sum | cut -c1-16)
  echo "${UPLOADWATCH_TSAN_ABSL_CACHE:-$HOME/.cache/uploadwatch-tsan-absl}/$version/$key"
}

# Adds a deb-src entry for the mirror and suites apt already uses for Debian
# (read from the configured sources), in a file of its own. Idempotent.
_uploadwatch_tsan_deb_src() {
  local sudo=$1 list=/etc/apt/sources.list.d/uploadwatch-deb-src.sources
  [[ -f $list ]] && return 0
  local uri suites
  # deb822 sources (Debian 12's default) or one-line sources.list entries.
  uri=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)
  suites=$(awk -v u="$uri" '/^URIs:/ {cur=$2} /^Suites:/ && cur==u {$1=""; print; exit}' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null)
  if [[ -z "$uri" ]]; then
    read -r uri suites < <(awk '$1=="deb" && $2 ~ /\/debian\/?$/ {print $2, $3; exit}' \
      /etc/apt/sources.list 2>/dev/null)
  fi
  if [[ -z "$uri" || -z "$suites" ]]; then
    echo "uploadwatch: no Debian mirror found in /etc/apt/sources.list*" >&2
    return 1
  fi
  printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" "$(echo $suites)" | $sudo tee "$list" >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
}

# Builds the instrumented Abseil into uploadwatch_tsan_absl_dir (unless it is
# there already) and prints its lib folder. Progress goes to stderr.
uploadwatch_tsan_absl_build() {
  local dir
  dir=$(uploadwatch_tsan_absl_dir) || { echo "uploadwatch: libabsl-dev is not installed" >&2; return 1; }
  if [[ -f "$dir/complete" ]]; then
    echo "$dir/lib"
    return 0
  fi
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  uploadwatch_install_tsan_deps || return 1
  _uploadwatch_tsan_deb_src "$sudo" || return 1

  local version start=$SECONDS work
  version=$(dpkg-query -W -f='${source:Version}' libabsl-dev)
  echo "uploadwatch: building Abseil $version with ThreadSanitizer (once; cached in $dir)" >&2
  work=$(mktemp -d)
  (
    set -e
    cd "$work"
    # The exact source of the installed binary package, Debian's patches applied.
    apt-get source -qq "abseil=$version" >/dev/null 2>&1 \
      || apt-get source "abseil=$version" >&2
    cd abseil-*/
    # What debian/rules passes (dh_auto_configure -Bshared ... with Debian's
    # dpkg-buildflags), so the ABI is Debian's: C++17, BUILD_SHARED_LIBS=ON,
    # CMAKE_BUILD_TYPE=None (no NDEBUG), options.h as debian/patches set it.
    # Only -fsanitize=thread is added. Ninja instead of make changes no output.
    export DEB_BUILD_MAINT_OPTIONS="hardening=+bindnow reproducible=+fixfilepath"
    local cxxflags cppflags ldflags
    cxxflags="$(dpkg-buildflags --get CXXFLAGS) -fsanitize=thread"
    cppflags="$(dpkg-buildflags --get CPPFLAGS)"
    ldflags="$(dpkg-buildflags --get LDFLAGS) -fsanitize=thread"
    CXXFLAGS="$cppflags $cxxflags" LDFLAGS="$ldflags" cmake -S . -B shared -G Ninja \
      -DCMAKE_BUILD_TYPE=None -DCMAKE_INSTALL_PREFIX="$work/install" \
      -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON \
      -DCMAKE_EXPORT_NO_PACKAGE_REGISTRY=ON -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
      -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON -Wno-dev >"$work/cmake.log" 2>&1 \
      || { cat "$work/cmake.log" >&2; exit 1; }
    ninja -C shared -j "$(nproc)" >"$work/build.log" 2>&1 \
      || { tail -n 50 "$work/build.log" >&2; exit 1; }
    ninja -C shared install >>"$work/build.log" 2>&1
    mkdir -p "$dir.tmp"
    cp -a "$work/install/lib" "$dir.tmp/"
    rm -rf "$dir.tmp/lib/cmake" "$dir.tmp/lib/pkgconfig"
    # Keep what the build was, for anyone checking the ABI later.
    { echo "version=$version"; echo "cxxflags=$cppflags $cxxflags"; echo "ldflags=$ldflags";
      g++ --version | head -n 1; grep -E '^#define ABSL_OPTION' absl/base/options.h; } >"$dir.tmp/recipe"
  ) || { rm -rf "$work" "$dir.tmp"; echo "uploadwatch: the TSan Abseil build failed" >&2; return 1; }
  rm -rf "$work" "$dir"
  mv "$dir.tmp" "$dir"
  touch "$dir/complete"
  echo "uploadwatch: TSan Abseil built in $((SECONDS - start)) s" >&2
  echo "$dir/lib"
}

# Installs bazel/tsan/google/protobuf/map_field.h (see its comment: protobuf
# changes a class layout under TSan) where .bazelrc's tsan config looks for
# it. A folder the compiler treats as a system one, so Bazel accepts the
# header without declaring it. Idempotent.
UPLOADWATCH_TSAN_INCLUDE=/usr/local/include/uploadwatch-tsan
uploadwatch_tsan_install_shims() {
  local src dst sudo=""
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/bazel/tsan/google/protobuf/map_field.h"
  dst="$UPLOADWATCH_TSAN_INCLUDE/google/protobuf/map_field.h"
  cmp -s "$src" "$dst" && return 0
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo install -D -m 0644 "$src" "$dst"
}

# Points /usr/local/lib/uploadwatch-tsan (the run path .bazelrc's tsan
# config links into every binary) at the built lib folder. Idempotent.
UPLOADWATCH_TSAN_LIB=/usr/local/lib/uploadwatch-tsan
uploadwatch_tsan_link_libs() {
  local lib=$1 sudo=""
  [[ $(readlink "$UPLOADWATCH_TSAN_LIB") == "$lib" ]] && return 0
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo ln -sfn "$lib" "$UPLOADWATCH_TSAN_LIB"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -uo pipefail
  if [[ "${1:-}" == --where ]]; then
    dir=$(uploadwatch_tsan_absl_dir) && [[ -f "$dir/complete" ]] && { echo "$dir/lib"; exit 0; }
    exit 1
  fi
  uploadwatch_tsan_install_shims || exit 1
  lib=$(uploadwatch_tsan_absl_build) || exit 1
  uploadwatch_tsan_link_libs "$lib" || exit 1
  echo "$lib"
fi
