#!/usr/bin/env bash
# The booking benchmark, in one go (docs/benchmarks.md):
#
#   1. a private PostgreSQL 15 (scripts/pgcluster.sh) with fsync and
#      synchronous_commit on: durability is never traded;
#   2. a bench community: spread sessions, a popular expert's hot sessions,
#      a supply of fresh patients (scripts/bench/setup.sql);
#   3. the baseline: pgbench calling book_slot() once per transaction, at a
#      few client counts, spread and hot, and at a fixed rate;
#   4. referrald on the same database, driven by referral-bench: spread and
#      hot in a closed loop, spread at the same fixed rate;
#   5. idle terminals: the daemon's RSS with thousands of idle authenticated
#      connections, and the latency of the other clients with and without them;
#   6. the correctness check (scripts/bench/check.sql) over every booking
#      referral-bench saw acknowledged;
#   7. the table with the ratios (scripts/bench/results.py), also written to
#      OUT/summary.md and OUT/summary.json.
#
# Usage: scripts/bench.sh [--out DIR] [--duration S] [--perf] [--keep] [--no-build]
#   --out DIR       where results go (default .bench/; emptied first)
#   --duration S    seconds of each measured phase (default 10)
#   --perf          after the measured spread phase, run it once more under
#                   perf record -g (referrald and PostgreSQL's processes):
#                   OUT/perf.*
#   --keep          leave the PostgreSQL cluster in OUT/pg running afterwards
#   --no-build      use the binaries in BUILD as they are
#
# Environment (defaults in brackets):
#   BUILD [build]  BENCH_CLIENTS ["1 4 16 32"]  BENCH_RATE [2000]
#   BENCH_CONNECTIONS [64]  BENCH_DEPTHS ["4 16"]  BENCH_DEPTH [4]  BENCH_DB_POOL [16]
#   BENCH_SPREAD_SESSIONS [10000]  BENCH_SPREAD_CAPACITY [2000]
#   BENCH_HOT_SESSIONS [1000]  BENCH_HOT_CAPACITY [500]  BENCH_PATIENTS [1000000]
#   BENCH_IDLE [10000]  BENCH_IDLE_RATE [200]
#
# Exit status: 0 when the run completed and the correctness check passed
# (the targets are reported, not enforced: the machine is noisy), 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

OUT=$ROOT/.bench
DURATION=10
PERF=0
KEEP=0
BUILD_FIRST=1
while (($#)); do
    case $1 in
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --perf) PERF=1; shift ;;
    --keep) KEEP=1; shift ;;
    --no-build) BUILD_FIRST=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

BUILD=$(realpath -m "${BUILD:-build}")
CLIENTS=${BENCH_CLIENTS:-1 4 16 32}
RATE=${BENCH_RATE:-2000}
CONNS=${BENCH_CONNECTIONS:-64}
DEPTH=${BENCH_DEPTH:-4}
# The closed-loop phases run at each of these depths, and the best counts,
# as pgbench's best of BENCH_CLIENTS client counts does.
DEPTHS=${BENCH_DEPTHS:-4 16}
DB_POOL=${BENCH_DB_POOL:-16}
SPREAD_SESSIONS=${BENCH_SPREAD_SESSIONS:-10000}
SPREAD_CAPACITY=${BENCH_SPREAD_CAPACITY:-2000}
HOT_SESSIONS=${BENCH_HOT_SESSIONS:-1000}
HOT_CAPACITY=${BENCH_HOT_CAPACITY:-500}
PATIENTS=${BENCH_PATIENTS:-1000000}
IDLE=${BENCH_IDLE:-10000}
IDLE_RATE=${BENCH_IDLE_RATE:-200}
COMMUNITY=bench
TERMINAL=bench-01
TOKEN=bench-token-$RANDOM$RANDOM
# pgbench at a fixed rate: enough clients that the rate is not capped by them.
RATE_CLIENTS=32

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- set-up

[[ $OUT != "$ROOT" && $OUT != / ]] || die "refusing --out $OUT"
rm -rf -- "$OUT"
mkdir -p -- "$OUT"
if ((BUILD_FIRST)); then
    log "building referrald and referral-bench in $BUILD"
    cmake -S . -B "$BUILD" >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target referrald referral-bench >/dev/null
fi
REFERRALD=$BUILD/referrald
BENCH=$BUILD/referral-bench
[[ -x $REFERRALD && -x $BENCH ]] || die "no referrald or referral-bench in $BUILD"
((PERF == 0)) || command -v perf >/dev/null || die "--perf needs perf (Debian: linux-perf)"
# Thousands of connections: one file descriptor each, on both sides.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > IDLE + CONNS + 100)) ||
    die "open-file limit $(ulimit -n) is too low for $IDLE idle connections; lower BENCH_IDLE"

DAEMON_PID=""
cleanup() {
    if [[ -n $DAEMON_PID ]]; then
        kill "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if ((KEEP == 0)); then
        scripts/pgcluster.sh remove "$OUT/pg" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

log "starting PostgreSQL in $OUT/pg (fsync=on, synchronous_commit=on)"
PGCLUSTER_OPTS="-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=300 -c shared_buffers=512MB -c max_wal_size=4GB" \
    scripts/pgcluster.sh start "$OUT/pg" >/dev/null
# shellcheck disable=SC1091
. "$OUT/pg/env"
PSQL=("$PGCLUSTER_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1)
sql() { "${PSQL[@]}" -c "$1"; }
[[ $(sql "SHOW fsync") == on && $(sql "SHOW synchronous_commit") == on ]] ||
    die "the cluster does not run with fsync and synchronous_commit on"
"$REFERRALD" -s "db_dsn=$REFERRAL_DSN" --migrate >"$OUT/migrate.log" 2>&1 ||
    die "migration failed: $(cat "$OUT/migrate.log")"

log "setting up community $COMMUNITY: $SPREAD_SESSIONS spread sessions, $HOT_SESSIONS hot sessions of $HOT_CAPACITY, $PATIENTS patients"
TOKEN_HASH=$(printf '%s\n' "$TOKEN" | "$REFERRALD" -s pbkdf2_iterations=1000 --hash-token)
"${PSQL[@]}" -v community="$COMMUNITY" -v token_hash="$TOKEN_HASH" \
    -v spread_sessions="$SPREAD_SESSIONS" -v spread_capacity="$SPREAD_CAPACITY" \
    -v hot_sessions="$HOT_SESSIONS" -v hot_capacity="$HOT_CAPACITY" -v patients="$PATIENTS" \
    -f scripts/bench/setup.sql >"$OUT/setup.out"
SPREAD=$(sed -n 's/^spread=\([0-9]*-[0-9]*\)|t$/\1/p' "$OUT/setup.out")
HOT=$(sed -n 's/^hot=\([0-9]*-[0-9]*\)|t$/\1/p' "$OUT/setup.out")
[[ -n $SPREAD && -n $HOT ]] || die "setup did not make contiguous session ranges: $(cat "$OUT/setup.out")"
HOT_LAST=${HOT#*-}
sql "CREATE SEQUENCE bench_patient_seq" >/dev/null
sql "VACUUM ANALYZE" >/dev/null

# Patients are handed out in order, each once: NEXT_PATIENT is the first
# unused one.
NEXT_PATIENT=1
patients_left() { echo $((PATIENTS - NEXT_PATIENT + 1)); }
hot_from() { sql "SELECT bench_hot_session('$COMMUNITY', ${HOT%-*}, $HOT_LAST)"; }
pgbench_bookings() {
    sql "SELECT count(*) FROM bookings WHERE community_id = '$COMMUNITY' AND booked_by_terminal = 'pgbench-01'"
}

python3 - "$OUT/env.json" <<EOF
import json, os, platform, subprocess, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
pg = subprocess.run(["$PGCLUSTER_BIN/postgres", "--version"], capture_output=True, text=True).stdout.strip()
json.dump({"cpu": cpu, "cpus": os.cpu_count(), "loadavg_at_start": open("/proc/loadavg").read().split()[0], "mem_mib": mem, "kernel": platform.release(),
           "postgres": pg, "duration_s": $DURATION, "rate": $RATE, "connections": $CONNS,
           "depth": $DEPTH, "depths": "$DEPTHS", "db_pool_size": $DB_POOL, "spread_sessions": $SPREAD_SESSIONS,
           "spread_capacity": $SPREAD_CAPACITY, "hot_sessions": $HOT_SESSIONS,
           "hot_capacity": $HOT_CAPACITY, "idle": $IDLE, "idle_rate": $IDLE_RATE,
           "pgbench_clients": "$CLIENTS", "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"],
           capture_output=True, text=True).stdout.strip()}, open(sys.argv[1], "w"), indent=1)
EOF

# ---------------------------------------------------------------- pgbench

# run_pgbench NAME SCRIPT CLIENTS [extra pgbench options...]
run_pgbench() {
    local name=$1 script=$2 clients=$3
    shift 3
    local threads=$((clients < 2 ? clients : 2)) before after rate=0 logs=()
    sql "SELECT setval('bench_patient_seq', $NEXT_PATIENT, false); CHECKPOINT" >/dev/null
    before=$(pgbench_bookings)
    local first=${SPREAD%-*} last=${SPREAD#*-}
    if [[ $script == *hot* ]]; then first=${HOT%-*}; last=$HOT_LAST; fi
    "$PGCLUSTER_BIN/pgbench" -n -M prepared -c "$clients" -j "$threads" -T "$DURATION" \
        -D community="$COMMUNITY" -D first="$first" -D last="$last" -f "$script" "$@" \
        >"$OUT/$name.txt" 2>&1 || die "pgbench failed: $(tail -5 "$OUT/$name.txt")"
    after=$(pgbench_bookings)
    NEXT_PATIENT=$(($(sql "SELECT last_value FROM bench_patient_seq") + 1))
    ((NEXT_PATIENT <= PATIENTS)) || die "pgbench used up the $PATIENTS patients; raise BENCH_PATIENTS"
    for a in "$@"; do [[ $a != --rate=* ]] || rate=${a#--rate=}; done
    [[ " $* " != *" -l "* ]] || logs=(--logs "$OUT/$name.log")
    python3 scripts/bench/results.py pgbench "$OUT/$name.txt" --clients "$clients" \
        --bookings $((after - before)) --rate "$rate" "${logs[@]}" >"$OUT/$name.json"
    log "$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]}: {r['bookings_per_s']:.0f} bookings/s ({r['tps']:.0f} tps)\" + (f\", p99 {r['latency_ms']['p99']:.1f} ms\" if r.get('latency_ms') else ''))" "$OUT/$name.json" "$name")"
}

for c in $CLIENTS; do
    run_pgbench "pgbench-spread-c$c" scripts/bench/pgbench_spread.sql "$c"
done
for c in $CLIENTS; do
    run_pgbench "pgbench-hot-c$c" scripts/bench/pgbench_hot.sql "$c"
done
run_pgbench pgbench-rate scripts/bench/pgbench_spread.sql "$RATE_CLIENTS" --rate="$RATE" \
    -l --log-prefix="$OUT/pgbench-rate.log"

# ---------------------------------------------------------------- referrald

start_daemon() {
    cat >"$OUT/referrald.conf" <<EOF
# referrald for the benchmark (scripts/bench.sh)
listen_addr = 127.0.0.1
# Loopback without TLS: what is measured is the booking path, not TLS.
listen_port = -1
plain_port = 0
plain_port_file = $OUT/referrald.port
admin_port = -1
db_pool_size = $DB_POOL
max_connections = $((IDLE + CONNS + 1000))
# One bench terminal stands for thousands of clinics: no per-terminal limits.
max_connections_per_terminal = $((IDLE + CONNS + 1000))
terminal_rate_per_s = 0
log_level = warn
EOF
    rm -f "$OUT/referrald.port"
    "$REFERRALD" -c "$OUT/referrald.conf" -s "db_dsn=$REFERRAL_DSN" >>"$OUT/referrald.log" 2>&1 &
    DAEMON_PID=$!
    local tries
    for ((tries = 0; tries < 100; tries++)); do
        [[ ! -s $OUT/referrald.port ]] || break
        kill -0 "$DAEMON_PID" 2>/dev/null || die "referrald exited: $(tail -5 "$OUT/referrald.log")"
        sleep 0.1
    done
    [[ -s $OUT/referrald.port ]] || die "referrald did not start listening"
    export REFERRAL_HOST=127.0.0.1 REFERRAL_PORT
    REFERRAL_PORT=$(cat "$OUT/referrald.port")
}

stop_daemon() {
    kill "$DAEMON_PID"
    wait "$DAEMON_PID" || die "referrald exited with $? on SIGTERM: $(tail -5 "$OUT/referrald.log")"
    DAEMON_PID=""
}

export REFERRAL_COMMUNITY=$COMMUNITY REFERRAL_TERMINAL=$TERMINAL REFERRAL_TOKEN=$TOKEN

# run_bench NAME [referral-bench options...]: one phase; its acknowledged
# bookings go to NAME.acks for the correctness check. Each phase starts
# from a checkpoint (so that none pays for another's full-page writes),
# unless NO_CHECKPOINT=1.
NO_CHECKPOINT=0
run_bench() {
    local name=$1 rc=0
    shift
    ((NO_CHECKPOINT)) || sql "CHECKPOINT" >/dev/null
    "$BENCH" --json --record "$OUT/$name.acks" --key-prefix "$name" -D "$DURATION" \
        --patients "$NEXT_PATIENT:$(patients_left)" "$@" >"$OUT/$name.json" 2>"$OUT/$name.err" || rc=$?
    [[ -s $OUT/$name.json ]] || die "referral-bench $name failed ($rc): $(tail -5 "$OUT/$name.err")"
    NEXT_PATIENT=$((NEXT_PATIENT + $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['config']['patients_used'])" "$OUT/$name.json")))
    ((rc == 0)) || die "referral-bench $name: exit $rc: $(tail -5 "$OUT/$name.err")"
    log "$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]}: {r['throughput']['bookings_per_s']:.0f} bookings/s, p99 {r['latency_ms']['p99']:.1f} ms, outcomes {r['outcomes']}\")" "$OUT/$name.json" "$name")"
}

# The processes of this benchmark's server side: referrald, and the
# postmaster with its children (the daemon's backends among them).
server_pids() {
    local pm
    pm=$(head -1 "$PGCLUSTER_DATA/postmaster.pid")
    echo "$DAEMON_PID" "$pm" "$(pgrep -d ' ' -P "$pm")"
}
# CPU seconds (user + system) the given processes have used so far: fields
# 14 and 15 of /proc/PID/stat, counted after the ")" that ends the name.
cpu_seconds() {
    local pid
    for pid in "$@"; do sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null || true; done |
        awk -v hz="$(getconf CLK_TCK)" '{ t += $12 + $13 } END { printf "%.2f", t / hz }'
}

# What the daemon's backends are doing, sampled ten times a second until
# OUT/waits.stop appears: on-CPU time is only part of the story when every
# commit waits for its WAL flush. Snapshots in which every backend waits
# for the daemon (before the load starts, after it ends) are left out.
sample_waits() {
    while [[ ! -e $OUT/waits.stop ]]; do
        sql "WITH w AS (SELECT coalesce(wait_event_type || ':' || wait_event, 'running') AS w
                          FROM pg_stat_activity WHERE application_name = 'referrald'
                           AND backend_type = 'client backend')
             SELECT w FROM w WHERE EXISTS (SELECT 1 FROM w WHERE w <> 'Client:ClientRead')" || true
        sleep 0.1
    done | sort | uniq -c | sort -rn >"$OUT/perf.waits.txt"
}

# A profile of an extra spread phase (not the measured one: perf slows what
# it watches), of this benchmark's processes only (the machine may be shared).
profile_spread() {
    local pids
    pids=$(server_pids | tr ' ' ',')
    perf record -g -p "$pids" -o "$OUT/perf.data" -- sleep "$DURATION" >"$OUT/perf.log" 2>&1 &
    local perf_pid=$!
    sample_waits &
    local waits_pid=$!
    run_bench daemon-spread-perf -c "$CONNS" -d "$DEPTH" --sessions "$SPREAD"
    touch "$OUT/waits.stop"
    wait "$perf_pid" "$waits_pid" || true
    perf report -i "$OUT/perf.data" --no-children --sort comm -g none --stdio \
        >"$OUT/perf.by-process.txt" 2>/dev/null || true
    perf report -i "$OUT/perf.data" --no-children --comm referrald --sort dso,symbol -g none \
        --stdio >"$OUT/perf.referrald.txt" 2>/dev/null || true
    perf report -i "$OUT/perf.data" --no-children --comm referrald --sort symbol -g caller \
        --stdio >"$OUT/perf.referrald-callers.txt" 2>/dev/null || true
    perf report -i "$OUT/perf.data" --no-children --comm postgres --sort dso,symbol -g none \
        --stdio >"$OUT/perf.postgres.txt" 2>/dev/null || true
    perf report -i "$OUT/perf.data" --children --comm postgres --sort symbol -g none \
        --stdio >"$OUT/perf.postgres-inclusive.txt" 2>/dev/null || true
    log "perf profile: $OUT/perf.by-process.txt, perf.referrald.txt, perf.postgres*.txt, perf.waits.txt"
}

log "referrald: db_pool_size $DB_POOL; referral-bench: $CONNS connections x depth $DEPTHS (closed loop), $DEPTH (fixed rate)"
start_daemon
for d in $DEPTHS; do
    # CPU time of both sides during each spread phase: where the time goes.
    read -ra SERVER <<<"$(server_pids)"
    D0=$(cpu_seconds "$DAEMON_PID") P0=$(cpu_seconds "${SERVER[@]:1}")
    run_bench "daemon-spread-d$d" -c "$CONNS" -d "$d" --sessions "$SPREAD"
    read -ra SERVER <<<"$(server_pids)"
    D1=$(cpu_seconds "$DAEMON_PID") P1=$(cpu_seconds "${SERVER[@]:1}")
    awk -v d0="$D0" -v d1="$D1" -v p0="$P0" -v p1="$P1" 'BEGIN {
        printf "{\"referrald_cpu_s\": %.2f, \"postgres_cpu_s\": %.2f}\n", d1 - d0, p1 - p0 }' \
        >"$OUT/daemon-spread-d$d-cpu.json"
    log "spread phase (depth $d) CPU seconds: $(cat "$OUT/daemon-spread-d$d-cpu.json")"
done
((PERF == 0)) || profile_spread
for d in $DEPTHS; do
    run_bench "daemon-hot-d$d" -c "$CONNS" -d "$d" -w hot --hot-sessions "$(hot_from)-$HOT_LAST"
done
run_bench daemon-rate -c "$CONNS" -d "$DEPTH" --rate "$RATE" --sessions "$SPREAD"
stop_daemon

# ---------------------------------------------------------------- idle terminals

log "idle terminals: $IDLE idle authenticated connections, others booking at $IDLE_RATE/s"
start_daemon
# The two runs compared follow each other without a checkpoint between
# them: the idle run's measurement starts only after its handshakes.
sql "CHECKPOINT" >/dev/null
NO_CHECKPOINT=1
run_bench daemon-idle-off -c 16 -d 2 --rate "$IDLE_RATE" --sessions "$SPREAD"
rss_now() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$DAEMON_PID/status"; }
RSS_BEFORE=$(rss_now)
echo 0 >"$OUT/idle-rss.max"
(
    max=0
    while kill -0 "$DAEMON_PID" 2>/dev/null && [[ ! -e $OUT/idle-rss.stop ]]; do
        r=$(rss_now || echo 0)
        ((r <= max)) || { max=$r; echo "$max" >"$OUT/idle-rss.max"; }
        sleep 0.2
    done
) &
SAMPLER=$!
run_bench daemon-idle-on -c 16 -d 2 --rate "$IDLE_RATE" --sessions "$SPREAD" --idle "$IDLE"
touch "$OUT/idle-rss.stop"
wait "$SAMPLER" || true
echo "{\"rss_before_kib\": $RSS_BEFORE, \"rss_max_kib\": $(cat "$OUT/idle-rss.max")}" >"$OUT/idle-rss.json"
log "daemon RSS: $((RSS_BEFORE / 1024)) MiB before, $(($(cat "$OUT/idle-rss.max") / 1024)) MiB at most with $IDLE idle terminals"
stop_daemon

# ---------------------------------------------------------------- correctness

log "correctness check"
cat "$OUT"/*.acks | "${PSQL[@]}" -v community="$COMMUNITY" -v terminal="$TERMINAL" \
    -f scripts/bench/check.sql >"$OUT/check.json"

# ---------------------------------------------------------------- summary

echo
python3 scripts/bench/results.py summary "$OUT"
