#!/usr/bin/python3
"""Figure requests cannot starve bookings: they run on the figures' own
connection (figures_pool_size 1), wait in a short queue (figures_queue_max,
then OVERLOADED), and are cut off by their own statement timeout, while
bookings go on as usual on the main pool.

A figure query is made to hang by a lock on referral_history, which the
figures read and a booking never touches. A database of its own: the lock
would hold up other modules' referrals."""

import time
import unittest

import harness
from metrics_support import scrape, value
from harness import pb
import slots_support as ss
from slots_support import future

E = pb.ErrorCode
TIMEOUT_MS = 1000


def stats_request(request_id):
    return pb.Request(request_id=request_id, stats=pb.StatsRequest())


class FiguresLimitsTest(ss.SlotsTestCase):
    private_database = True
    daemon_settings = {"figures_pool_size": "1", "figures_queue_max": "1",
                       "figures_statement_timeout_ms": str(TIMEOUT_MS),
                       "figures_metrics_interval_ms": "0"}

    def test_queue_overload_timeout_and_bookings_meanwhile(self):
        desk, clinic, mon = self.authed("desk"), self.authed("clinic"), self.authed("monitor")
        session = self.publish_one(desk, capacity=10, start=future(days=3))
        self.assertOk(mon.call(stats_request(1)), "stats")     # the figures connection is up
        locker = harness.PsqlSession(self.pg, self.dbname)
        self.addCleanup(locker.close)
        locker.run("BEGIN; LOCK TABLE referral_history IN ACCESS EXCLUSIVE MODE;")
        try:
            sent = time.monotonic()
            mon.send(stats_request(11))
            # 11 runs, and waits on the lock; then 12 waits in the queue, and
            # 13 finds the queue full.
            harness.wait_lookups_blocked(self.pg, self.dbname, 1)
            mon.send(stats_request(12))
            mon.send(stats_request(13))
            first = mon.recv(timeout=5)
            self.assertError(first, E.OVERLOADED, request_id=13)
            self.assertEqual(first.error.retry_after_ms, 500)
            # Bookings do not wait for the figures.
            t0 = time.monotonic()
            self.assertBooked(clinic.book(session.session_id, self.community.patient()),
                              pb.POOL_RESERVED)
            self.assertLess(time.monotonic() - t0, 0.5 * TIMEOUT_MS / 1000 * harness.SLOW)
            # 11 is cut off by the figures' statement timeout.
            timed_out = mon.recv(timeout=10)
            self.assertError(timed_out, E.UNAVAILABLE, request_id=11)
            self.assertGreaterEqual(time.monotonic() - sent, TIMEOUT_MS / 1000 * 0.9)
        finally:
            locker.run("ROLLBACK;")
        # 12 ran next; with the lock gone it answers.
        self.assertOk(mon.recv(timeout=10), "stats")
        fams = scrape(self.daemon)
        self.assertEqual(value(fams, "referrald_figures_queue_length"), 0)
        self.assertEqual(value(fams, "referrald_figures_db_connections_up"), 1)


if __name__ == "__main__":
    unittest.main()
