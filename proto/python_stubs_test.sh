#!/usr/bin/env bash
# The contract must compile for other languages too: generate Python messages
# and gRPC stubs with the system protoc and import them.
set -euo pipefail
out="${TEST_TMPDIR:-$(mktemp -d)}/py"
mkdir -p "$out"
protoc -Iproto -I/usr/include --python_out="$out" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" --grpc_python_out="$out" \
  proto/metrika/offline_conversions/v1/uploading_service.proto \
  proto/google/rpc/status.proto proto/google/rpc/error_details.proto
cd "$out"
/usr/bin/python3 - <<'PY'
from metrika.offline_conversions.v1 import uploading_service_pb2 as pb
from metrika.offline_conversions.v1 import uploading_service_pb2_grpc as grpc_pb
from google.rpc import error_details_pb2
u = pb.Uploading(id=12, status=pb.Uploading.PROCESSED)
assert pb.Uploading.Status.Name(u.status) == "PROCESSED", u
assert hasattr(grpc_pb, "UploadingServiceStub")
names = [m.name for m in pb.DESCRIPTOR.services_by_name["UploadingService"].methods]
assert names == ["GetUploading", "WatchUploading", "ListUploadings",
                 "WatchUploadings"], names
print("python stubs ok:", names)
PY
