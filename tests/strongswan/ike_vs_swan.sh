#!/usr/bin/env bash
# ferrogate-ike against strongSwan 5.9.8 (charon, kernel-libipsec) in network namespaces.
#
#   [gA: ferrogate-ike, 203.0.113.1] --veth "wire"-- [gB: charon "b", 203.0.113.2 | 192.168.20.1] --veth-- hB (192.168.20.5)
#
# The reference scenario: site-to-site 192.168.10.0/24 <-> 192.168.20.0/24, PSK, FQDN identities,
# IKE aes256-sha256-modp1024 + ESP aes256-sha256 (SUITE=gcm: aes256gcm16-prfsha256-curve25519 +
# aes256gcm16). strongSwan's libipsec fakes a NAT, so ferrogate-ike must detect it, float to
# UDP 4500 and negotiate UDP-encapsulated ESP. ferrogate-ike runs over plain UDP sockets here
# (no data plane); it exports the CHILD_SA keys it negotiated in the SA YAML that fgpcap reads.
#
# Checks:
#   - IKE SA and CHILD_SA up on both sides (ferrogate-ike's events, swanctl --list-sas);
#   - the SPIs agree, and the keys ferrogate-ike derived equal the keys charon derived (chd = 4);
#   - charon's ESP (pings from hB) captured on the wire decrypts with fgpcap and ferrogate-ike's
#     inbound keys, to ICMP echo requests from 192.168.20.5;
#   - ESP made by fgpcap with ferrogate-ike's outbound keys, sent from gA, is accepted by charon
#     and reaches hB as ICMP echo requests from 192.168.10.5;
#   - a CHILD_SA rekey (ROLE=initiator: ferrogate-ike rekeys; ROLE=responder: charon rekeys):
#     new SPIs on both sides, keys equal again, the old SA gone;
#   - ROLE=initiator: charon killed and restarted; ferrogate-ike's DPD notices and re-initiates
#     (dpd action restart), and the tunnel comes back;
#   - ferrogate-ike stopped with SIGTERM deletes the IKE SA on charon.
#   - FRAG=1: IKE fragmentation (RFC 7383) both ways. charon has fragmentation = yes and
#     charon.fragment_size = 400, ferrogate-ike fragment_size: 400, and each side protects eight
#     subnets so that IKE_AUTH and CREATE_CHILD_SA do not fit 400 bytes. The capture must show
#     SKF fragments of IKE_AUTH and CREATE_CHILD_SA from both sides, ours all within 400 bytes
#     of IP datagram; charon's log must show it reassembled ours and split its own.
#
#   ike_vs_swan.sh FERROGATE_IKE FGPCAP PYTHON     PYTHON has scapy (the tests' venv)
#   SUITE=cbc|gcm ROLE=initiator|responder         who starts the tunnel (default initiator)
#   AUTH=psk|rsa|ecdsa                             PSK (default), or X.509 certificates that
#                                                  strongSwan's `pki` issues at run time: RSA
#                                                  (DN identities) or ECDSA (FQDN identities
#                                                  from subjectAltName); RFC 7427 signatures
#   FRAG=1                                         the fragmentation variant (above)
#   CHILDREN=2                                     a second child (10.1.0.0/16 <-> 10.2.0.0/16, PFS
#                                                  modp2048) on both sides: whoever initiated
#                                                  makes it in a CREATE_CHILD_SA of its own
#                                                  once the IKE SA is up; both children's keys
#                                                  must equal charon's
#   With certificates ferrogate-ike also gets a CRL that strongSwan's `pki --signcrl` signed
#   (DER) and `revocation: strict`: it revokes a third certificate, not strongSwan's, so the
#   tunnel comes up only if that CRL parsed and its signature verified.
#   RSA_PSS=1 (with AUTH=rsa)                     RSASSA-PSS everywhere: strongSwan's pki signs the
#                                                  certificates and the CRL with it, charon signs
#                                                  AUTH with it (charon.rsa_pss), and so do we
#                                                  (rsa_pss: yes); each side must log it
#   REVOKED=1 (with AUTH=rsa|ecdsa)               the CRL revokes strongSwan's certificate
#                                                  instead: ferrogate-ike must refuse it (no
#                                                  IKE SA, "revoked" in its log), then exit
#   REVOKED=delta (with CRL_FETCH=1)               the CRL still revokes only the third
#                                                  certificate but names a delta CRL (freshest
#                                                  CRL, pki --signcrl --crluri) on the same
#                                                  server; the delta (pki --signcrl --basecrl)
#                                                  revokes strongSwan's: ferrogate-ike must
#                                                  fetch both and refuse it
#   PMTU=1 (with AUTH=rsa|ecdsa)                   path MTU discovery (RFC 7383 §2.5.2):
#                                                  fragment_size 1500 on our side, and gB
#                                                  drops every datagram from gA above
#                                                  PMTU_LIMIT (1000) bytes (nftables). Our
#                                                  IKE_AUTH (a certificate: more than that)
#                                                  goes 3+ times over 2 s, unanswered
#                                                  (initiator) or answering charon's
#                                                  retransmissions (responder; charon then
#                                                  retransmits from 1 s), then is cut into
#                                                  more, smaller fragments that pass; the
#                                                  capture must show both cuts, ours within
#                                                  the limit after the cut, and charon's log the
#                                                  reassembly
#   CRL_FETCH=1 (with AUTH=rsa|ecdsa)             the certificates name a CRL distribution
#                                                  point (pki --issue --crl), a Python HTTP
#                                                  server on gB serves the CRL there, and
#                                                  ferrogate-ike gets no `crls:`: it must fetch
#                                                  the CRL (revocation: strict) to bring the
#                                                  tunnel up, or (REVOKED=1) to refuse
#   OCSP=1 (with AUTH=rsa|ecdsa)                  the certificates name an OCSP responder (pki
#                                                  --issue --ocsp): OpenSSL's (`openssl ocsp
#                                                  -index`) on gB, signing with the CA's key;
#                                                  ferrogate-ike has no `crls:` and
#                                                  `crl_fetch: no`, so under revocation:
#                                                  strict only a good OCSP answer brings the
#                                                  tunnel up (REVOKED=1: the responder says
#                                                  revoked, the tunnel must not come up)
#   SWAN_KEEP=1                                    keep logs and captures
#
# Cleans up namespaces, processes (by PID) and its temp dir on any exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
trap swan_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

IKE=$1 FGPCAP=$2 PY=$3
SUITE=${SUITE:-cbc}
ROLE=${ROLE:-initiator}
AUTH=${AUTH:-psk}
FRAG=${FRAG:-}
REVOKED=${REVOKED:-}
RSA_PSS=${RSA_PSS:-}
PMTU=${PMTU:-}
PMTU_LIMIT=${PMTU_LIMIT:-1000}
CRL_FETCH=${CRL_FETCH:-}
OCSP=${OCSP:-}
CHILDREN=${CHILDREN:-1}
case $CHILDREN in 1 | 2) ;; *) echo "CHILDREN is 1 or 2" >&2; exit 2 ;; esac
[ -z "$OCSP" ] || { [ "$AUTH" != psk ] && [ -z "$CRL_FETCH" ]; } || { echo "OCSP=1 needs AUTH=rsa|ecdsa and no CRL_FETCH" >&2; exit 2; }
[ -z "$CRL_FETCH" ] || [ "$AUTH" != psk ] || { echo "CRL_FETCH=1 needs AUTH=rsa|ecdsa" >&2; exit 2; }
[ "$REVOKED" != delta ] || [ -n "$CRL_FETCH" ] || { echo "REVOKED=delta needs CRL_FETCH=1" >&2; exit 2; }
[ -z "$PMTU" ] || { [ "$AUTH" != psk ] && [ -z "$FRAG" ]; } ||
    { echo "PMTU=1 needs AUTH=rsa|ecdsa and no FRAG" >&2; exit 2; }
[ -z "$RSA_PSS" ] || [ "$AUTH" = rsa ] || { echo "RSA_PSS=1 needs AUTH=rsa" >&2; exit 2; }
export SWAN_PKI_PSS=$RSA_PSS
[ "$(id -u)" -eq 0 ] || { echo "ike_vs_swan.sh: run as root" >&2; exit 2; }
swan_require_packages

ID=$$
GA=fi$ID-gA GB=fi$ID-gB HB=fi$ID-hB
swan_mkdir WORK work

passed=0 failed=0
check() { # name, then a command
    local name=$1; shift
    if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

swan_netns_add "$GA" "$GB" "$HB"
ip link add gAo netns "$GA" type veth peer name gBo netns "$GB"
ip link add gBi netns "$GB" type veth peer name hB0 netns "$HB"
for n in "$GA" "$GB" "$HB"; do
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$n" link set lo up
done
ip netns exec "$GB" sysctl -qw net.ipv4.ip_forward=1
ip -n "$HB" link set hB0 up; ip -n "$HB" addr add 192.168.20.5/24 dev hB0; ip -n "$HB" route add default via 192.168.20.1
ip -n "$GA" link set gAo up; ip -n "$GA" addr add 203.0.113.1/24 dev gAo
ip -n "$GB" link set gBo up; ip -n "$GB" addr add 203.0.113.2/24 dev gBo
ip -n "$GB" link set gBi up; ip -n "$GB" addr add 192.168.20.1/24 dev gBi
# kernel-libipsec routes a child's remote subnet from an address of its own in the local one.
[ "$CHILDREN" = 1 ] || ip -n "$GB" addr add 10.2.0.1/16 dev gBi

PSK="ferrogate-interop-psk-0123456789"
swan_suite "$SUITE" || exit 2
if [ "$ROLE" = initiator ]; then
    OUR_START=start SWAN_START=none OUR_IKE_LIFE=6s SWAN_IKE_REKEY=1h OUR_CHILD_LIFE=8s SWAN_CHILD_REKEY=8h SWAN_CHILD_LIFE=9h OUR_DPD=2s OUR_DPD_TIMEOUT=10s
else
    OUR_START=none SWAN_START=start OUR_IKE_LIFE=1h SWAN_IKE_REKEY=20s OUR_CHILD_LIFE=8h SWAN_CHILD_REKEY=8s SWAN_CHILD_LIFE=10s OUR_DPD=30s OUR_DPD_TIMEOUT=120s
fi

CONF_B=$WORK/swan-b
mkdir -p "$CONF_B"
ID_A=gw-a.ferrogate.test ID_B=gw-b.ferrogate.test
OUR_AUTH="psk: \"$PSK\""
SWAN_AUTH=(--psk "$PSK")
case $AUTH in
psk) ;;
rsa | ecdsa)
    # strongSwan's pki makes the CA and both certificates: nothing here is ours.
    DN_A="C=CH, O=ferrogate interop, CN=gw-a.ferrogate.test"
    DN_B="C=CH, O=ferrogate interop, CN=gw-b.ferrogate.test"
    swan_pki_ca "$WORK/pki" "$AUTH"
    # CRL_FETCH=1: every certificate names gB's HTTP server as its CRL distribution point.
    [ -z "$CRL_FETCH" ] || export SWAN_PKI_CDP=http://203.0.113.2:8080/ca.crl
    # OCSP=1: every certificate names gB's OCSP responder.
    [ -z "$OCSP" ] || export SWAN_PKI_OCSP=http://203.0.113.2:8888
    swan_pki_cert "$WORK/pki" "$AUTH" a "$DN_A" gw-a.ferrogate.test
    swan_pki_cert "$WORK/pki" "$AUTH" b "$DN_B" gw-b.ferrogate.test
    swan_pki_install "$WORK/pki" b "$CONF_B"
    # The CA's CRL, signed by strongSwan's pki: it revokes c (or b with REVOKED=1). With
    # REVOKED=delta it names a delta CRL, which revokes b.
    swan_pki_cert "$WORK/pki" "$AUTH" c "C=CH, O=ferrogate interop, CN=gw-c.ferrogate.test" gw-c.ferrogate.test
    # shellcheck disable=SC2046
    pki --signcrl --cacert "$WORK/pki/ca.pem" --cakey "$WORK/pki/ca.key" --lifetime 1 $(swan_pki_pad "$AUTH") \
        $([ "$REVOKED" = delta ] && echo "--crluri http://203.0.113.2:8080/delta.crl") \
        --reason key-compromise --cert "$WORK/pki/$([ "$REVOKED" = 1 ] && echo b || echo c).pem" \
        > "$WORK/pki/ca.crl" 2>> "$WORK/pki/pki.log"
    if [ "$REVOKED" = delta ]; then
        # shellcheck disable=SC2046
        pki --signcrl --cacert "$WORK/pki/ca.pem" --cakey "$WORK/pki/ca.key" --lifetime 1 $(swan_pki_pad "$AUTH") \
            --basecrl "$WORK/pki/ca.crl" --reason key-compromise --cert "$WORK/pki/b.pem" \
            > "$WORK/pki/delta.crl" 2>> "$WORK/pki/pki.log"
    fi
    OUR_AUTH="auth: pubkey
    cert: $WORK/pki/a.pem
    key: $WORK/pki/a.key
    cacerts: [$WORK/pki/ca.pem]
    $(if [ -n "$CRL_FETCH" ]; then echo "crl_fetch: yes"; elif [ -n "$OCSP" ]; then echo "crl_fetch: no
    ocsp: yes"; else echo "crls: [$WORK/pki/ca.crl]"; fi)
    revocation: strict
    rsa_pss: $([ -n "$RSA_PSS" ] && echo yes || echo no)"
    SWAN_AUTH=(--auth pubkey --cert b.pem)
    # RSA: distinguished names as identities; ECDSA: the FQDNs in subjectAltName.
    if [ "$AUTH" = rsa ]; then ID_A=$DN_A ID_B=$DN_B; fi
    ;;
*) echo "unknown AUTH $AUTH" >&2; exit 2 ;;
esac
[ -z "$REVOKED" ] || [ "$AUTH" != psk ] || { echo "REVOKED=1 needs AUTH=rsa|ecdsa" >&2; exit 2; }

# FRAG=1: seven more subnets a side make IKE_AUTH and CREATE_CHILD_SA larger than 400 bytes.
A_NETS=192.168.10.0/24 B_NETS=192.168.20.0/24 SWAN_EXTRA= OUR_FRAG=
if [ -n "$FRAG" ]; then
    for i in 1 2 3 4 5 6 7; do
        A_NETS="$A_NETS,10.1$i.0.0/16" B_NETS="$B_NETS,10.2$i.0.0/16"
        # kernel-libipsec routes each pair through its TUN device with a source address of
        # gB's inside its local subnet.
        ip -n "$GB" addr add "10.2$i.0.1/16" dev gBi
    done
    SWAN_EXTRA="fragment_size = 400"
    OUR_FRAG="fragmentation: yes
    fragment_size: 400"
fi
if [ -n "$RSA_PSS" ]; then
    SWAN_EXTRA="$SWAN_EXTRA
    rsa_pss = yes"
fi
if [ -n "$PMTU" ]; then
    OUR_FRAG="fragmentation: yes
    fragment_size: 1500"
    # As responder we learn of the loss from charon's retransmissions: start them at 1 s
    # (1, 2.4, 4.1, 6.5 s, ...) instead of 4 s.
    if [ "$ROLE" = responder ]; then
        SWAN_EXTRA="$SWAN_EXTRA
    retransmit_timeout = 1.0
    retransmit_base = 1.4"
    fi
    # A path MTU black hole towards gB: datagrams from gA above PMTU_LIMIT bytes are dropped
    # silently (no ICMP), counted.
    ip netns exec "$GB" nft -f - <<EOF
table ip pmtu {
    chain in {
        type filter hook input priority 0; policy accept;
        ip saddr 203.0.113.1 udp dport { 500, 4500 } ip length > $PMTU_LIMIT counter drop
    }
}
EOF
fi

cat > "$WORK/ike.yaml" <<EOF
tunnels:
  - name: site
    local: 203.0.113.1
    remote: 203.0.113.2
    local_id: "$ID_A"
    remote_id: "$ID_B"
    $OUR_AUTH
    ike_proposals: [$IKE_PROP]
    ike_lifetime: $OUR_IKE_LIFE
    dpd: { delay: $OUR_DPD, timeout: $OUR_DPD_TIMEOUT, action: restart }
    start: $OUR_START
    keyingtries: 0
    $OUR_FRAG
    children:
      - name: net
        local_ts: [${A_NETS//,/, }]
        remote_ts: [${B_NETS//,/, }]
        esp_proposals: [$ESP_PROP]
        lifetime: $OUR_CHILD_LIFE
EOF
# CHILDREN=2: a second child with PFS, negotiated in a CREATE_CHILD_SA of its own (by
# whoever initiated the IKE SA), once the IKE SA is up.
[ "$CHILDREN" = 1 ] || cat >> "$WORK/ike.yaml" <<EOF
      - name: net2
        local_ts: [10.1.0.0/16]
        remote_ts: [10.2.0.0/16]
        esp_proposals: [$ESP_PROP-modp2048]
        lifetime: 8h
EOF
swan_gen_swanctl --suite "$SUITE" --local 203.0.113.2 --remote 203.0.113.1 \
    --local-ts "$B_NETS" --remote-ts "$A_NETS" "${SWAN_AUTH[@]}" --fragmentation yes \
    --local-id "$ID_B" --remote-id "$ID_A" --start "$SWAN_START" \
    --ike-rekey "$SWAN_IKE_REKEY" --child-rekey "$SWAN_CHILD_REKEY" --child-life "$SWAN_CHILD_LIFE" --mobike no > "$CONF_B/swanctl.conf"
if [ "$CHILDREN" = 2 ]; then
    "$SWAN_PYTHON" - "$CONF_B/swanctl.conf" "$ESP_PROP-modp2048" "$SWAN_START" <<'EOP'
import sys
path, esp, start = sys.argv[1:]
text = open(path).read()
# After the first child (charon starts children in their order: the first in IKE_AUTH).
end = "            }\n        }\n    }\n}\n"
child = ("            }\n            net2 {\n                mode = tunnel\n"
         "                local_ts = 10.2.0.0/16\n                remote_ts = 10.1.0.0/16\n"
         "                esp_proposals = %s\n                start_action = %s\n" % (esp, start))
assert text.count(end) == 1
open(path, "w").write(text.replace(end, child + end))
EOP
fi

swan_mkdir DIR_B charon-b
swan_start "$GB" b "$DIR_B" "$SWAN_EXTRA"
swan_load b "$CONF_B/swanctl.conf" > "$WORK/load-b.txt"

ip netns exec "$GA" tcpdump -q -n -U -i gAo -w "$WORK/wire.pcap" udp 2>/dev/null &
TCPDUMP=$!
swan_track_pid "$TCPDUMP"
sleep 0.5

if [ -n "$CRL_FETCH" ]; then
    # The CRL distribution point the certificates name: Python's HTTP server on gB.
    ip netns exec "$GB" "$PY" -m http.server 8080 --bind 203.0.113.2 --directory "$WORK/pki" \
        > "$WORK/http.log" 2>&1 &
    swan_track_pid $!
    # Not listening in 5 s: said here, and the checks that need the CRL fail.
    swan_wait_listen "$GB" 8080 5 || true
fi
if [ -n "$OCSP" ]; then
    # OpenSSL's OCSP responder over the certificates pki issued: its index (status, expiry,
    # revocation time, serial), b revoked with REVOKED=1.
    for n in a b c; do
        serial=$(openssl x509 -in "$WORK/pki/$n.pem" -noout -serial | cut -d= -f2)
        end=$(date -u -d "$(openssl x509 -in "$WORK/pki/$n.pem" -noout -enddate | cut -d= -f2)" +%y%m%d%H%M%SZ)
        if [ -n "$REVOKED" ] && [ $n = b ]; then
            printf 'R\t%s\t%s\t%s\tunknown\t/CN=%s\n' "$end" "$(date -u +%y%m%d%H%M%SZ)" "$serial" $n
        else
            printf 'V\t%s\t\t%s\tunknown\t/CN=%s\n' "$end" "$serial" $n
        fi
    done > "$WORK/pki/index.txt"
    ip netns exec "$GB" openssl ocsp -index "$WORK/pki/index.txt" -port 8888 -rsigner "$WORK/pki/ca.pem" \
        -rkey "$WORK/pki/ca.key" -CA "$WORK/pki/ca.pem" -ndays 1 > "$WORK/ocsp.log" 2>&1 &
    swan_track_pid $!
    swan_wait_listen "$GB" 8888 5 || true
fi
# OCSP=1: ferrogate-ike asked the responder and took its signed answer.
ocsp_answered() {
    local want=Good
    [ -n "$REVOKED" ] && want=Revoked
    grep -m1 -F "OCSP answer" "$WORK/ike.log" | grep -F "http://203.0.113.2:8888" | grep -F "gw-b.ferrogate.test" |
        grep -F "status=$want" | sed 's/^/    /' && fetched_off_thread
}

# The fetch ran on a thread of its own, after the chain and AUTH verified (the daemon's
# thread went on meanwhile), and the IKE_AUTH was decided afterwards.
fetched_off_thread() {
    grep -m1 -F "off the daemon's thread" "$WORK/ike.log" | sed 's/^/    /'
}

# CRL_FETCH=1: ferrogate-ike fetched the CRL from the distribution point (its log, and the
# server's: a GET from gA).
crl_fetched() {
    grep -m1 -F "fetched a CRL" "$WORK/ike.log" | grep -F "http://203.0.113.2:8080/ca.crl" | sed 's/^/    /' &&
        grep -m1 -E '^203\.0\.113\.1 .*"GET /ca.crl HTTP/1.0" 200' "$WORK/http.log" | sed 's/^/    http.server: /' &&
        fetched_off_thread
}

# REVOKED=delta: ferrogate-ike also fetched the delta CRL the complete one names.
delta_fetched() {
    grep -F "fetched a CRL" "$WORK/ike.log" | grep -m1 -F "http://203.0.113.2:8080/delta.crl" | sed 's/^/    /' &&
        grep -m1 -E '^203\.0\.113\.1 .*"GET /delta.crl HTTP/1.0" 200' "$WORK/http.log" | sed 's/^/    http.server: /'
}

start_ike() {
    ip netns exec "$GA" "$IKE" --config "$WORK/ike.yaml" --export-dir "$WORK/export" --socket "$WORK/ike.sock" --log "${IKE_LOG:-info}" \
        >> "$WORK/events.jsonl" 2>> "$WORK/ike.log" &
    IKE_PID=$!
    swan_track_pid "$IKE_PID"
}
start_ike
if [ "$SWAN_START" = start ]; then swan_initiate b net 10 > /dev/null 2>&1 || true; fi

wait_event() { # jq-less: grep the JSON lines for an event (or FILE for a line), up to N seconds
    local pat=$1 n=$2 file=${3:-$WORK/events.jsonl} i
    for ((i = 0; i < n * 10; i++)); do
        grep -q "$pat" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
if [ -n "$REVOKED" ]; then
    # strongSwan's certificate is on its CA's CRL: no IKE SA, whoever initiates.
    refused() {
        wait_event "is revoked" 10 "$WORK/ike.log" || return 1
        grep -m1 "is revoked" "$WORK/ike.log"
        sleep 2
        ! grep -q '"event":"ike-up"' "$WORK/events.jsonl"
    }
    if [ "$REVOKED" = delta ]; then
        check "ferrogate-ike refuses strongSwan's certificate, revoked by the delta CRL strongSwan's pki signed" refused
        check "ferrogate-ike fetched the delta CRL the complete CRL names (freshest CRL)" delta_fetched
    else
        check "ferrogate-ike refuses strongSwan's certificate, revoked by the CRL strongSwan's pki signed" refused
    fi
    [ -z "$CRL_FETCH" ] || check "ferrogate-ike fetched that CRL from the certificate's distribution point (HTTP), off the daemon's thread" crl_fetched
    [ -z "$OCSP" ] || check "ferrogate-ike asked the certificate's OCSP responder (openssl ocsp), off the daemon's thread, and believed its signed answer" ocsp_answered
    echo "$passed passed, $failed failed (REVOKED=$REVOKED: nothing else to check)"
    [ "$failed" -eq 0 ]
    exit
fi
check "ferrogate-ike: IKE SA up ($IKE_PROP, NAT detected)" wait_event '"event":"ike-up".*"nat":true' 15
check "ferrogate-ike: CHILD_SA up ($ESP_PROP, UDP-encapsulated)" wait_event '"event":"child-up".*"udp_encap":true' 10
check "strongSwan: CHILD_SA INSTALLED" swan_wait_established b 10
if [ "$CHILDREN" = 2 ]; then
    second_child() {
        wait_event '"child":"net2".*"event":"child-up"' 10 || return 1
        swan_wait_established b 10 2 || return 1
        local spis
        spis=$(swan_sa_spis b) || return 1
        printf '%s\n' "$spis"
        grep -q "^net2" <<< "$spis"
    }
    check "the second child (PFS modp2048) in a CREATE_CHILD_SA of its own, made by $([ "$ROLE" = initiator ] && echo "ferrogate-ike" || echo "strongSwan"): INSTALLED on both sides" second_child
fi
# (swanctl failing here shows as an empty list: the checks below that need it fail.)
swan_list b > "$WORK/list-b.txt" || true
echo "== swanctl --list-sas on gB"; cat "$WORK/list-b.txt"
if [ "$AUTH" != psk ]; then
    # Each side verified the other's certificate chain and signature.
    CHARON_LOG=$(swan_dir b)/charon.log
    swan_authed() {
        grep -E "received end entity cert \"$DN_A\"" "$CHARON_LOG" &&
            grep -E "authentication of '$ID_A' with [A-Z0-9_]+ successful" "$CHARON_LOG" &&
            grep -qF "remote '$ID_A' @ 203.0.113.1" "$WORK/list-b.txt"
    }
    check "strongSwan: verified our $AUTH certificate (issued by its pki) and RFC 7427 signature" swan_authed
    we_authed() {
        grep -F "peer certificate and signature verified" "$WORK/ike.log" &&
            grep -F '"event":"ike-up"' "$WORK/events.jsonl" | grep -F "\"peer_id\":\"$ID_B\""
    }
    check "ferrogate-ike: verified strongSwan's $AUTH certificate and signature as '$ID_B'" we_authed
    if [ -n "$RSA_PSS" ]; then
        pss_both_ways() {
            # charon names the scheme it verified ours with; we log the one it signed with. And
            # the certificates and CRL pki made are PSS-signed (read back by openssl).
            grep -E "authentication of '$ID_A' with RSA_EMSA_PSS[A-Z0-9_]* successful" "$CHARON_LOG" &&
                grep -F "peer certificate and signature verified" "$WORK/ike.log" | grep -m1 -F "signature=RSASSA-PSS" &&
                openssl x509 -in "$WORK/pki/b.pem" -noout -text | grep -m1 "Signature Algorithm: rsassaPss" &&
                openssl crl -inform DER -in "$WORK/pki/ca.crl" -noout -text | grep -m1 "Signature Algorithm: rsassaPss"
        }
        check "RSASSA-PSS both ways: charon verified ours, we verified charon's, certificates and CRL PSS-signed" pss_both_ways
    fi
    crl_checked() {
        grep -F "certificate not in its issuer's CRL" "$WORK/ike.log" | grep -F "gw-b.ferrogate.test" | grep -m1 "current=true"
    }
    [ -n "$OCSP" ] || check "ferrogate-ike: strongSwan's certificate checked against the CA's CRL (pki --signcrl, revocation: strict)" crl_checked
    [ -z "$CRL_FETCH" ] || check "ferrogate-ike fetched that CRL from the certificate's distribution point (HTTP), off the daemon's thread" crl_fetched
    [ -z "$OCSP" ] || check "ferrogate-ike asked the certificate's OCSP responder (openssl ocsp), off the daemon's thread, and believed its signed answer" ocsp_answered
fi

# Both views of the keys: ferrogate-ike's export and charon's chd=4 log.
keys_agree() {
    swan_sa_spis b > "$WORK/spis-b.txt"
    swan_child_keys b > "$WORK/keys-b.txt"
    "$SWAN_PYTHON" - "$WORK" <<'EOP'
import re, sys
w = sys.argv[1]
spis = [dict(kv.split("=") for kv in l.split()[1:]) for l in open(w + "/spis-b.txt")]
swan = {(r["dir"], r["spi"]): r for r in (dict(kv.split("=", 1) for kv in l.split()) for l in open(w + "/keys-b.txt"))}
# Every SA ferrogate-ike ever negotiated: with rekeys every few seconds, the current export may
# already have moved past the SA strongSwan lists.
text = open(w + "/export/site-history.yaml").read()
ours = {}
for block in text.split("  - name: ")[1:]:
    g = lambda k: (re.search(r"^\s+%s: \"?([^\"\n]+)\"?$" % k, block, re.M) or [None, None])[1]
    ours[(g("direction"), "%08x" % int(g("spi"), 16))] = (g("enc_key")[2:], (g("auth_key") or "0x-")[2:])
if not spis:
    print("no installed CHILD_SA on strongSwan"); sys.exit(1)
ok = True
# Every CHILD_SA strongSwan has installed (each child's current one): its inbound SA is our
# outbound one, and the other way round.
for s in spis:
    for sd, od in (("in", "out"), ("out", "in")):
        spi = s[sd]
        mine = ours.get((od, spi))
        theirs = swan.get((sd, spi))
        if mine is None or theirs is None:
            print("SPI %s: ferrogate-ike %s, strongSwan %s" % (spi, "has it" if mine else "lacks it", "has it" if theirs else "lacks it")); ok = False; continue
        if mine != (theirs["enc"], theirs["integ"]):
            print("SPI %s: keys differ" % spi); ok = False
        else:
            print("SPI %s (%s on strongSwan): keys equal (enc %d bytes)" % (spi, sd, len(mine[0]) // 2))
sys.exit(0 if ok else 1)
EOP
}
check "SPIs agree and ferrogate-ike's CHILD_SA keys equal strongSwan's" keys_agree

# strongSwan -> us: pings from hB go into the tunnel; decrypt what crossed the wire with fgpcap.
ip netns exec "$HB" ping -c 5 -i 0.2 -W 1 192.168.10.5 > /dev/null 2>&1 || true
sleep 0.5
cp "$WORK/wire.pcap" "$WORK/wire-1.pcap"
decrypt_ok() {
    "$FGPCAP" decrypt --sa "$WORK/export/site.yaml" --in "$WORK/wire-1.pcap" --out "$WORK/clear-1.pcap" --json > "$WORK/dec.json"
    cat "$WORK/dec.json"
    "$PY" - "$WORK" <<'EOP'
import json, sys
from scapy.all import rdpcap, IP, ICMP
w = sys.argv[1]
d = json.load(open(w + "/dec.json"))
bad = {k: v for k, v in d["drops"].items() if k != "not_ipsec" and v}
pk = [p for p in rdpcap(w + "/clear-1.pcap") if IP in p and ICMP in p and p[IP].src == "192.168.20.5"
      and p[IP].dst == "192.168.10.5" and p[ICMP].type == 8]
print("decrypted ICMP echo requests from hB:", len(pk), "drops:", bad)
sys.exit(0 if len(pk) >= 5 and not bad else 1)
EOP
}
check "strongSwan's ESP decrypts with ferrogate-ike's inbound keys (fgpcap)" decrypt_ok

# us -> strongSwan: ESP built by fgpcap with our outbound keys, sent from gA's kernel.
ip netns exec "$HB" tcpdump -q -n -U -i hB0 -w "$WORK/hb.pcap" icmp 2>/dev/null &
HBDUMP=$!
swan_track_pid "$HBDUMP"
sleep 0.5
inject_ok() {
    "$PY" - "$WORK" <<'EOP'
import sys
from scapy.all import wrpcap, IP, ICMP, Raw
w = sys.argv[1]
wrpcap(w + "/plain.pcap", [IP(src="192.168.10.5", dst="192.168.20.5") / ICMP(id=0x4242, seq=i) / Raw(b"ferrogate-ike keys %d" % i) for i in range(5)])
EOP
    "$FGPCAP" encrypt --sa "$WORK/export/site.yaml" --in "$WORK/plain.pcap" --out "$WORK/esp.pcap" --json
    ip netns exec "$GA" "$PY" - "$WORK" <<'EOP'
import sys
from scapy.all import rdpcap, send, IP, conf
conf.verb = 0
for p in rdpcap(sys.argv[1] + "/esp.pcap"):
    send(IP(bytes(p)))
EOP
    sleep 1
    swan_stop_pid "$HBDUMP"
    "$PY" - "$WORK" <<'EOP'
import sys
from scapy.all import rdpcap, IP, ICMP
pk = [p for p in rdpcap(sys.argv[1] + "/hb.pcap") if ICMP in p and p[IP].src == "192.168.10.5" and p[ICMP].id == 0x4242]
print("echo requests that reached hB through strongSwan:", len(pk))
sys.exit(0 if len(pk) == 5 else 1)
EOP
}
check "ESP made with ferrogate-ike's outbound keys is accepted by strongSwan (5/5 reach hB)" inject_ok

# CHILD_SA rekey: 8 s lifetime on one side (minus up to 10% jitter on ours).
# (No child-up at all: FIRST_SPI is empty, and the check below says so rather than set -e
# ending the run before its summary.)
FIRST_SPI=$(grep -o '"event":"child-up"[^}]*' "$WORK/events.jsonl" | head -1 | grep -o '"spi_in":"[0-9a-f]*"' | cut -d'"' -f4) || FIRST_SPI=
rekeyed() {
    local i
    [ -n "$FIRST_SPI" ] || { echo "no CHILD_SA came up: nothing to rekey"; return 1; }
    for ((i = 0; i < 150; i++)); do
        if grep -q '"event":"child-up".*"replaces":"'"$FIRST_SPI"'"' "$WORK/events.jsonl" &&
            grep -q '"event":"child-down".*"spi_in":"'"$FIRST_SPI"'"' "$WORK/events.jsonl"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
check "CHILD_SA rekeyed ($([ "$ROLE" = initiator ] && echo "ferrogate-ike" || echo "strongSwan") initiates), old SA removed" rekeyed
sleep 1
check "after the rekey: strongSwan's new SPIs and keys agree with ferrogate-ike's" keys_agree
rekey_count() {
    local n
    n=$(grep -c '"event":"child-up"' "$WORK/events.jsonl")
    echo "CHILD_SAs installed so far: $n"
    swan_list_grep b "INSTALLED"
}
check "strongSwan still has the tunnel INSTALLED after the rekey" rekey_count
ike_rekeyed() {
    # strongSwan's rekey_time = 20 s (its hard limit is 10% later; shorter rekey times leave it
    # no time at all), ours 6 s. The rekey itself is what this checks: none within 30 s fails.
    wait_event "IKE SA rekeyed" 30 "$WORK/ike.log" || { echo "no IKE SA rekey in ferrogate-ike's log within 30 s"; return 1; }
    grep -m1 -o "IKE SA rekeyed ([a-z]*)" "$WORK/ike.log"
    sleep 0.5
    swan_list_grep b "ESTABLISHED" && ping_through
}
ping_through() { # the CHILD_SA still carries strongSwan's ESP to our keys after the IKE rekey
    ip netns exec "$HB" ping -c 2 -i 0.2 -W 1 192.168.10.5 > /dev/null 2>&1 || true
    swan_list_grep b INSTALLED
}
check "IKE SA rekeyed ($([ "$ROLE" = initiator ] && echo "ferrogate-ike" || echo "strongSwan") initiates), still ESTABLISHED on strongSwan" ike_rekeyed

# FRAG=1: what crossed the wire so far (IKE_AUTH, a CHILD_SA rekey, an IKE SA rekey) and what
# charon says about it.
fragments_on_the_wire() {
    cp "$WORK/wire.pcap" "$WORK/wire-frag.pcap"
    "$PY" - "$WORK/wire-frag.pcap" <<'EOP'
import struct, sys
from collections import Counter
from scapy.all import rdpcap, IP, UDP
NAMES = {35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL"}
seen, biggest, msgs = Counter(), {}, Counter()
for p in rdpcap(sys.argv[1]):
    if IP not in p or UDP not in p or 4500 not in (p[UDP].sport, p[UDP].dport):
        continue
    ike = bytes(p[UDP].payload)
    if len(ike) < 4 + 36 or ike[:4] != b"\0\0\0\0":  # non-ESP marker, IKE header, SKF fields
        continue
    ike = ike[4:]
    if ike[16] != 53:  # Next Payload: Encrypted Fragment (RFC 7383)
        continue
    who = "ferrogate-ike" if p[IP].src == "203.0.113.1" else "strongSwan"
    exch = NAMES.get(ike[18], str(ike[18]))
    kind = "response" if ike[19] & 0x20 else "request"
    number, total = struct.unpack("!HH", ike[32:36])
    seen[(who, exch, kind)] += 1
    msgs[(who, exch, kind)] += number == total
    biggest[who] = max(biggest.get(who, 0), p[IP].len)
for k in sorted(seen):
    print("%s sent %d fragments of %d %s %s message(s)" % (k[0], seen[k], msgs[k], k[1], k[2]))
print("largest fragment datagram (IP length):", biggest)
ok = True
for who in ("ferrogate-ike", "strongSwan"):
    if sum(n for (w, e, _), n in seen.items() if w == who and e == "IKE_AUTH") < 2:
        print("FAIL: no fragmented IKE_AUTH from", who); ok = False
    if sum(n for (w, e, _), n in seen.items() if w == who and e == "CREATE_CHILD_SA") < 2:
        print("FAIL: no fragmented CREATE_CHILD_SA from", who); ok = False
# Ours count IP (20), UDP (8) and the non-ESP marker (4) into the 400 (RFC 7383 s2.5.1).
if biggest.get("ferrogate-ike", 0) > 400:
    print("FAIL: ferrogate-ike sent a fragment above 400 bytes"); ok = False
sys.exit(0 if ok else 1)
EOP
}
charon_fragment_log() {
    local log
    log="$(swan_dir b)/charon.log"
    grep -E "fragment|splitting" "$log" | sed 's/^/    /' | head -20
    grep -q "received fragment #" "$log" && grep -q "reassembled fragmented IKE message" "$log" &&
        grep -q "splitting IKE message" "$log"
}
# PMTU=1: our IKE_AUTH as first cut (dropped by the path), then cut smaller (taken).
recut_on_the_wire() {
    cp "$WORK/wire.pcap" "$WORK/wire-pmtu.pcap"
    "$PY" - "$WORK/wire-pmtu.pcap" "$ROLE" "$PMTU_LIMIT" <<'EOP' || return 1
import struct, sys
from scapy.all import rdpcap, IP, UDP
cuts = {}  # Total Fragments (1: not fragmented) -> IP lengths of our IKE_AUTH datagrams
for p in rdpcap(sys.argv[1]):
    if IP not in p or UDP not in p or p[IP].src != "203.0.113.1" or p[UDP].dport != 4500:
        continue
    ike = bytes(p[UDP].payload)
    if len(ike) < 4 + 36 or ike[:4] != b"\0\0\0\0" or ike[4 + 18] != 35:
        continue  # not IKE_AUTH (after the non-ESP marker)
    if ike[4 + 16] == 53:  # SKF
        number, total = struct.unpack("!HH", ike[4 + 32:4 + 36])
    elif ike[4 + 16] == 46:  # SK: the whole message in one datagram
        total = 1
    else:
        continue
    cuts.setdefault(total, []).append(p[IP].len)
for total in sorted(cuts):
    print("    our IKE_AUTH %s in %d fragments: IP lengths %s"
          % ("response" if sys.argv[2] == "responder" else "request", total, cuts[total]))
totals = sorted(cuts)
ok = len(totals) >= 2
limit = int(sys.argv[3])
ok = ok and max(cuts[totals[0]]) > limit and len(cuts[totals[0]]) >= 3 * totals[0]
ok = ok and all(n <= limit for n in cuts[totals[-1]])
sys.exit(0 if ok else 1)
EOP
    local what=request
    [ "$ROLE" = responder ] && what=response
    grep -m1 -F "cutting the $what smaller" "$WORK/ike.log" | sed 's/^/    /' &&
        ip netns exec "$GB" nft list table ip pmtu | grep -E "counter packets [1-9]" | sed 's/^ */    nft: /' &&
        grep -q "reassembled fragmented IKE message" "$(swan_dir b)/charon.log"
}
if [ -n "$PMTU" ]; then
    check "path MTU (RFC 7383 §2.5.2): our IKE_AUTH ($ROLE) lost at 1500 (the path drops >$PMTU_LIMIT; 3+ sends over 2 s), then cut into more fragments within it that charon reassembled" recut_on_the_wire
fi

if [ -n "$FRAG" ]; then
    check "IKE fragments on the wire both ways (IKE_AUTH, CREATE_CHILD_SA), ours within fragment_size 400" fragments_on_the_wire
    check "charon reassembled ferrogate-ike's fragments and split its own messages (charon.log)" charon_fragment_log
fi

if [ "$ROLE" = initiator ]; then
    # Kill charon outright and start a new one: ferrogate-ike's DPD (2 s) finds the peer gone,
    # and dpd action restart brings the tunnel up again with the new charon.
    # (swan_stop signals only the charon it started, and returns also when that one already died.)
    swan_stop b KILL
    swan_mkdir DIR_B2 charon-b2
    swan_start "$GB" b "$DIR_B2" "$SWAN_EXTRA"
    swan_load b "$CONF_B/swanctl.conf" > /dev/null
    N_UP=$(grep -c '"event":"ike-up"' "$WORK/events.jsonl" || true)
    restarted() {
        local i
        for ((i = 0; i < 600; i++)); do
            [ "$(grep -c '"event":"ike-up"' "$WORK/events.jsonl")" -gt "$N_UP" ] && break
            sleep 0.1
        done
        grep '"event":"ike-down"' "$WORK/events.jsonl" | tail -1
        swan_wait_established b 10
    }
    check "charon killed and restarted: DPD notices, the tunnel is re-initiated" restarted
    check "after the restart: keys agree again" keys_agree
fi

deleted() {
    local i rc
    swan_signal_pid TERM "$IKE_PID" || { echo "ferrogate-ike was no longer running"; return 1; }
    for ((i = 0; i < 100; i++)); do
        swan_pid_alive "$IKE_PID" || break
        sleep 0.1
    done
    if swan_pid_alive "$IKE_PID"; then
        echo "ferrogate-ike still running 10 s after SIGTERM"
        swan_stop_pid "$IKE_PID" KILL
        return 1
    fi
    swan_wait_pid "$IKE_PID" || true
    # Gone from swanctl's list, and swanctl did answer (a charon it cannot reach lists nothing).
    for ((i = 0; i < 30; i++)); do
        rc=0
        swan_list_grep b "ESTABLISHED" || rc=$?
        case $rc in
        1) return 0 ;;
        2) return 1 ;;
        esac
        sleep 0.1
    done
    echo "strongSwan still lists the IKE SA ESTABLISHED"
    return 1
}
check "ferrogate-ike stopped with SIGTERM: strongSwan's IKE SA is deleted" deleted

swan_stop_pid "$TCPDUMP"
if [ "$failed" -ne 0 ] || [ -n "${SWAN_KEEP:-}" ]; then
    echo "== ferrogate-ike log (tail)"; tail -30 "$WORK/ike.log"
    echo "== events"; cat "$WORK/events.jsonl"
    echo "== charon log (tail)"; tail -40 "$(swan_dir b)/charon.log" 2>/dev/null || true
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
