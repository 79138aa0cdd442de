#!/bin/sh
# Regenerates cdp.pem: a self-signed certificate (key deleted) whose CRL distribution points
# extension names an http:// and an ldap:// URI, for the pki unit test that reads the points
# (only http:// ones are fetched).
set -e
cd "$(dirname "$0")"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k" -out cdp.pem \
  -days 36500 -subj "/C=CH/O=ferrogate test/CN=cdp.example" -sha256 \
  -addext "crlDistributionPoints=URI:http://crl.example.net/ca.crl,URI:ldap://ldap.example.net/cn=ca" 2>/dev/null
