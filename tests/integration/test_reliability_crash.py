#!/usr/bin/python3
"""kill -9 of the daemon in the middle of a booking load (docs/reliability.md).

Clients book with idempotency keys and retry every key whose answer was lost
until it has a definite one; the daemon is killed, restarted on the same
port, and the clients carry on. Afterwards every acknowledged booking is in
the database exactly once, the number of bookings equals the number of keys
acknowledged, no session is overbooked, and asking again with a settled key
gives the first answer again.
"""

import unittest

import harness
import load_support as ls
import slots_support as ss

SESSIONS = 6
CAPACITY = 30
WORKERS = ("clinic", "clinic-b") * 4


class DaemonCrashTest(ss.SlotAssertions, harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.community = ss.SlotCommunity(cls.pg, "reliability-crash")

    def test_kill_9_under_booking_load(self):
        daemon = harness.Daemon(self.pg.dsn(), name="reliability_crash",
                                settings={"db_pool_size": "4", "log_level": "info"})
        self.addCleanup(daemon.kill)
        daemon.start()
        sessions, load = ls.round_robin_load(self, daemon, self.community, WORKERS,
                                             SESSIONS, CAPACITY)

        load.wait_settled(100, what="bookings before the crash")
        daemon.crash()
        at_crash = load.definite
        daemon.restart()
        # The load goes on past the capacity: the sessions fill up with the
        # daemon restarted.
        load.wait_settled(at_crash + SESSIONS * CAPACITY, timeout=90,
                          what="bookings after the restart")
        load.finish()
        print(load.summary())

        self.assertEqual(ls.exactly_once_problems(self.community, load), [])
        self.assertEqual(load.replay_problems(), [])
        # The crash was felt: answers were lost and keys sent again.
        self.assertGreater(load.counts["answers lost"], 0)
        self.assertGreater(load.counts["retried"], 0)
        # Every session filled up exactly, and the rest were told FULL.
        self.assertEqual(len(load.booked), SESSIONS * CAPACITY, load.summary())
        self.assertIn(("FULL", "session_id"), set(load.refused.values()))
        for s in sessions:
            self.assertEqual(sum(self.community.live_counts(s).values()), CAPACITY)
        daemon.stop()


if __name__ == "__main__":
    unittest.main()
