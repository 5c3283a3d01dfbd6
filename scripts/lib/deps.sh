# Sourced by scripts/*.sh: installs the Debian packages the project needs,
# idempotently and quietly when everything is already there.
UPLOADWATCH_APT_PACKAGES=(
  bazel-bootstrap bazel-rules-java bazel-platforms
  g++ pkg-config
  libhiredis-dev
  redis-server
  haproxy
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  libabsl-dev libcurl4-openssl-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev
  openssl
  tinyproxy-bin
  libboost-dev
  chromium
  python3 python3-grpcio python3-protobuf
  python3-h2
  nodejs npm
  golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev
  golang-google-protobuf-dev golang-google-genproto-dev protoc-gen-go protoc-gen-go-grpc
  curl
  valgrind
)

uploadwatch_install_deps() {
  local missing=()
  local pkg
  for pkg in "${UPLOADWATCH_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  # nodejs/npm may come from elsewhere (e.g. a preinstalled Node); accept that.
  if command -v node >/dev/null && command -v npm >/dev/null; then
    local kept=()
    for pkg in "${missing[@]}"; do [[ "$pkg" == nodejs || "$pkg" == npm ]] || kept+=("$pkg"); done
    missing=("${kept[@]}")
  fi
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "uploadwatch: installing ${missing[*]}" >&2
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Only for scripts/test.sh --tsan: what scripts/lib/tsan_absl.sh needs to
# build Debian's Abseil source with ThreadSanitizer (apt-get source unpacks
# with dpkg-source, from dpkg-dev).
UPLOADWATCH_TSAN_APT_PACKAGES=(
  cmake
  ninja-build
  dpkg-dev
)

uploadwatch_install_tsan_deps() {
  local missing=() pkg sudo=""
  for pkg in "${UPLOADWATCH_TSAN_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "uploadwatch: installing ${missing[*]}" >&2
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
