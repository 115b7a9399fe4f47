#!/usr/bin/python3
"""The database goes away under a running daemon and comes back.

This module stops and starts PostgreSQL, so it runs on a cluster of its own
(started here) rather than the suite's shared one, which the other modules
use at the same time.
"""

import unittest

import harness
from harness import pb

E = pb.ErrorCode


class DatabaseOutageTest(harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.private()
        cls.addClassCleanup(cls.pg.remove)
        cls.community = harness.Community(cls.pg, "db-outage")
        # Reconnect quickly so that recovery is seen within the test.
        cls.daemon = harness.Daemon(cls.pg.dsn(), name="db_outage",
                                    settings={"db_reconnect_max_ms": "200",
                                              "db_queue_timeout_ms": "1000"})
        cls.addClassCleanup(cls.daemon.stop)
        cls.daemon.start()

    def connect(self):
        return self.open_client(self.daemon)

    def status_until(self, c, state, timeout=15):
        def check():
            st = c.status().status
            return st if st.database_state == state else None
        return harness.wait_for(check, timeout, interval=0.05, what=f"database_state {state}")

    def test_stop_and_restart_under_a_connected_client(self):
        mon = self.connect()
        self.assertOk(mon.hello(self.community["monitor"]), "hello")
        st = self.status_until(mon, "up")
        self.assertEqual(st.db_connections_up, st.db_connections_total)
        waiting = self.connect()     # will try Hello during the outage

        self.pg.pgstop("fast")
        try:
            st = self.status_until(mon, "down")
            self.assertEqual(st.db_connections_up, 0)
            self.assertNotEqual(st.database_error, "", "status says why the database is down")
            # The admin endpoint says so, in one line with the reason.
            code, _, body = self.daemon.http_get("/healthz")
            self.assertEqual(code, 503, body)
            self.assertTrue(body.startswith("database unavailable: "), body)
            self.assertEqual(len(body.strip().splitlines()), 1, body)
            # Answered from memory while the database is away.
            self.assertOk(mon.ping(b"still"), "ping")
            # Hello needs the database: a typed, retryable refusal, and the
            # connection stays open for the retry.
            resp = waiting.hello(self.community["clinic"])
            self.assertError(resp, E.UNAVAILABLE)
            self.assertGreater(resp.error.retry_after_ms, 0)
            # A fresh connection gets the same.
            with self.daemon.client() as fresh:
                self.assertError(fresh.hello(self.community["desk"]), E.UNAVAILABLE)
        finally:
            self.pg.pgstart()

        # Recovery, without restarting the daemon.
        st = self.status_until(mon, "up")
        self.assertEqual(st.db_connections_up, st.db_connections_total)
        self.assertEqual(st.database_error, "")
        code, _, body = self.daemon.http_get("/healthz")
        self.assertEqual(code, 200, body)
        resp = waiting.hello(self.community["clinic"])   # same connection, retried
        self.assertOk(resp, "hello")
        self.assertEqual(resp.hello.practitioner_id, "fd-a")
        self.assertOk(waiting.ping(), "ping")
        with self.daemon.client() as fresh:
            self.assertOk(fresh.hello(self.community["desk"]), "hello")
        self.assertTrue(self.daemon.running())

    def test_immediate_stop(self):
        """A crash-like stop (no goodbye from the server) is noticed too."""
        mon = self.connect()
        self.assertOk(mon.hello(self.community["admin"]), "hello")
        self.status_until(mon, "up")
        self.pg.pgstop("immediate")
        try:
            self.status_until(mon, "down")
            with self.daemon.client() as c:
                self.assertError(c.hello(self.community["clinic"]), E.UNAVAILABLE)
        finally:
            self.pg.pgstart()
        self.status_until(mon, "up")
        with self.daemon.client() as c:
            self.assertOk(c.hello(self.community["clinic"]), "hello")

    def test_backend_killed_mid_query(self):
        """The pool connection running a Hello dies: that Hello is answered
        UNAVAILABLE (not left hanging), and the pool heals."""
        mon = self.connect()
        self.assertOk(mon.hello(self.community["monitor"]), "hello")
        self.status_until(mon, "up")
        locker = harness.lock_terminals(self.pg, "referral")
        self.addCleanup(locker.close)
        c = self.connect()
        c.send(harness.hello_request(self.community["clinic"]))
        backend = harness.wait_for(lambda: self.pg.psql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'referrald'"
            " AND datname = current_database() AND wait_event_type = 'Lock'"), 10, what="the Hello to wait on the lock")
        self.pg.psql(f"SELECT pg_terminate_backend({int(backend)})")
        resp = c.recv()
        self.assertError(resp, E.UNAVAILABLE, request_id=1)
        locker.run("ROLLBACK;")
        self.status_until(mon, "up")
        self.assertOk(c.hello(self.community["clinic"]), "hello")


class UnreachableAtStartTest(harness.IntegrationCase):
    """A database that is not there when the daemon starts is no reason to
    refuse to start: it serves what it can and keeps trying."""

    def test_starts_and_reports_down(self):
        port = harness.free_port()
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=referral connect_timeout=2"
        daemon = harness.Daemon(dsn, name="db_outage_start",
                                settings={"db_reconnect_max_ms": "200"})
        self.addCleanup(daemon.stop)
        daemon.start()
        with daemon.client() as c:
            resp = c.hello(terminal_id="t", community_id="c", token="x")
            self.assertError(resp, E.UNAVAILABLE)
            # Still open: may retry.
            self.assertError(c.hello(terminal_id="t", community_id="c", token="x"),
                             E.UNAVAILABLE)
        self.assertIn("not reachable", daemon.log())
        self.assertTrue(daemon.running())


if __name__ == "__main__":
    unittest.main()
