#!/bin/sh
# Regenerates the CRL test data (controlplane's pki unit tests): a CA of its own, two
# certificates it issued, and CRLs OpenSSL signed (`openssl ca -gencrl`), so our CRL parsing
# and checks are tested against CRLs we did not write. make.sh's PKI is left as it is.
#   crl-ca.pem                     ECDSA P-256 CA, 100 years
#   crl-ok.pem, crl-bad.pem        leaves it issued (keys not kept)
#   crl.pem                        PEM CRL revoking crl-bad; lastUpdate 2026-12-01, nextUpdate 2027-01-01
#   crl-none.der                   DER CRL revoking nothing, same dates
#   crl-forged.pem                 a CRL revoking crl-ok, signed by another key under crl-ca's name
#   crl-idp.pem                    crl-ca's CRL revoking nothing, with a critical issuing
#                                  distribution point (only user certificates): partitioned
#   crl-nosign-ca.pem, crl-nosign-leaf.pem, crl-nosign.pem
#                                  a CA whose keyUsage lacks cRLSign, a leaf it issued, and a
#                                  CRL it signed anyway revoking that leaf
# Test keys only, and deleted: nothing here can sign anything again.
set -e
cd "$(dirname "$0")"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
D=36500
DN="/C=CH/O=ferrogate test/CN=ferrogate CRL CA"
ca() { # dir [keyUsage]
  mkdir -p "$1/new"
  : > "$1/index.txt"
  cat > "$1/ca.cnf" <<EOC
[ ca ]
default_ca = c
[ c ]
dir = $1
database = $1/index.txt
new_certs_dir = $1/new
certificate = $1/ca.pem
private_key = $1/ca.key
default_md = sha256
default_crl_days = 30
crlnumber = $1/crlnumber
[ idp ]
issuingDistributionPoint = critical, @idp_section
[ idp_section ]
onlyuser = TRUE
EOC
  echo 01 > "$1/crlnumber"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/ca.key" -out "$1/ca.pem" \
    -days $D -subj "${3:-$DN}" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,${2:-keyCertSign,cRLSign}" 2>/dev/null
}
crl() { # dir out [form] [extensions section]
  openssl ca -config "$1/ca.cnf" -gencrl -crl_lastupdate 20261201000000Z -crl_nextupdate 20270101000000Z \
    ${4:+-crlexts $4} -out "$T/crl.pem" 2>/dev/null
  openssl crl -in "$T/crl.pem" -outform "${3:-PEM}" -out "$2"
}
ca "$T/real"
ca "$T/forged"
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nsubjectAltName=DNS:%s\n' x > "$T/ext"
for n in crl-ok crl-bad; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$n.key" -out "$T/$n.csr" \
    -subj "/C=CH/O=ferrogate test/CN=$n.example" 2>/dev/null
  sed "s/DNS:x/DNS:$n.example/" "$T/ext" > "$T/ext.$n"
  openssl x509 -req -in "$T/$n.csr" -CA "$T/real/ca.pem" -CAkey "$T/real/ca.key" -CAcreateserial \
    -out "$n.pem" -days $D -sha256 -extfile "$T/ext.$n" 2>/dev/null
done
cp "$T/real/ca.pem" crl-ca.pem
crl "$T/real" crl-none.der DER
crl "$T/real" crl-idp.pem PEM idp
openssl ca -config "$T/real/ca.cnf" -revoke crl-bad.pem -crl_reason keyCompromise 2>/dev/null
crl "$T/real" crl.pem
openssl ca -config "$T/forged/ca.cnf" -revoke crl-ok.pem -crl_reason keyCompromise 2>/dev/null
crl "$T/forged" crl-forged.pem
ca "$T/nosign" keyCertSign "/C=CH/O=ferrogate test/CN=ferrogate CA without cRLSign"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ns.key" -out "$T/ns.csr" \
  -subj "/C=CH/O=ferrogate test/CN=crl-nosign-leaf.example" 2>/dev/null
sed "s/DNS:x/DNS:crl-nosign-leaf.example/" "$T/ext" > "$T/ext.ns"
openssl x509 -req -in "$T/ns.csr" -CA "$T/nosign/ca.pem" -CAkey "$T/nosign/ca.key" -CAcreateserial \
  -out crl-nosign-leaf.pem -days $D -sha256 -extfile "$T/ext.ns" 2>/dev/null
cp "$T/nosign/ca.pem" crl-nosign-ca.pem
openssl ca -config "$T/nosign/ca.cnf" -revoke crl-nosign-leaf.pem -crl_reason keyCompromise 2>/dev/null
crl "$T/nosign" crl-nosign.pem
