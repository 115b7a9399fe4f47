#!/usr/bin/python3
"""Connection limit: connections beyond max_connections get a typed
OVERLOADED answer and are closed; the ones inside the limit are unharmed."""

import unittest

import harness
from harness import pb

E = pb.ErrorCode


class ConnectionLimitTest(harness.DaemonTestCase):
    daemon_settings = {"max_connections": "3"}

    def test_over_the_limit(self):
        first = self.authed("monitor")
        # Earlier tests' connections are gone once the count says so.
        harness.wait_for(lambda: first.status().status.connections == 1, 5,
                         what="only this test's connection to be open")
        others = [self.connect(), self.connect()]
        for _ in range(3):
            extra = self.connect()
            resp = extra.recv()
            self.assertError(resp, E.OVERLOADED, request_id=0)
            self.assertGreater(resp.error.retry_after_ms, 0)
            extra.wait_closed()
        # Those inside the limit work, including the unauthenticated ones.
        self.assertOk(first.status(), "status")
        self.assertEqual(first.status().status.connections, 3)
        self.assertOk(others[0].hello(self.community["clinic"]), "hello")
        # A slot freed is a slot usable again.
        others[1].close()
        harness.wait_for(lambda: first.status().status.connections == 2, 5,
                         what="the closed connection to be counted out")
        again = self.connect()
        self.assertOk(again.hello(self.community["desk"]), "hello")
        self.assertOk(again.ping(), "ping")


if __name__ == "__main__":
    unittest.main()
