#!/usr/bin/python3
"""Results of scripts/bench.sh: pgbench's output turned into JSON, and the
summary of a whole run (the table docs/benchmarks.md records).

  results.py pgbench OUTPUT --clients C --bookings N [--rate R] [--logs PREFIX]
      prints pgbench's figures as JSON: transactions, tps, bookings/s, and,
      from the per-transaction logs (pgbench -l), latency percentiles. Under
      --rate pgbench measures each transaction from its scheduled start, so
      these include the schedule lag, as referral-bench's do.
  results.py summary DIR
      reads the phase files bench.sh wrote in DIR, prints the table with the
      ratios, and writes DIR/summary.json and DIR/summary.md.
"""

import argparse
import glob
import json
import math
import os
import re
import sys

PCTS = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]


def percentiles(values_us):
    """The same ranks as referral-bench: the ceil(p% * n)-th smallest value."""
    if not values_us:
        return None
    v = sorted(values_us)
    out = {}
    for name, p in PCTS:
        rank = max(1, math.ceil(p / 100 * len(v) - 1e-9))
        out[name] = v[rank - 1] / 1000.0
    out["max"] = v[-1] / 1000.0
    out["mean"] = sum(v) / len(v) / 1000.0
    out["count"] = len(v)
    return out


def pgbench(args):
    text = open(args.output).read()
    tx = re.search(r"number of transactions actually processed: (\d+)", text)
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    if not tx or not tps:
        sys.exit(f"results.py: no pgbench figures in {args.output}:\n{text[-2000:]}")
    transactions, rate = int(tx.group(1)), float(tps.group(1))
    elapsed = transactions / rate if rate else 0.0
    out = {"clients": args.clients, "rate": args.rate, "transactions": transactions,
           "failed": int(failed.group(1)) if failed else 0, "tps": rate,
           "elapsed_s": elapsed, "bookings": args.bookings,
           "bookings_per_s": args.bookings / elapsed if elapsed else 0.0}
    if args.rate:
        # Scheduled within the run but never started (pgbench leaves them out
        # of its latencies, as referral-bench leaves out its due_unsent).
        duration = re.search(r"duration: (\d+) s", text)
        if duration:
            out["not_started"] = max(0, round(args.rate * int(duration.group(1))) - transactions)
    if args.logs:
        lat = []
        for path in glob.glob(args.logs + ".*"):
            with open(path) as f:
                for line in f:
                    fields = line.split()
                    # client_id transaction_no time script_no time_epoch time_us [lag]
                    if len(fields) >= 6 and fields[2] != "skipped":
                        lat.append(int(fields[2]))
        out["latency_ms"] = percentiles(lat)
    json.dump(out, sys.stdout, indent=1)
    print()


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def best(pattern, rate):
    """Of the runs in the JSON files matching (the -cpu.json beside a phase
    left out), the one with the highest rate(run), its path without .json,
    and all of them."""
    runs = [(p, load(p)) for p in sorted(glob.glob(pattern)) if not p.endswith("-cpu.json")]
    runs = [(p, r) for p, r in runs if r]
    if not runs:
        return None, None, []
    path, top = max(runs, key=lambda pr: rate(pr[1]))
    return top, path[:-len(".json")], [r for _, r in runs]


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}" if abs(v) >= 1 or v == 0 else f"{v:.3f}"


def summary(args):
    d = args.dir
    env = load(os.path.join(d, "env.json")) or {}

    def pg_bps(r):
        return r["bookings_per_s"]

    def bps(r):
        return r["throughput"]["bookings_per_s"] if r else None

    pg_spread, _, spread_runs = best(os.path.join(d, "pgbench-spread-c*.json"), pg_bps)
    pg_hot, _, hot_runs = best(os.path.join(d, "pgbench-hot-c*.json"), pg_bps)
    pg_rate = load(os.path.join(d, "pgbench-rate.json"))
    rb_spread, rb_spread_name, spread_depths = best(os.path.join(d, "daemon-spread-d*.json"), bps)
    rb_hot, _, hot_depths = best(os.path.join(d, "daemon-hot-d*.json"), bps)
    rb_rate = load(os.path.join(d, "daemon-rate.json"))
    idle_off = load(os.path.join(d, "daemon-idle-off.json"))
    idle_on = load(os.path.join(d, "daemon-idle-on.json"))
    rss = load(os.path.join(d, "idle-rss.json")) or {}
    check = load(os.path.join(d, "check.json"))

    def p99(r):
        return r["latency_ms"]["p99"] if r and r.get("latency_ms") else None

    rows = []   # figure, pgbench, referrald, ratio, target, met

    def row(figure, base, ours, r, target, met):
        rows.append({"figure": figure, "pgbench": base, "referrald": ours, "ratio": r,
                     "target": target, "met": met})

    def throughput_row(what, base, base_runs, ours, ours_runs, factor):
        r = ratio(bps(ours), base and base["bookings_per_s"])
        row(f"durable bookings/s, {what} (baseline: pgbench, best of {len(base_runs)} client "
            f"counts: {base and base['clients']}; referrald: best of {len(ours_runs)} depths: "
            f"{ours and ours['config']['depth']})",
            base and base["bookings_per_s"], bps(ours), r, f">= {factor} x",
            r is not None and r >= factor)

    throughput_row(f"spread over {env.get('spread_sessions', '?')} sessions",
                   pg_spread, spread_runs, rb_spread, spread_depths, 5)
    throughput_row(f"hot session of {env.get('hot_capacity', '?')} until full, then the next",
                   pg_hot, hot_runs, rb_hot, hot_depths, 10)
    rate = env.get("rate", "?")
    r = ratio(p99(rb_rate), p99(pg_rate))
    row(f"p99 latency ms at {rate} bookings/s offered (baseline: pgbench, "
        f"{pg_rate and pg_rate['clients']} clients)", p99(pg_rate), p99(rb_rate), r,
        "<= 1 x", r is not None and r <= 1)
    row(f"bookings/s achieved at {rate}/s offered (requests due but never sent: pgbench "
        f"{pg_rate and pg_rate.get('not_started', '?')}, referral-bench "
        f"{rb_rate and rb_rate['due_unsent']}; their latency is in neither p99)",
        pg_rate and pg_rate["bookings_per_s"], bps(rb_rate),
        ratio(bps(rb_rate), pg_rate and pg_rate["bookings_per_s"]), "", None)
    rss_mib = rss.get("rss_max_kib", 0) / 1024 if rss else None
    row(f"daemon RSS MiB with {env.get('idle', '?')} idle terminals "
        "(baseline: before they connected)", rss.get("rss_before_kib", 0) / 1024 if rss else None,
        rss_mib, None,
        "<= 300 MiB", rss_mib is not None and rss_mib <= 300)
    for name in ("p50", "p99"):
        off = idle_off and idle_off["latency_ms"][name]
        on = idle_on and idle_on["latency_ms"][name]
        row(f"{name} ms of other clients at {env.get('idle_rate', '?')} bookings/s with the "
            "idle terminals (baseline: without them)", off, on, ratio(on, off), "unchanged", None)
    cpu = rb_spread_name and load(rb_spread_name + "-cpu.json")
    if cpu and rb_spread and rb_spread["bookings_ok"]:
        per_k = 1000.0 / rb_spread["bookings_ok"]
        row("CPU seconds per 1,000 bookings in referrald's spread phase: referrald "
            "(baseline: PostgreSQL, all its processes)", cpu["postgres_cpu_s"] * per_k,
            cpu["referrald_cpu_s"] * per_k, None, "", None)
    ok = bool(check and check.get("ok"))
    row("correctness: no overbooking, every acknowledged booking present once, "
        "bookings = acknowledged keys", None, "pass" if ok else "FAIL", None, "pass", ok)

    lines = ["| figure | baseline | referrald | ratio | target |", "|---|---:|---:|---:|---|"]
    for x in rows:
        lines.append(f"| {x['figure']} | {fmt(x['pgbench'])} | {fmt(x['referrald'])} | "
                     f"{fmt(x['ratio'], 2)} | {x['target']} |")
    table = "\n".join(lines)
    print(table)
    if check and not ok:
        for c in check["checks"]:
            if not c["ok"]:
                print(f"correctness check {c['name']} FAILED: {c['detail']}")
    out = {"env": env, "rows": rows, "check": check,
           "pgbench": {"spread": spread_runs, "hot": hot_runs, "rate": pg_rate},
           "referrald": {"spread": rb_spread, "hot": rb_hot, "rate": rb_rate,
                         "idle_off": idle_off, "idle_on": idle_on, "rss": rss, "cpu": cpu}}
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(out, f, indent=1)
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(table + "\n")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pgbench")
    p.add_argument("output")
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--bookings", type=int, required=True)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--logs")
    s = sub.add_parser("summary")
    s.add_argument("dir")
    args = ap.parse_args()
    if args.cmd == "pgbench":
        pgbench(args)
        return 0
    return summary(args)


if __name__ == "__main__":
    sys.exit(main())
