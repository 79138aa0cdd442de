#!/bin/sh
# Regenerates the OCSP test data (controlplane's pki unit tests): a CA of its own, certificates
# it issued (ocsp-good, ocsp-revoked, and resp: a delegated responder with OCSPSigning), and
# responses OpenSSL's responder (`openssl ocsp -index`) signed, valid for 100 years:
#   resp-good.der, resp-revoked.der   signed by the CA, for requests without a nonce
#   resp-good-delegated.der           signed by resp (its certificate included)
#   resp-good-unauthorized.der        signed by ocsp-revoked's key (no OCSPSigning): forged
#   resp-good-nonce.der               for a request with a nonce (ours never matches it)
#   crl-resp-revoked.pem              the CA's CRL, made last, revoking ocsp-revoked and resp
# Test keys only, and deleted: nothing here can sign anything again.
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
authorityInfoAccess = OCSP;URI:http://127.0.0.1:9/ocsp
crlDistributionPoints = URI:http://127.0.0.1:9/ca.crl
[ resp ]
basicConstraints = CA:FALSE
extendedKeyUsage = OCSPSigning
EOC
mkdir "$T/new"; : > "$T/index.txt"; echo 1000 > "$T/serial"; echo 01 > "$T/crlnumber"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ca.key" -out ca.pem \
  -days 36500 -subj "/C=CH/O=ferrogate test/CN=ferrogate OCSP CA" -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for n in good revoked resp; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$n.key" -out "$T/$n.csr" \
    -subj "/CN=ocsp-$n.example" 2>/dev/null
  ext=leaf; [ $n = resp ] && ext=resp
  openssl ca -batch -config "$T/ca.cnf" -extensions $ext -in "$T/$n.csr" -out "$n.pem" -notext 2>/dev/null
done
openssl ca -config "$T/ca.cnf" -revoke revoked.pem 2>/dev/null
ocsp() { openssl ocsp -index "$T/index.txt" -CA ca.pem -ndays 36500 "$@" 2>/dev/null; }
for n in good revoked; do
  openssl ocsp -issuer ca.pem -cert $n.pem -reqout "$T/req-$n.der" -no_nonce 2>/dev/null
  ocsp -rsigner ca.pem -rkey "$T/ca.key" -reqin "$T/req-$n.der" -respout resp-$n.der
done
ocsp -rsigner resp.pem -rkey "$T/resp.key" -reqin "$T/req-good.der" -respout resp-good-delegated.der
ocsp -rsigner revoked.pem -rkey "$T/revoked.key" -reqin "$T/req-good.der" -respout resp-good-unauthorized.der
openssl ocsp -issuer ca.pem -cert good.pem -reqout "$T/req-nonce.der" 2>/dev/null
ocsp -rsigner ca.pem -rkey "$T/ca.key" -reqin "$T/req-nonce.der" -respout resp-good-nonce.der
openssl ca -config "$T/ca.cnf" -revoke resp.pem 2>/dev/null
openssl ca -config "$T/ca.cnf" -gencrl -out crl-resp-revoked.pem 2>/dev/null
