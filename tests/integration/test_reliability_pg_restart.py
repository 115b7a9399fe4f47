#!/usr/bin/python3
"""PostgreSQL restarted under a booking load (docs/reliability.md), with a
fast shutdown (sessions told to go) and an immediate one (a crash: no
goodbye, recovery from the WAL at the next start).

The daemon is not restarted: it answers what was in flight and what arrives
while the database is away UNAVAILABLE (never a wrong answer), reconnects,
prepares its statements again on the new connections and goes on booking.
The clients retry their keys; afterwards every acknowledged booking is in
the database exactly once and no session is overbooked.

The cluster is this module's own, with fsync and synchronous_commit on: an
acknowledged booking must survive the server's crash.
"""

import re
import time
import unittest

import harness
import load_support as ls
import slots_support as ss

SESSIONS = 10
CAPACITY = 60
WORKERS = ("clinic", "clinic-b") * 4
POOL = 4


class PostgresRestartTest(ss.SlotAssertions, harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.private(harness.DURABLE_PG_OPTS)
        cls.addClassCleanup(cls.pg.remove)

    def restart_under_load(self, mode):
        community = ss.SlotCommunity(self.pg, f"reliability-pg-{mode}")
        self.community = community
        daemon = harness.Daemon(self.pg.dsn(), name=f"reliability_pg_{mode}",
                                settings={"db_pool_size": str(POOL), "log_level": "info"})
        self.addCleanup(daemon.kill)
        daemon.start()
        pid = daemon.pid
        _, load = ls.round_robin_load(self, daemon, community, WORKERS, SESSIONS, CAPACITY,
                                      pace=0.02)

        load.wait_settled(40, what="bookings before the restart")
        self.pg.pgstop(mode)
        # Requests meet the database away for a moment.
        time.sleep(0.5)
        booked_before = len(load.booked)
        self.pg.pgstart()
        load.wait_settled(load.definite + SESSIONS * CAPACITY, timeout=90,
                          what="bookings after the restart")
        load.finish()
        print(load.summary())

        self.assertEqual(ls.exactly_once_problems(community, load), [])
        self.assertEqual(load.replay_problems(), [])
        # The same daemon throughout, which saw the outage and told its
        # clients so.
        self.assertTrue(daemon.running())
        self.assertEqual(daemon.pid, pid)
        self.assertGreater(load.counts["unavailable"], 0, load.summary())
        # Bookings went on after the restart, on connections made anew, each
        # with every statement prepared again.
        self.assertGreater(len(load.booked), booked_before)
        ready = re.findall(r"db connection \d+ ready \((\d+) statements prepared\)", daemon.log())
        self.assertGreaterEqual(len(ready), 2 * POOL, daemon.log_tail())
        self.assertEqual(len(set(ready)), 1, "every connection prepares every statement")
        self.assertEqual(len(load.booked), SESSIONS * CAPACITY, load.summary())
        daemon.stop()

    def test_fast_shutdown(self):
        self.restart_under_load("fast")

    def test_immediate_shutdown(self):
        self.restart_under_load("immediate")


if __name__ == "__main__":
    unittest.main()
