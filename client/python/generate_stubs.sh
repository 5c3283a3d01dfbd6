#!/usr/bin/env bash
# Generates the Python stubs of the uploadwatch API into client/python/gen/
# (gitignored): the service, and google.rpc.Status/ErrorInfo/RetryInfo for
# decoding rich error details. Needs Debian's protobuf-compiler and
# protobuf-compiler-grpc (grpc_python_plugin).
#   client/python/generate_stubs.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto="$here/../../proto"
out="${1:-$here/gen}"
plugin="$(command -v grpc_python_plugin)" || {
  echo "grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)" >&2
  exit 1
}
mkdir -p "$out"
protoc -I"$proto" --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$plugin" \
  "$proto/metrika/offline_conversions/v1/uploading_service.proto" \
  "$proto/google/rpc/status.proto" \
  "$proto/google/rpc/error_details.proto"
