#!/bin/sh
# Regenerates the data of the IKE test where a responder fetches the initiator's CRL on a
# thread of its own (controlplane/tests/ike_pair.rs): a CA of its own (key deleted); gw-f and
# gw-r, ECDSA P-256 certificates for gw-f.example / gw-r.example and 192.0.2.1 (keys kept:
# test keys) whose CRL distribution points are http://127.0.0.1:47913/ca.crl and .../r.crl;
# and that CA's CRL (DER, valid 100 years) listing gw-r, which the test serves at both.
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
[ f ]
basicConstraints = CA:FALSE
subjectAltName = DNS:gw-f.example, IP:192.0.2.1
crlDistributionPoints = URI:http://127.0.0.1:47913/ca.crl
[ r ]
basicConstraints = CA:FALSE
subjectAltName = DNS:gw-r.example, IP:192.0.2.1
crlDistributionPoints = URI:http://127.0.0.1:47913/r.crl
EOC
mkdir "$T/new"; : > "$T/index.txt"; echo 1000 > "$T/serial"; echo 01 > "$T/crlnumber"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ca.key" -out ca.pem \
  -days 36500 -subj "/C=CH/O=ferrogate test/CN=ferrogate fetch CA" -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for n in f r; do
  openssl ecparam -name prime256v1 -genkey -noout -out gw-$n.key
  openssl req -new -key gw-$n.key -out "$T/gw-$n.csr" -subj "/CN=gw-$n.example" 2>/dev/null
  openssl ca -batch -config "$T/ca.cnf" -extensions $n -in "$T/gw-$n.csr" -out gw-$n.pem -notext 2>/dev/null
done
openssl ca -config "$T/ca.cnf" -revoke gw-r.pem 2>/dev/null
openssl ca -gencrl -config "$T/ca.cnf" -out "$T/crl.pem" 2>/dev/null
openssl crl -in "$T/crl.pem" -outform DER -out ca.crl
