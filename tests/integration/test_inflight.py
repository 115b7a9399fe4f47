#!/usr/bin/python3
"""Requests that wait on the database: the pool's queue limits and timeouts,
PostgreSQL's statement timeout, and clients that go away (or time out) while
their Hello is still being looked up.

A psql session locks the terminals table so that lookups wait; the lock would
stall the other modules' Hellos, so this module has a database of its own.
Most of these end with the daemon's exit under the sanitizers: a request
whose connection vanished must be freed exactly once.
"""

import time
import unittest

import harness
from harness import pb

E = pb.ErrorCode


def setUpModule():
    global PG, DBNAME, COMMUNITY
    PG = harness.Postgres.shared()
    DBNAME = PG.create_database("it_inflight")
    unittest.addModuleCleanup(PG.drop_database, DBNAME)
    COMMUNITY = harness.Community(PG, "inflight", dbname=DBNAME)


class InFlightTest(harness.IntegrationCase):

    def start_daemon(self, **settings):
        # The periodic release job also uses the pool; after its first run at
        # start it must stay out of the way of the exact counts below.
        settings.setdefault("release_interval_ms", "600000")
        d = harness.Daemon(PG.dsn(DBNAME), name="inflight", settings=settings)
        self.addCleanup(d.stop)
        d.start()
        # Both pool connections ready, so the counts below are exact.
        # Retried: with a tiny db_queue_max, the release job queued at start
        # can fill the queue until the pool is up; with a short
        # handshake_timeout_ms on a loaded machine, the first try may time out.
        def monitor_hello():
            c = d.client()
            try:
                if not c.hello(COMMUNITY["monitor"]).HasField("error"):
                    self.addCleanup(c.close)
                    return c
            except harness.ConnectionClosed:
                pass
            c.close()
            return None

        mon = harness.wait_for(monitor_hello, 10, interval=0.05,
                               what="the monitor's Hello to succeed")
        harness.wait_for(lambda: mon.status().status.database_state == "up", 15,
                         what="database_state up")
        self.monitor = mon
        return d

    def lock(self):
        locker = harness.lock_terminals(PG, DBNAME)
        self.addCleanup(locker.close)
        return locker

    def hello_async(self, d, name="clinic"):
        c = self.open_client(d)
        c.send(harness.hello_request(COMMUNITY[name]))
        return c

    def test_queue_timeout(self):
        """Two lookups hold both pool connections; the third waits in the
        queue and is answered UNAVAILABLE after db_queue_timeout_ms."""
        d = self.start_daemon(db_pool_size="2", db_queue_timeout_ms="400")
        locker = self.lock()
        running = [self.hello_async(d), self.hello_async(d, "desk")]
        harness.wait_lookups_blocked(PG, DBNAME, 2)
        start = time.monotonic()
        queued = self.hello_async(d, "billing")
        harness.wait_for(lambda: self.monitor.status().status.db_queue_length == 1, 5,
                         what="the third Hello to be queued")
        resp = queued.recv(timeout=5)
        elapsed = time.monotonic() - start
        self.assertError(resp, E.UNAVAILABLE, request_id=1)
        self.assertGreater(resp.error.retry_after_ms, 0)
        self.assertGreaterEqual(elapsed, 0.35)
        self.assertEqual(self.monitor.status().status.db_queue_length, 0)
        locker.run("ROLLBACK;")
        for c in running:
            self.assertOk(c.recv(), "hello")
        # The refused one may try again on the same connection.
        self.assertOk(queued.hello(COMMUNITY["billing"]), "hello")

    def test_queue_full(self):
        """Beyond db_queue_max waiting requests: OVERLOADED at once."""
        d = self.start_daemon(db_pool_size="2", db_queue_max="1", db_queue_timeout_ms="30000")
        locker = self.lock()
        # One at a time: a job passes through the queue on its way to an idle
        # connection, and with a queue of 1 two at once would collide there.
        running = [self.hello_async(d)]
        harness.wait_lookups_blocked(PG, DBNAME, 1)
        running.append(self.hello_async(d, "admin"))
        harness.wait_lookups_blocked(PG, DBNAME, 2)
        queued = self.hello_async(d, "desk")
        harness.wait_for(lambda: self.monitor.status().status.db_queue_length == 1, 5,
                         what="the third Hello to be queued")
        refused = self.open_client(d)
        resp = refused.hello(COMMUNITY["billing"])
        self.assertError(resp, E.OVERLOADED)
        self.assertGreater(resp.error.retry_after_ms, 0)
        locker.run("ROLLBACK;")
        for c in running + [queued]:
            self.assertOk(c.recv(), "hello")
        self.assertOk(refused.hello(COMMUNITY["billing"]), "hello")

    def test_statement_timeout(self):
        """PostgreSQL cancels the lookup (57014): a retryable UNAVAILABLE."""
        d = self.start_daemon(db_statement_timeout_ms="300")
        locker = self.lock()
        c = self.hello_async(d)
        resp = c.recv(timeout=10)
        self.assertError(resp, E.UNAVAILABLE, request_id=1)
        locker.run("ROLLBACK;")
        self.assertOk(c.hello(COMMUNITY["clinic"]), "hello")
        # The pool connection that hit the timeout is still good.
        self.assertEqual(self.monitor.status().status.database_state, "up")

    def test_client_gone_during_lookup(self):
        d = self.start_daemon()
        locker = self.lock()
        gone = [self.hello_async(d, n) for n in ("clinic", "desk")]
        harness.wait_lookups_blocked(PG, DBNAME, 2)
        for c in gone:
            c.close()
        harness.wait_for(lambda: self.monitor.status().status.connections == 1, 5,
                         what="the closed connections to be counted out")
        # Their requests are still in flight: the daemon waits for them.
        self.assertEqual(self.monitor.status().status.requests_in_flight, 3)
        locker.run("ROLLBACK;")
        harness.wait_for(lambda: self.monitor.status().status.requests_in_flight == 1, 5,
                         what="the orphaned lookups to finish")
        with d.client() as c:
            self.assertOk(c.hello(COMMUNITY["clinic"]), "hello")

    def test_handshake_timeout_during_lookup(self):
        """The handshake timer fires while the lookup runs: the connection
        closes, and the late answer is dropped without harm."""
        d = self.start_daemon(handshake_timeout_ms="300")
        locker = self.lock()
        c = self.hello_async(d)
        harness.wait_lookups_blocked(PG, DBNAME, 1)
        c.wait_closed(timeout=5)
        locker.run("ROLLBACK;")
        harness.wait_for(lambda: self.monitor.status().status.requests_in_flight == 1, 5,
                         what="the orphaned lookup to finish")
        self.assertEqual(self.monitor.status().status.connections, 1)


if __name__ == "__main__":
    unittest.main()
