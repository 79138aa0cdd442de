#!/bin/sh
# Regenerates the delta CRL test data (controlplane's pki unit tests) with strongSwan's `pki`
# (an implementation we did not write), then checks that strongSwan's own `pki --verify` (under
# faketime, Debian package faketime) gives what the tests expect. The keys are deleted: nothing
# here can sign anything again.
#   ca.pem                       ECDSA P-256 CA; it and the leaves valid 2026-01-01 to 2049-12-31
#   d-ok.pem, d-base.pem, d-delta.pem
#                                leaves; each names http://127.0.0.1:29914/delta/base.crl
#   base.crl                     complete CRL number 1 revoking d-base, 2026-11-01 to 2027-01-01,
#                                freshest CRL http://127.0.0.1:29914/delta/delta.crl
#   delta.crl                    delta CRL number 2 on base 1 revoking d-delta, 2026-12-10 to
#                                2026-12-20
#   release.crl                  delta CRL number 3 on base 1 (OpenSSL-signed) listing d-ok with
#                                reason removeFromCRL and d-delta, 2026-12-10 to 2026-12-20
#   newer.crl                    complete CRL number 2 (base.crl's revocations), 2026-12-05 to
#                                2027-01-01
#   ahead.crl                    delta CRL number 3 on base 2 (newer.crl) revoking d-delta,
#                                2026-12-10 to 2026-12-20: with base.crl, based on a newer
#                                complete CRL (RFC 5280 §5.2.4 (c) does not hold)
set -e
cd "$(dirname "$0")"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
P="pki"
F="%Y-%m-%d %H:%M:%S"
U=http://127.0.0.1:29914/delta
$P --gen --type ecdsa --size 256 > "$T/ca.key" 2>/dev/null
$P --self --ca --in "$T/ca.key" --dn "C=CH, O=ferrogate test, CN=ferrogate delta CRL CA" \
  --dateform "$F" --not-before "2026-01-01 00:00:00" --not-after "2049-12-31 00:00:00" --outform pem > ca.pem 2>/dev/null
for n in d-ok d-base d-delta; do
  $P --gen --type ecdsa --size 256 > "$T/$n.key" 2>/dev/null
  $P --pub --in "$T/$n.key" | $P --issue --cacert ca.pem --cakey "$T/ca.key" \
    --dn "C=CH, O=ferrogate test, CN=$n.example" --san "$n.example" --crl "$U/base.crl" \
    --dateform "$F" --not-before "2026-01-01 00:00:00" --not-after "2049-12-31 00:00:00" --outform pem > "$n.pem" 2>/dev/null
done
crl() { # out this next [pki options...]
  out=$1 this=$2 next=$3
  shift 3
  $P --signcrl --cacert ca.pem --cakey "$T/ca.key" --dateform "$F" --this-update "$this" \
    --next-update "$next" --digest sha256 "$@" > "$out" 2>/dev/null
}
crl base.crl "2026-11-01 00:00:00" "2027-01-01 00:00:00" --crluri "$U/delta.crl" \
  --reason key-compromise --cert d-base.pem
crl delta.crl "2026-12-10 00:00:00" "2026-12-20 00:00:00" --basecrl base.crl \
  --reason key-compromise --cert d-delta.pem
crl newer.crl "2026-12-05 00:00:00" "2027-01-01 00:00:00" --lastcrl base.crl
crl ahead.crl "2026-12-10 00:00:00" "2026-12-20 00:00:00" --basecrl newer.crl \
  --reason key-compromise --cert d-delta.pem
# OpenSSL (`ca -gencrl`, the indicator as a raw extension: `ca` has no setting for it) signs a
# delta that lists d-ok with reason removeFromCRL (a release from hold, not a revocation) and
# d-delta with keyCompromise (so that a test can tell the delta was used).
mkdir "$T/new"
: > "$T/index.txt"
echo 03 > "$T/crlnumber"
openssl pkey -inform DER -in "$T/ca.key" -out "$T/ca-key.pem"
cat > "$T/ca.cnf" <<EOC
[ ca ]
default_ca = c
[ c ]
dir = $T
database = $T/index.txt
new_certs_dir = $T/new
certificate = ca.pem
private_key = $T/ca-key.pem
default_md = sha256
crlnumber = $T/crlnumber
[ delta ]
authorityKeyIdentifier = keyid:always
2.5.29.27 = critical, DER:02:01:01
EOC
openssl ca -config "$T/ca.cnf" -revoke d-ok.pem -crl_reason removeFromCRL 2>/dev/null
openssl ca -config "$T/ca.cnf" -revoke d-delta.pem -crl_reason keyCompromise 2>/dev/null
openssl ca -config "$T/ca.cnf" -gencrl -crl_lastupdate 20261210000000Z -crl_nextupdate 20261220000000Z \
  -crlexts delta -out "$T/release.pem" 2>/dev/null
openssl crl -in "$T/release.pem" -outform DER -out release.crl
for c in base delta release newer ahead; do
  openssl crl -inform DER -in $c.crl -noout -text > "$T/$c.txt"
done
grep -q "Delta CRL Indicator: critical" "$T/delta.txt"
grep -q "Freshest CRL" "$T/base.txt"
grep -q "Remove From CRL" "$T/release.txt"
grep -A1 "X509v3 CRL Number" "$T/newer.txt" | grep -qx " *2"
grep -A1 "X509v3 Delta CRL Indicator" "$T/ahead.txt" | grep -qx " *2"
# strongSwan's own verdicts at 2026-12-15 (`pki --verify` under faketime), which the tests
# expect of ours (but for removeFromCRL, below). (OpenSSL's `verify -use_deltas` is no guide: given a delta, it takes the delta
# for a complete CRL and calls d-base good.)
v() { # cert crls... → strongSwan's verdict
  cert=$1; shift
  files=""; for c in "$@"; do files="$files --crl $c.crl"; done
  faketime "2026-12-15 00:00:00" $P --verify --in "$cert" --cacert ca.pem $files 2>&1 |
    grep -E "^certificate (was revoked|status is)" | head -1
}
expect() { # what cert crls...
  w=$1; shift
  got=$(v "$@")
  case "$got" in *"$w"*) ;; *) echo "strongSwan: $* gave '$got', expected '$w'" >&2; exit 1 ;; esac
  echo "strongSwan: $* → $got"
}
expect "status is good" d-ok.pem base delta
expect "was revoked" d-base.pem base delta
expect "was revoked" d-delta.pem base delta
# Without its delta, the complete CRL does not know of d-delta's revocation.
expect "status is good" d-delta.pem base
# A delta alone is no complete list: no status (ours also refuses what it lists).
expect "status is not available" d-ok.pem delta
# The OpenSSL-signed delta counts for strongSwan too: it refuses d-delta.
expect "was revoked" d-delta.pem base release
# strongSwan 5.9.8 also refuses d-ok, "reason: remove from crl". RFC 5280 §5.3.1 says such an
# entry (only in delta CRLs) removes the certificate from the CRL (it expired or was released
# from hold): no revocation. Here ours follows the RFC and lets d-ok pass.
expect "reason: remove from crl" d-ok.pem base release
# A delta on the complete CRL it names goes with it.
expect "status is good" d-ok.pem newer ahead
expect "was revoked" d-delta.pem newer ahead
# With base.crl (number 1), ahead.crl (base 2) says base.crl was superseded, and what was
# revoked between the two complete CRLs is in neither: strongSwan gives no status (its cache
# keeps the higher-numbered CRL of an issuer, the delta, which is no complete list), and so
# does ours for d-ok. Ours refuses d-delta, which the delta lists (it was revoked).
expect "status is not available" d-ok.pem base ahead
expect "status is not available" d-delta.pem base ahead
echo "delta CRL data regenerated; strongSwan agrees (removeFromCRL aside, as above)"
