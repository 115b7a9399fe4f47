#!/usr/bin/python3
"""The benchmark harness, in small (docs/benchmarks.md): scripts/bench/setup.sql
makes a bench community of its own, referral-bench drives the test daemon
for a few seconds with each kind of workload, its JSON adds up, and
scripts/bench/check.sql finds the database in agreement with every
booking referral-bench saw acknowledged. Correctness, not speed: nothing
here is timed."""

import json
import os
import secrets
import subprocess
import unittest

import harness
from harness import sql_literal

SETUP_SQL = os.path.join(harness.SOURCE_DIR, "scripts", "bench", "setup.sql")
CHECK_SQL = os.path.join(harness.SOURCE_DIR, "scripts", "bench", "check.sql")

SPREAD_SESSIONS = 20
HOT_SESSIONS = 40
HOT_CAPACITY = 5
PATIENTS = 20000


class BenchTest(harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        # A database of its own: session ids are drawn from one sequence per
        # database, and the workloads need each kind's ids consecutive.
        cls.dbname = cls.pg.create_database("bench")
        cls.addClassCleanup(cls.pg.drop_database, cls.dbname)
        cls.community = f"it-bench-{os.getpid()}-{secrets.token_hex(3)}"
        cls.token = secrets.token_urlsafe(24)
        out = cls.run_psql(SETUP_SQL, community=cls.community,
                           token_hash=harness.hash_token(cls.token),
                           spread_sessions=SPREAD_SESSIONS, spread_capacity=1000,
                           hot_sessions=HOT_SESSIONS, hot_capacity=HOT_CAPACITY,
                           patients=PATIENTS)
        ranges = dict(line.split("=") for line in out.splitlines() if "=" in line)
        assert ranges["spread"].endswith("|t") and ranges["hot"].endswith("|t"), out
        cls.spread, cls.hot = ranges["spread"][:-2], ranges["hot"][:-2]
        cls.daemon = harness.Daemon(cls.pg.dsn(cls.dbname), settings={"db_pool_size": "4",
                                                            "log_level": "info"}, name="bench")
        cls.addClassCleanup(cls.daemon.stop)
        cls.daemon.start()
        cls.next_patient = 1
        cls.acks = []

    @classmethod
    def run_psql(cls, script, stdin="", **variables):
        argv = cls.pg.psql_cmd(cls.dbname)
        for k, v in variables.items():
            argv += ["-v", f"{k}={v}"]
        p = subprocess.run(argv + ["-f", script], input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise AssertionError(f"psql -f {script} failed: {p.stderr}")
        return p.stdout

    def bench(self, name, *args):
        """Runs referral-bench as the bench terminal; returns its JSON."""
        record = os.path.join(self.daemon.dir, f"{name}.acks")
        env = harness.binary_env({"REFERRAL_HOST": "127.0.0.1",
                                  "REFERRAL_PORT": str(self.daemon.port),
                                  "REFERRAL_COMMUNITY": self.community,
                                  "REFERRAL_TERMINAL": "bench-01",
                                  "REFERRAL_TOKEN": self.token})
        argv = [harness.REFERRAL_BENCH, "--json", "--record", record, "--key-prefix", name,
                "--patients", f"{self.next_patient}:{PATIENTS - self.next_patient + 1}",
                *args]
        p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60 * harness.SLOW, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, f"{argv}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        r = json.loads(p.stdout)
        type(self).next_patient += r["config"]["patients_used"]
        with open(record) as f:
            lines = f.read().splitlines()
        type(self).acks += lines
        self.assertAddsUp(r, lines)
        return r

    def assertAddsUp(self, r, ack_lines):
        """Every request answered once, counts consistent, percentiles ordered."""
        self.assertGreater(r["ok"], 0, r)
        self.assertEqual(r["answered"], r["sent"], r)
        self.assertEqual((r["unanswered"], r["lost"], r["connection_errors"]), (0, 0, 0), r)
        self.assertIsNone(r["exhausted"], r)
        self.assertEqual(sum(r["outcomes"].values()), r["answered"], r)
        self.assertEqual(r["outcomes"]["ok"], r["ok"], r)
        self.assertEqual(r["bookings_ok"], len(ack_lines), "one record line per booking")
        lat = r["latency_ms"]
        self.assertEqual(lat["count"], r["answered"], r)
        self.assertTrue(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"],
                        lat)
        self.assertGreater(r["throughput"]["ok_per_s"], 0, r)
        for kind in r["by_kind"].values():
            self.assertEqual(kind["sent"], kind["answered"], r)

    def check(self, acks):
        out = self.run_psql(CHECK_SQL, stdin="".join(a + "\n" for a in acks),
                            community=self.community, terminal="bench-01")
        return json.loads(out)

    def test_workloads_and_the_database_agree(self):
        spread = self.bench("spread", "-c", "4", "-d", "2", "-D", "2", "--sessions", self.spread)
        self.assertEqual(spread["by_kind"]["book"]["outcomes"]["ok"], spread["ok"], spread)

        # Hot, at a fixed rate: each session is booked until full, then the next.
        hot = self.bench("hot", "-c", "2", "-d", "2", "-D", "1", "-r", "40", "-w", "hot",
                         "--hot-sessions", self.hot)
        self.assertEqual(hot["config"]["mode"], "fixed-rate")
        self.assertGreater(hot["bookings_ok"], HOT_CAPACITY, "more than one hot session booked")
        first, last = (int(x) for x in self.hot.split("-"))
        booked = self.pg.psql(dbname=self.dbname, sql=f"""
SELECT session_id, reserved_booked + public_booked, capacity FROM sessions
 WHERE community_id = {sql_literal(self.community)} AND session_id BETWEEN {first} AND {last}
   AND reserved_booked + public_booked > 0 ORDER BY session_id""").splitlines()
        rows = [tuple(int(x) for x in line.split("|")) for line in booked]
        self.assertEqual([s for s, _, _ in rows], list(range(first, first + len(rows))),
                         "hot sessions are taken in order")
        for s, n, cap in rows[:-1]:
            self.assertEqual(n, cap, f"hot session {s} left before it was full: {rows}")

        # search and refer, through the mix.
        mix = self.bench("mix", "-c", "3", "-d", "2", "-D", "1", "-w", "mix", "--mix", "40,30,30",
                         "--sessions", self.spread)
        for kind in ("book", "search", "refer"):
            self.assertGreater(mix["by_kind"][kind]["outcomes"]["ok"], 0, mix)

        result = self.check(self.acks)
        self.assertTrue(result["ok"], json.dumps(result, indent=1))
        self.assertEqual(len(result["checks"]), 5, result)

        # The check can fail: a booking made but not acknowledged is found.
        result = self.check(self.acks[1:])
        failed = [c["name"] for c in result["checks"] if not c["ok"]]
        self.assertFalse(result["ok"])
        self.assertEqual(failed, ["bookings_equal_acks"], result)


if __name__ == "__main__":
    unittest.main()
