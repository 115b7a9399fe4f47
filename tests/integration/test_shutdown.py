#!/usr/bin/python3
"""SIGTERM with a request in flight: the daemon stops accepting, lets the
request finish, answers it, and exits 0.

To hold a Hello in flight, a psql session keeps the terminals table locked
(ACCESS EXCLUSIVE) so that the daemon's lookup waits. The lock would stall
every other module's Hello too, so this module works in a database of its own.
"""

import signal
import socket
import time
import unittest

import harness
from harness import pb
import load_support as ls
import slots_support as ss

E = pb.ErrorCode


class ShutdownTest(harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.dbname = cls.pg.create_database("it_shutdown")
        cls.addClassCleanup(cls.pg.drop_database, cls.dbname)
        cls.community = harness.Community(cls.pg, "shutdown", dbname=cls.dbname)

    def start_daemon(self, **settings):
        d = harness.Daemon(self.pg.dsn(self.dbname), name="shutdown",
                           settings=dict({"shutdown_timeout_ms": "30000"}, **settings))
        d.start()
        self.addCleanup(d.kill)   # each test checks the exit itself
        return d

    def lock_terminals(self):
        locker = harness.lock_terminals(self.pg, self.dbname)
        self.addCleanup(locker.close)
        return locker

    def wait_lookup_blocked(self):
        harness.wait_lookups_blocked(self.pg, self.dbname)

    def assertRefused(self, port):
        with self.assertRaises(ConnectionRefusedError, msg="the listener is still open"):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    def test_sigterm_with_hello_in_flight(self):
        d = self.start_daemon()
        idle = self.open_client(d)
        self.assertOk(idle.hello(self.community["monitor"]), "hello")
        locker = self.lock_terminals()
        busy = self.open_client(d)
        hid = busy.send(harness.hello_request(self.community["clinic"]))
        self.wait_lookup_blocked()

        d.send_signal(signal.SIGTERM)
        # The idle connection is closed at once...
        idle.wait_closed()
        # ...but the daemon waits for the Hello in flight.
        time.sleep(0.3)
        self.assertTrue(d.running(), "exited with a request in flight:\n" + d.log_tail())
        d.wait_log("shutting down: .* 1 request in flight")

        locker.run("ROLLBACK;")
        resp = busy.recv()
        self.assertEqual(resp.request_id, hid)
        self.assertOk(resp, "hello")
        self.assertEqual(resp.hello.terminal_id, self.community["clinic"].terminal_id)
        busy.wait_closed()
        d.check_clean_exit(d.wait_exit(15))

    def test_listener_closed_while_draining(self):
        """New connections during the drain are refused at once, instead of
        being queued in a backlog nobody accepts from."""
        d = self.start_daemon()
        locker = self.lock_terminals()
        busy = self.open_client(d)
        busy.send(harness.hello_request(self.community["clinic"]))
        self.wait_lookup_blocked()
        d.send_signal(signal.SIGTERM)
        d.wait_log("shutting down")
        try:
            self.assertTrue(d.running())
            self.assertRefused(d.port)
        finally:
            locker.run("ROLLBACK;")
            self.assertOk(busy.recv(), "hello")
            d.check_clean_exit(d.wait_exit(15))

    def test_frames_behind_the_request_in_flight(self):
        """A frame that arrived behind the in-flight Hello is answered
        UNAVAILABLE ("server shutting down"), as server.h promises, rather
        than dropped unanswered by the close."""
        d = self.start_daemon()
        locker = self.lock_terminals()
        busy = self.open_client(d)
        hid = busy.send(harness.hello_request(self.community["clinic"]))
        pid = busy.send(harness.ping_request(b"behind"))
        self.wait_lookup_blocked()
        d.send_signal(signal.SIGTERM)
        d.wait_log("shutting down")
        locker.run("ROLLBACK;")
        try:
            first = busy.recv()
            self.assertEqual(first.request_id, hid)
            self.assertOk(first, "hello")
            second = busy.recv()
            self.assertError(second, E.UNAVAILABLE, request_id=pid)
            busy.wait_closed()
        finally:
            d.check_clean_exit(d.wait_exit(15))

    def test_shutdown_timeout_bounds_the_drain(self):
        """A request that does not finish within shutdown_timeout_ms does not
        keep the daemon alive; it still exits 0."""
        d = self.start_daemon(shutdown_timeout_ms="500")
        locker = self.lock_terminals()
        busy = self.open_client(d)
        busy.send(harness.hello_request(self.community["clinic"]))
        self.wait_lookup_blocked()
        start = time.monotonic()
        d.send_signal(signal.SIGTERM)
        rc = d.wait_exit(15)
        elapsed = time.monotonic() - start
        locker.run("ROLLBACK;")
        d.check_clean_exit(rc)
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 5 * harness.SLOW)
        self.assertIn("still in flight", d.log())
        busy.wait_closed()

    def test_sigint_idle(self):
        """SIGINT drains like SIGTERM; with nothing in flight, at once."""
        d = self.start_daemon()
        c = self.open_client(d)
        self.assertOk(c.hello(self.community["monitor"]), "hello")
        d.send_signal(signal.SIGINT)
        c.wait_closed()
        d.check_clean_exit(d.wait_exit(10))


class DrainUnderLoadTest(harness.IntegrationCase):
    """SIGTERM in the middle of a booking load: the daemon drains and exits
    0; started again, it lets the clients settle their keys, and every
    booking they were told about is in the database exactly once."""

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.community = ss.SlotCommunity(cls.pg, "shutdown-load")

    def test_sigterm_under_booking_load(self):
        d = harness.Daemon(self.pg.dsn(), name="shutdown_load",
                           settings={"shutdown_timeout_ms": "30000", "log_level": "info"})
        self.addCleanup(d.kill)
        d.start()
        _, load = ls.round_robin_load(self, d, self.community, ("clinic", "clinic-b") * 3,
                                      4, 40, patients=1000, pace=0.01)
        load.wait_settled(50, what="bookings before SIGTERM")
        d.send_signal(signal.SIGTERM)
        d.check_clean_exit(d.wait_exit(30))
        self.assertIn("shutting down", d.log())
        at_exit = load.definite
        d.restart()
        load.wait_settled(at_exit + 160, timeout=60, what="bookings after the restart")
        load.finish()
        print(load.summary())
        self.assertEqual(ls.exactly_once_problems(self.community, load), [])
        self.assertEqual(load.replay_problems(), [])
        self.assertEqual(len(load.booked), 160)
        d.stop()


if __name__ == "__main__":
    unittest.main()
