#!/usr/bin/env python3
"""Parse strongSwan 5.9.8 charon filelog output and `swanctl --list-sas` text.

  swanlog.py child-keys charon.log     CHILD_SA keys (needs chd = 4), one line per SA direction:
      child=net uid=1 dir=in spi=c1a2b3c4 role=initiator alg=ESP:AES_CBC_256/... enc=HEX integ=HEX
  swanlog.py ike-keys charon.log [LIST_SAS_FILE]
                                       IKE_SA keys (needs ike = 4), one line per IKE_SA; with the
                                       --list-sas text (file or '-') the SPIs are added
  swanlog.py list-sas < list-sas.txt   INSTALLED CHILD_SAs: "net{1} in=SPI out=SPI"
  swanlog.py hexdumps charon.log       every %B hex dump in the log: "thread label HEX"

The filelog must be written with lib.sh's settings (ike_name = yes; any time_format). Every line
of a multi-line message carries the same "TT[GRP] <name|uid> " prefix, and the lines of one
message are contiguous (file_logger.c holds a mutex per message), so a hex dump is the "=> N bytes
@ 0x..." line plus the following "NNNN: XX XX ..." lines of the same thread.

Which key belongs to which direction: keymat_v2.c logs "encryption initiator key",
"encryption responder key", "integrity initiator key", "integrity responder key", where initiator
is the initiator of the exchange that created the CHILD_SA (IKE_AUTH or CREATE_CHILD_SA), not of
the IKE_SA. child_create.c installs the inbound SA (our SPI, "_i") with the responder keys when it
initiated and with the initiator keys when it responded, and the outbound SA ("_o") the other way
round. It logs "establishing CHILD_SA name{uid}" only as initiator, and "CHILD_SA name{uid}
established with SPIs X_i Y_o" in the same thread right after the key dumps. For AEAD (GCM) the
encryption key includes the 4-byte salt and there is no integrity key (integ=-).
"""
import re
import sys

PREFIX = re.compile(r"^(?:\S+ )?(\d+)\[([A-Z]+)\](?: <([^>]*)>)? ?(.*)$")
DUMP_HEAD = re.compile(r"^(.*?) => (\d+) bytes @ \S+$")
DUMP_LINE = re.compile(r"^\s*(\d+): (.*)$")
ESTABLISHING = re.compile(r"^establishing CHILD_SA (\S+)\{(\d+)\}")
ESTABLISHED = re.compile(
    r"^(inbound )?CHILD_SA (\S+)\{(\d+)\} established with SPIs ([0-9a-f]{8})_i ([0-9a-f]{8})_o")
SELECTED = re.compile(r"^selected proposal: (ESP|AH|IKE):(\S+)")


def ike_uid(name):
    """'gw|3' or '3' (before the peer config is known) -> 3."""
    if not name:
        return None
    return int(name.rsplit("|", 1)[-1])


def events(path):
    """Yield (thread, group, ike_name, kind, data) for every message, hex dumps joined."""
    open_dumps = {}  # thread -> [label, length, bytearray, group, ike_name]

    def close(thread):
        d = open_dumps.pop(thread, None)
        if d is not None:
            label, length, data, group, name = d
            if len(data) != length:
                raise SystemExit("%s: dump '%s' has %d of %d bytes" % (path, label, len(data), length))
            return (thread, group, name, "dump", (label, bytes(data)))
        return None

    with open(path, errors="replace") as f:
        for raw in f:
            m = PREFIX.match(raw.rstrip("\n"))
            if not m:
                continue
            thread, group, name, msg = m.group(1), m.group(2), m.group(3), m.group(4)
            if thread in open_dumps:
                dl = DUMP_LINE.match(msg)
                if dl and int(dl.group(1)) == len(open_dumps[thread][2]):
                    # "%4d: " then 16 * "XX " (padded) minus one space, two spaces, ASCII.
                    open_dumps[thread][2].extend(bytes.fromhex("".join(dl.group(2)[:47].split())))
                    continue
                ev = close(thread)
                if ev:
                    yield ev
            dh = DUMP_HEAD.match(msg)
            if dh:
                open_dumps[thread] = [dh.group(1), int(dh.group(2)), bytearray(), group, name]
                if int(dh.group(2)) == 0:
                    yield close(thread)
                continue
            yield (thread, group, name, "msg", msg)
    for thread in list(open_dumps):
        ev = close(thread)
        if ev:
            yield ev


def child_keys(path):
    initiated = set()      # CHILD_SA uids we initiated
    pending = {}           # thread -> {label: bytes}
    alg = {}               # thread -> last selected ESP/AH proposal
    out = []
    for thread, group, name, kind, data in events(path):
        if kind == "dump":
            label, value = data
            if label in ("encryption initiator key", "encryption responder key",
                         "integrity initiator key", "integrity responder key"):
                pending.setdefault(thread, {})[label] = value
            continue
        m = SELECTED.match(data)
        if m and m.group(1) != "IKE":
            alg[thread] = "%s:%s" % (m.group(1), m.group(2))
            continue
        m = ESTABLISHING.match(data)
        if m:
            initiated.add(int(m.group(2)))
            continue
        m = ESTABLISHED.match(data)
        if m:
            child, uid, spi_in, spi_out = m.group(2), int(m.group(3)), m.group(4), m.group(5)
            keys = pending.pop(thread, {})
            if not keys:
                print("swanlog: no keys logged for %s{%d} (is chd = 4?)" % (child, uid), file=sys.stderr)
                continue
            role = "initiator" if uid in initiated else "responder"
            mine, theirs = ("responder", "initiator") if role == "initiator" else ("initiator", "responder")

            def key(kind, who):
                v = keys.get("%s %s key" % (kind, who))
                return v.hex() if v else "-"
            a = alg.pop(thread, "-")
            ike = ike_uid(name)
            for direction, spi, who in (("in", spi_in, mine), ("out", spi_out, theirs)):
                out.append("child=%s uid=%d dir=%s spi=%s role=%s ike_uid=%s alg=%s enc=%s integ=%s" % (
                    child, uid, direction, spi, role, ike, a,
                    key("encryption", who), key("integrity", who)))
    return out


IKE_LABELS = {"Sk_d secret": "sk_d", "Sk_ai secret": "sk_ai", "Sk_ar secret": "sk_ar",
              "Sk_ei secret": "sk_ei", "Sk_er secret": "sk_er", "Sk_pi secret": "sk_pi",
              "Sk_pr secret": "sk_pr", "SKEYSEED": "skeyseed",
              "shared Diffie Hellman secret": "g_ir"}


def parse_list_sas(text):
    """-> (ike: {uid: (name, spi_i, spi_r)}, children: [(name, uid, state, in, out)])"""
    ikes, children = {}, []
    cur = None
    for line in text.splitlines():
        m = re.match(r"^(\S+): #(\d+), (\w+), IKEv\d, ([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r", line)
        if m:
            ikes[int(m.group(2))] = (m.group(1), m.group(4), m.group(5))
            continue
        m = re.match(r"^\s+(\S+): #(\d+), reqid \d+, (\w+),", line)
        if m:
            cur = [m.group(1), int(m.group(2)), m.group(3), None, None]
            children.append(cur)
            continue
        m = re.match(r"^\s+(in|out)\s+([0-9a-f]{8})", line)
        if m and cur is not None:
            cur[3 if m.group(1) == "in" else 4] = m.group(2)
    return ikes, children


IKE_NAMED = re.compile(r"^IKE_SA \S+\[(\d+)\] (?:rekeyed between|state change: CONNECTING => ESTABLISHED)")


def ike_keys(path, list_sas=None):
    """keymat_v2.c logs SKEYSEED and SK_* in the context of the IKE_SA doing the exchange. For an
    IKE_SA rekey that is the old SA; the same thread then logs "IKE_SA gw[N] rekeyed between" or
    "IKE_SA gw[N] state change: CONNECTING => ESTABLISHED" naming the new one, before it sends
    anything."""
    records = []   # [uid, {field: hex}]
    fresh = {}     # thread -> record that a following naming line may still relabel
    for thread, group, name, kind, data in events(path):
        if kind == "dump":
            if group != "IKE" or data[0] not in IKE_LABELS:
                continue
            if data[0] == "SKEYSEED" or thread not in fresh:
                fresh[thread] = [ike_uid(name), {}]
                records.append(fresh[thread])
            fresh[thread][1][IKE_LABELS[data[0]]] = data[1].hex()
            continue
        if thread not in fresh:
            continue
        m = IKE_NAMED.match(data)
        if m:
            fresh.pop(thread)[0] = int(m.group(1))
        elif data.startswith(("sending packet", "generating ")):
            fresh.pop(thread)
    ikes = parse_list_sas(list_sas)[0] if list_sas else {}
    out = []
    for uid, rec in records:
        if "sk_d" not in rec:
            continue  # PPK re-derivations etc.
        name, spi_i, spi_r = ikes.get(uid, ("-", "-", "-"))
        fields = " ".join("%s=%s" % (k, rec.get(k, "-")) for k in
                          ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"))
        out.append("ike=%s uid=%s spi_i=%s spi_r=%s %s" % (name, uid, spi_i, spi_r, fields))
    return out


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd = sys.argv[1]
    if cmd == "child-keys":
        lines = child_keys(sys.argv[2])
    elif cmd == "ike-keys":
        text = None
        if len(sys.argv) > 3:
            text = sys.stdin.read() if sys.argv[3] == "-" else open(sys.argv[3]).read()
        lines = ike_keys(sys.argv[2], text)
    elif cmd == "list-sas":
        _, children = parse_list_sas(sys.stdin.read())
        lines = ["%s{%d} in=%s out=%s" % (c[0], c[1], c[3], c[4]) for c in children
                 if c[2] == "INSTALLED"]
    elif cmd == "hexdumps":
        lines = ["%s %s %s" % (e[0], e[4][0], e[4][1].hex()) for e in events(sys.argv[2])
                 if e[3] == "dump"]
    else:
        raise SystemExit(__doc__)
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
