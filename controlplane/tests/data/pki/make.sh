#!/bin/sh
# Regenerates the test PKI used by controlplane's unit and pair tests (not by the strongSwan
# interop tests, which make their own with strongSwan's `pki` at run time). OpenSSL made these,
# so our parser and signature checks are tested against certificates we did not write.
# Valid for 100 years; expiry is tested with a clock outside that window.
# Test keys only: never use them for anything else.
set -e
cd "$(dirname "$0")"
D=36500
ext() { printf '%s\n' "$@" > ext.cnf; }

# An RSA CA (3072 bits) and an ECDSA P-384 CA.
openssl req -x509 -newkey rsa:3072 -nodes -keyout ca-rsa.key -out ca-rsa.pem -days $D \
  -subj "/C=CH/O=ferrogate test/CN=ferrogate RSA CA" -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout ca-ec.key -out ca-ec.pem \
  -days $D -subj "/C=CH/O=ferrogate test/CN=ferrogate ECDSA CA" -sha384 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

leaf() { # name keyopts ca san
  openssl req -new -newkey $2 -nodes -keyout $1.key -out $1.csr -subj "/C=CH/O=ferrogate test/CN=$1.example" 2>/dev/null
  ext "subjectAltName=$4" "basicConstraints=CA:FALSE" "keyUsage=digitalSignature"
  openssl x509 -req -in $1.csr -CA $3.pem -CAkey $3.key -CAcreateserial -out $1.pem -days $D -sha256 -extfile ext.cnf 2>/dev/null
  rm -f $1.csr
}
# gw-a: RSA 2048 under the RSA CA (PKCS#8 key); gw-b: P-256 under the ECDSA CA (SEC1 key);
# gw-c: P-256 under the RSA CA; gw-d: RSA (PKCS#1 key) under an intermediate of the ECDSA CA.
leaf gw-a "rsa:2048" ca-rsa "DNS:gw-a.example,IP:192.0.2.1,email:vpn@gw-a.example"
leaf gw-b "ec -pkeyopt ec_paramgen_curve:P-256" ca-ec "DNS:gw-b.example,IP:192.0.2.2"
openssl ec -in gw-b.key -out gw-b.sec1.key 2>/dev/null && mv gw-b.sec1.key gw-b.key
leaf gw-c "ec -pkeyopt ec_paramgen_curve:P-256" ca-rsa "DNS:gw-c.example"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int-ec.key -out int-ec.csr \
  -subj "/C=CH/O=ferrogate test/CN=ferrogate intermediate" 2>/dev/null
ext "basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign"
openssl x509 -req -in int-ec.csr -CA ca-ec.pem -CAkey ca-ec.key -CAcreateserial -out int-ec.pem -days $D -sha384 -extfile ext.cnf 2>/dev/null
rm -f int-ec.csr
leaf gw-d "rsa:2048" int-ec "DNS:gw-d.example"
openssl rsa -in gw-d.key -traditional -out gw-d.pkcs1.key 2>/dev/null && mv gw-d.pkcs1.key gw-d.key
# A self-signed impostor with gw-a's subject and names.
openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days $D \
  -subj "/C=CH/O=ferrogate test/CN=gw-a.example" -sha256 \
  -addext "subjectAltName=DNS:gw-a.example,IP:192.0.2.1" 2>/dev/null
# Signatures OpenSSL made over a fixed message, for the verification tests.
printf 'ferrogate: signed octets from OpenSSL' > msg.bin
openssl dgst -sha256 -sign gw-a.key -out msg.gw-a.sig msg.bin
openssl dgst -sha256 -sign gw-b.key -out msg.gw-b.sig msg.bin
openssl dgst -sha256 -sign gw-a.key -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
  -out msg.gw-a.pss.sig msg.bin
rm -f ext.cnf ./*.srl ca-rsa.key ca-ec.key int-ec.key
