#!/bin/sh
# Regenerates the data of the IKE test where a responder fetches the initiator's CRL on a
# thread of its own (controlplane/tests/ike_pair.rs): a CA of its own (key deleted), gw-f (an
# ECDSA P-256 certificate for gw-f.example and 192.0.2.1, key kept: a test key) whose CRL
# distribution point is http://127.0.0.1:47913/ca.crl, and that CA's CRL (DER, empty, valid
# 100 years), which the test serves there, slowly.
set -e
cd "$(dirname "$0")"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat > "$T/ca.cnf" <<EOC
[ ca ]
default_ca = c
[ c ]
dir = $T
database = $T/index.txt
new_certs_dir = $T/new
certificate = ca.pem
private_key = $T/ca.key
serial = $T/serial
default_days = 36500
default_md = sha256
default_crl_days = 36500
crlnumber = $T/crlnumber
policy = p
[ p ]
commonName = supplied
[ leaf ]
basicConstraints = CA:FALSE
subjectAltName = DNS:gw-f.example, IP:192.0.2.1
crlDistributionPoints = URI:http://127.0.0.1:47913/ca.crl
EOC
mkdir "$T/new"; : > "$T/index.txt"; echo 1000 > "$T/serial"; echo 01 > "$T/crlnumber"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ca.key" -out ca.pem \
  -days 36500 -subj "/C=CH/O=ferrogate test/CN=ferrogate fetch CA" -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out gw-f.key
openssl req -new -key gw-f.key -out "$T/gw-f.csr" -subj "/CN=gw-f.example" 2>/dev/null
openssl ca -batch -config "$T/ca.cnf" -extensions leaf -in "$T/gw-f.csr" -out gw-f.pem -notext 2>/dev/null
openssl ca -gencrl -config "$T/ca.cnf" -out "$T/crl.pem" 2>/dev/null
openssl crl -in "$T/crl.pem" -outform DER -out ca.crl
