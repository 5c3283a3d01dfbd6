#!/usr/bin/env bash
# Makes a throw-away CA, a server certificate for localhost/127.0.0.1 and
# two client certificates (subjects differ), all signed by that CA, in DIR.
# For TLS tests only.
set -euo pipefail
dir=$1
cd "$dir"
quiet() { "$@" >/dev/null 2>&1; }
quiet openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=uploadwatch test CA" \
  -keyout ca.key -out ca.pem
for who in server client client2; do
  quiet openssl req -newkey rsa:2048 -nodes -subj "/CN=uploadwatch test $who" \
    -keyout "$who.key" -out "$who.csr"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=%s\n' \
    "$([[ $who == server ]] && echo serverAuth || echo clientAuth)" >"$who.ext"
  quiet openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 2 -extfile "$who.ext" -out "$who.pem"
done
# A second CA whose certificates the server must not accept.
quiet openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=stranger CA" \
  -keyout stranger.key -out stranger.pem
