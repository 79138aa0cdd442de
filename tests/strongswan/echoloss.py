#!/usr/bin/env python3
"""Lost echoes of a `ping -D` stream (gateway_vs_swan.sh), and what may explain them.

  echoloss.py explain STREAM IKE_LOG CHARON_LOG
      the unanswered icmp_seq ranges, when they went missing (the last reply before them),
      and ferrogate-ike's and charon's log lines within 1 s of the first one
  echoloss.py overflow STREAM RCVBUF_LOG STATS_BEFORE STATS_AFTER
      exit 0 only if ferrogate's drops and missed frames did not change between the two stats
      files and, for every lost echo, strongSwan's UdpRcvbufErrors (RCVBUF_LOG: "epoch value"
      samples) rose within about a second of it
"""
import datetime
import json
import re
import sys


def stream(path):
    """({icmp_seq: reply time}, echoes sent or None without ping's summary) of a `ping -D`
    output."""
    got, tx = {}, None
    for line in open(path):
        m = re.match(r"\[(\d+\.\d+)\].*icmp_seq=(\d+)", line)
        if m:
            got[int(m.group(2))] = float(m.group(1))
        m = re.search(r"(\d+) packets transmitted", line)
        if m:
            tx = int(m.group(1))
    return got, tx


def reply_before(got, seq):
    """The time of the last answered echo before `seq` (epoch seconds), if any."""
    return max((got[k] for k in got if k < seq), default=None)


def explain(stream_path, ike_log, charon_log):
    got, tx = stream(stream_path)
    tx = tx if tx is not None else max(got, default=0)
    ranges, start = [], None
    for i in range(1, tx + 2):
        if i not in got and i <= tx:
            start = i if start is None else start
        elif start is not None:
            ranges.append((start, i - 1))
            start = None

    def when(seq):
        t = reply_before(got, seq)
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc) if t else None

    for a, b in ranges[:8]:
        w = when(a)
        print(f"lost: icmp_seq {a}-{b} ({b - a + 1}), after the reply at {w.strftime('%H:%M:%S.%f') if w else '?'}")
    if not ranges or not when(ranges[0][0]):
        return
    t0 = when(ranges[0][0])
    print("ferrogate-ike around the first loss:")
    for line in open(ike_log, errors="replace"):
        try:
            t = datetime.datetime.fromisoformat(line[:26].rstrip("Z") + "+00:00")
        except ValueError:
            continue
        if abs((t - t0).total_seconds()) <= 1.0:
            print("  " + line.rstrip()[:220])
    # charon's log: local "HH:MM:SS.mmm" stamps; its ESP (libipsec), child and kernel lines.
    print("charon around the first loss:")
    t0 = t0.astimezone()
    for line in open(charon_log, errors="replace"):
        try:
            h, m, rest = line[:12].split(":")
            t = t0.replace(hour=int(h), minute=int(m), second=int(rest[:2]), microsecond=int(rest[3:6]) * 1000)
        except ValueError:
            continue
        if abs((t - t0).total_seconds()) <= 1.0 and any(k in line for k in ("[ESP]", "[CHD]", "[KNL]", "[IKE]")):
            print("  " + line.rstrip()[:220])


def overflow(stream_path, rcvbuf_log, stats_before, stats_after):
    got, tx = stream(stream_path)
    if tx is None:
        print("the ping stream has no summary: nothing to account for")
        return False
    samples = [(float(a), int(b)) for a, b in (l.split() for l in open(rcvbuf_log) if len(l.split()) == 2)]

    def fg(f):
        try:
            s = json.load(open(f))
        except (OSError, ValueError):
            return None
        return sum(s["drops"].values()), sum(p.get("rx_missed", 0) for p in s["ports"])

    before, after = fg(stats_before), fg(stats_after)
    if before is None or after is None or after != before:
        print(f"ferrogate's drops and missed frames changed over the stream ({before} -> {after}): not the peer's doing alone")
        return False
    ok = True
    for seq in range(1, tx + 1):
        if seq in got:
            continue
        t = reply_before(got, seq)
        if t is None:
            ok = False
            continue
        near = [n for ts, n in samples if t - 1.0 <= ts <= t + 1.2]
        grew = len(near) >= 2 and max(near) > min(near)
        print(f"echo {seq}: strongSwan's UdpRcvbufErrors {'rose' if grew else 'did not rise'} around it ({min(near, default='?')} -> {max(near, default='?')})")
        ok &= grew
    if ok:
        print("every lost echo went into strongSwan's overflowing UDP socket; ferrogate dropped and missed nothing")
    return ok


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "explain":
        explain(*sys.argv[2:])
    elif len(sys.argv) == 6 and sys.argv[1] == "overflow":
        sys.exit(0 if overflow(*sys.argv[2:]) else 1)
    else:
        sys.exit(__doc__)
