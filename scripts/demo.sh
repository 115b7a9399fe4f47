#!/usr/bin/env bash
# The newcomer's command: installs what is missing, builds, starts a private
# PostgreSQL under .demo/, loads the demo community and runs referrald in the
# foreground on 127.0.0.1. Ctrl-C stops the daemon and the cluster.
#
# Usage: scripts/demo.sh [--port N]   (default 7420; REFERRAL_DEMO_PORT too)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
port=${REFERRAL_DEMO_PORT:-7420}
if [[ ${1:-} == --port ]]; then port=$2; fi

scripts/install-deps.sh
cmake -S . -B build -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

demo=$top/.demo
mkdir -p "$demo"
envfile=$(scripts/pgcluster.sh start "$demo/pg")
# shellcheck disable=SC1090
. "$envfile"
./build/referrald -s db_dsn="$REFERRAL_DSN" --migrate

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
if [[ $(psql_q -tAc "SELECT count(*) FROM communities WHERE community_id = 'demo-county'") == 0 ]]; then
	psql_q -f sql/demo/demo_community.sql
	psql_q -f sql/demo/demo_sessions.sql >/dev/null
	psql_q -f sql/demo/demo_referrals.sql >/dev/null
	psql_q -f sql/demo/demo_deductibles.sql >/dev/null
fi

# One terminal per role, each with a token generated once and kept in
# .demo/credentials/NAME.env (never in git).
creds=$demo/credentials
mkdir -p "$creds"
chmod 700 "$creds"
add_terminal() { # name institution role practitioner
	local name=$1 inst=$2 role=$3 prac=$4 token hash
	[[ -f $creds/$name.env ]] && return 0
	token=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
	hash=$(printf '%s\n' "$token" | ./build/referrald --hash-token)
	psql_q -c "INSERT INTO terminals (community_id, terminal_id, institution_id, role, practitioner_id, token_hash)
	           VALUES ('demo-county', '$name', '$inst', '$role', NULLIF('$prac', ''), '$hash')
	           ON CONFLICT (community_id, terminal_id) DO UPDATE SET token_hash = EXCLUDED.token_hash"
	printf 'export REFERRAL_HOST=127.0.0.1 REFERRAL_PORT=%s REFERRAL_COMMUNITY=demo-county REFERRAL_TERMINAL=%s REFERRAL_TOKEN=%s\n' \
		"$port" "$name" "$token" >"$creds/$name.env"
}
add_terminal ops-admin county-hospital admin ""
add_terminal ops-monitor county-hospital monitor ""
add_terminal desk-county county-hospital desk desk-yang
add_terminal billing-county county-hospital billing ""
add_terminal clinic-dongcun village-dongcun clinic fd-sun
add_terminal clinic-east township-east clinic fd-zhang
# The port may differ from the one a credential file was written with.
sed -i "s/REFERRAL_PORT=[0-9]*/REFERRAL_PORT=$port/" "$creds"/*.env

cleanup() {
	trap - INT TERM EXIT
	[[ -n ${pid:-} ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	scripts/pgcluster.sh stop "$demo/pg" || true
	echo "demo stopped (data kept in .demo/; remove it to start afresh)"
}
trap cleanup INT TERM EXIT

cat <<MSG

referrald demo: community demo-county (Henan rules, 40% reserved floor; deductible policy waive)
  listening on 127.0.0.1:$port, PostgreSQL in .demo/pg (port $PGPORT)
Try it in another terminal:
  . .demo/credentials/ops-monitor.env && build/referralctl status
  . .demo/credentials/clinic-dongcun.env && build/referralctl sessions --kind expert
  build/referralctl book --session 1 --patient 00000000-0000-4000-8000-000000000005
  build/referralctl bookings
  build/referralctl refer up --patient 00000000-0000-4000-8000-000000000002 \\
      --to county-hospital --department cardiology --diagnosis I10 --reason "BP uncontrolled"
  . .demo/credentials/desk-county.env && build/referralctl worklist
  build/referralctl watch      # live events; refer or accept from another terminal
  . .demo/credentials/billing-county.env && build/referralctl deductibles   # deductible decisions
  . .demo/credentials/ops-monitor.env && build/referralctl stats   # or compliance, or top (q quits)
Metrics and health: curl -s http://127.0.0.1:7421/metrics ; curl -s http://127.0.0.1:7421/healthz
Other terminals: $(cd "$creds" && ls | sed 's/\.env$//' | tr '\n' ' ')
Ctrl-C stops the daemon and the database.

MSG
# The demo runs on loopback without TLS (plain_port); a real deployment
# uses the TLS port (docs/security.md).
./build/referrald -s db_dsn="$REFERRAL_DSN" -s listen_port=-1 -s plain_port="$port" &
pid=$!
wait "$pid"
