#!/usr/bin/python3
"""How booking batches followed one another, from referrald's log.

Run referrald with log_level = debug during a hot phase; every answered
booking batch then logs a line "booking batch: sent_us=... db_us=...
requests=... booked=... sessions=... first_session=...". This reads them
and prints:

  - how busy the database was with batches (any, and those that booked),
    over the middle half of the run (the ends ramp up and drain);
  - the cost per booked request in batches that booked;
  - for a few sessions of the middle, their batches in order: when each
    went (ms from the session's first), how long it took, its size and
    how many it booked; and how long the session took from its first
    batch to the first batch of the next one.

  batch_timeline.py LOG [--sessions N]
"""

import argparse
import re
import statistics
import sys

LINE = re.compile(r"booking batch: sent_us=(\d+) db_us=(\d+) requests=(\d+) booked=(\d+) "
                  r"sessions=(\d+) first_session=(-?\d+)")


def read_batches(path):
    batches = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.search(line)
            if m:
                sent, db, n, booked, n_sessions, session = map(int, m.groups())
                batches.append({"sent": sent, "done": sent + db, "n": n, "booked": booked,
                                "n_sessions": n_sessions, "session": session})
    batches.sort(key=lambda b: b["sent"])
    return batches


def covered(intervals):
    """Microseconds covered by the union of (start, end) intervals."""
    total, start, end = 0, None, None
    for a, b in sorted(intervals):
        if start is None:
            start, end = a, b
        elif a <= end:
            end = max(end, b)
        else:
            total += end - start
            start, end = a, b
    return total + (end - start if start is not None else 0)


def summary(batches):
    mid = batches[len(batches) // 4: 3 * len(batches) // 4]
    span = mid[-1]["done"] - mid[0]["sent"]
    booking = [b for b in mid if b["booked"]]
    refusing = [b for b in mid if not b["booked"]]
    booked = sum(b["booked"] for b in mid)
    print(f"middle half: {len(mid)} batches over {span / 1000:.0f} ms, "
          f"{sum(b['n'] for b in mid)} requests, {booked} booked "
          f"({booked / span * 1e6:.0f} per second)")
    print(f"database busy with a batch {covered([(b['sent'], b['done']) for b in mid]) / span:.0%}, "
          f"with a batch that booked {covered([(b['sent'], b['done']) for b in booking]) / span:.0%}")
    if booking:
        cost = sum(b["done"] - b["sent"] for b in booking) / sum(b["booked"] for b in booking)
        print(f"batches that booked: {len(booking)}, "
              f"{statistics.mean(b['n'] for b in booking):.0f} requests on average, "
              f"{cost:.0f} us per booked request")
    if refusing:
        print(f"batches that booked nothing: {len(refusing)}, "
              f"{statistics.mean(b['n'] for b in refusing):.0f} requests on average, "
              f"{statistics.mean(b['done'] - b['sent'] for b in refusing) / 1000:.1f} ms each")
    return mid


def timelines(mid, count):
    single = [b for b in mid if b["n_sessions"] == 1]
    sessions = sorted({b["session"] for b in single})
    firsts = {}
    for b in single:
        firsts.setdefault(b["session"], b["sent"])
    for s in sessions[1:1 + count]:
        mine = [b for b in single if b["session"] == s]
        t0 = mine[0]["sent"]
        nxt = firsts.get(s + 1)
        took = f"{(nxt - t0) / 1000:.1f} ms to the next session's first batch" if nxt else ""
        print(f"\nsession {s}: {sum(b['booked'] for b in mine)} booked; {took}")
        print("   at ms   took ms  requests  booked")
        for b in mine:
            print(f"{(b['sent'] - t0) / 1000:8.1f} {(b['done'] - b['sent']) / 1000:9.1f} "
                  f"{b['n']:9d} {b['booked']:7d}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--sessions", type=int, default=3, help="timelines to print (default 3)")
    args = ap.parse_args()
    batches = read_batches(args.log)
    if len(batches) < 8:
        sys.exit(f"{args.log}: {len(batches)} booking batch lines; was log_level debug?")
    timelines(summary(batches), args.sessions)


if __name__ == "__main__":
    main()
