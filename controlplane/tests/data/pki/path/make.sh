#!/bin/sh
# Certificates for RFC 5280 path checks (pki.rs `path_checks_*`), made by OpenSSL: a root CA,
# and under it chains that must be refused, each for one reason, and two that must pass.
# Valid for 100 years. Test keys only; the CA keys are deleted after use.
set -e
cd "$(dirname "$0")"
D=36500
ext() { printf '%s\n' "$@" > ext.cnf; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.pem \
  -days $D -subj "/C=CH/O=ferrogate path test/CN=path root" -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
cert() { # name issuer extension-lines...
  n=$1 ca=$2; shift 2
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out $n.csr \
    -subj "/C=CH/O=ferrogate path test/CN=$n" 2>/dev/null
  ext "$@"
  openssl x509 -req -in $n.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -out $n.pem -days $D -sha256 \
    -extfile ext.cnf 2>/dev/null
  rm -f $n.csr
}
LEAF="basicConstraints=CA:FALSE"
# Passes: a leaf under the root; a leaf under a pathlen:0 intermediate.
cert ok-leaf root "$LEAF" "keyUsage=digitalSignature" "subjectAltName=DNS:ok-leaf.example"
cert pl0-int root "basicConstraints=critical,CA:TRUE,pathlen:0" "keyUsage=critical,keyCertSign"
cert pl0-leaf pl0-int "$LEAF" "keyUsage=digitalSignature"
# Refused: a CA below the pathlen:0 intermediate issues the leaf.
cert pl0-sub pl0-int "basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign"
cert pl0-deep pl0-sub "$LEAF" "keyUsage=digitalSignature"
# Refused: an intermediate whose key may sign CRLs only.
cert crl-int root "basicConstraints=critical,CA:TRUE" "keyUsage=critical,cRLSign"
cert crl-leaf crl-int "$LEAF" "keyUsage=digitalSignature"
# Refused: an intermediate with name constraints (not enforced here, so refused).
cert nc-int root "basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign" \
  "nameConstraints=critical,permitted;DNS:.partner.example"
cert nc-leaf nc-int "$LEAF" "keyUsage=digitalSignature" "subjectAltName=DNS:gw.partner.example"
# Refused: a leaf with a critical extension nobody here knows; a leaf whose key may not sign.
cert crit-leaf root "$LEAF" "keyUsage=digitalSignature" "1.3.6.1.4.1.99999.1=critical,ASN1:NULL"
cert enc-leaf root "$LEAF" "keyUsage=keyEncipherment"
# Refused: issued by a self-signed peer certificate that is no CA (pinned as an anchor, it is
# trusted as itself only).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout pinned.key -out pinned.pem \
  -days $D -subj "/C=CH/O=ferrogate path test/CN=pinned" -sha256 \
  -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout by-pinned.key -out by-pinned.csr \
  -subj "/C=CH/O=ferrogate path test/CN=by-pinned" 2>/dev/null
ext "$LEAF" "keyUsage=digitalSignature"
openssl x509 -req -in by-pinned.csr -CA pinned.pem -CAkey pinned.key -CAcreateserial -out by-pinned.pem \
  -days $D -sha256 -extfile ext.cnf 2>/dev/null
rm -f by-pinned.csr
rm -f ext.cnf ./*.srl ./*.key
