#!/usr/bin/env bash
# Makes, in DIR, what the upstream TLS tests serve the Metrica simulator with:
#   ca.pem            a throw-away CA the fetcher is told to trust
#   good.{pem,key}    signed by it, for 127.0.0.1 and localhost
#   wronghost.{pem,key} signed by it, for another host name only
#   expired.{pem,key} signed by it, for 127.0.0.1, valid only in January 2020
#   foreign.{pem,key} for 127.0.0.1, signed by another CA (foreign-ca.pem)
# For tests only: keys are unencrypted and the CAs live for two days.
set -euo pipefail
dir=$1
cd "$dir"
quiet() { "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; }

ca() {  # name, subject
  quiet openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$1.key" -out "$1.pem"
}
request() {  # name, subjectAltName
  quiet openssl req -newkey rsa:2048 -nodes -subj "/CN=uploadwatch upstream $1" \
    -addext "subjectAltName=$2" -addext "extendedKeyUsage=serverAuth" \
    -keyout "$1.key" -out "$1.csr"
}
# `openssl ca` signs with explicit dates (openssl 3.0's x509 has no
# -not_before) and copies the request's extensions.
sign() {  # name, issuer, startdate, enddate
  mkdir -p "db-$2" && touch "db-$2/index.txt"
  [[ -f "db-$2/serial" ]] || echo 1000 >"db-$2/serial"
  cat >"$2.cnf" <<CNF
[ca]
default_ca = this
[this]
database = db-$2/index.txt
new_certs_dir = db-$2
serial = db-$2/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
CNF
  quiet openssl ca -batch -notext -config "$2.cnf" -cert "$2.pem" -keyfile "$2.key" \
    -in "$1.csr" -out "$1.pem" -startdate "$3" -enddate "$4"
}

now=$(date -u -d '-1 hour' +%Y%m%d%H%M%SZ)
later=$(date -u -d '+2 days' +%Y%m%d%H%M%SZ)
ca ca "uploadwatch upstream test CA"
ca foreign-ca "some other CA"
request good "DNS:localhost,IP:127.0.0.1"
sign good ca "$now" "$later"
request wronghost "DNS:wrong.example"
sign wronghost ca "$now" "$later"
request expired "DNS:localhost,IP:127.0.0.1"
sign expired ca 20200101000000Z 20200102000000Z
request foreign "DNS:localhost,IP:127.0.0.1"
sign foreign foreign-ca "$now" "$later"
