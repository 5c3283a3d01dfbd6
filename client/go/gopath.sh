#!/usr/bin/env bash
# Builds a GOPATH for the Go client out of Debian's Go packages, offline:
# generates the stubs with protoc-gen-go/protoc-gen-go-grpc into
# DIR/src/github.com/uploadwatch/uploadwatch/gen/go/... (the proto's
# go_package) and links client/go in as github.com/uploadwatch/uploadwatch/client/go.
# Prints the GOPATH to use (DIR, then Debian's /usr/share/gocode), e.g.
#
#   export GOPATH=$(client/go/gopath.sh /tmp/uw-gopath) GO111MODULE=off GOFLAGS= GOPROXY=off
#   cd /tmp/uw-gopath/src/github.com/uploadwatch/uploadwatch/client/go && go test ./...
#
# Needs golang-go, golang-google-grpc-dev, golang-github-golang-protobuf-1-5-dev,
# golang-google-protobuf-dev, golang-google-genproto-dev, protoc-gen-go,
# protoc-gen-go-grpc and protobuf-compiler.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto="$here/../../proto"
dir="${1:?usage: gopath.sh DIR}"
repo="$dir/src/github.com/uploadwatch/uploadwatch"
mkdir -p "$repo/client"
protoc -I"$proto" --go_out="$dir/src" --go-grpc_out="$dir/src" \
  "$proto/metrika/offline_conversions/v1/uploading_service.proto"
ln -sfn "$here" "$repo/client/go"
echo "$(cd "$dir" && pwd):/usr/share/gocode"
