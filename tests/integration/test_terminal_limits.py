#!/usr/bin/python3
"""Per-terminal limits: a token bucket (terminal_rate_per_s,
terminal_rate_burst) answers requests beyond it OVERLOADED with the wait in
retry_after_ms, per terminal (another terminal is not held up); and
max_connections_per_terminal refuses one more Hello with OVERLOADED and
closes that connection. Both change on SIGHUP."""

import signal
import time
import unittest

import harness
from harness import pb

E = pb.ErrorCode


class RateLimitTest(harness.DaemonTestCase):
    daemon_settings = {"terminal_rate_per_s": "5", "terminal_rate_burst": "10",
                       "max_connections_per_terminal": "3"}

    def burst(self, c, n):
        ids = [c.send(harness.ping_request(b"p")) for _ in range(n)]
        answers = {}
        while len(answers) < n:
            r = c.recv()
            answers[r.request_id] = r
        return [answers[i] for i in ids]

    def test_bucket_refuses_beyond_the_burst_then_refills(self):
        c = self.authed("clinic")
        answers = self.burst(c, 30)
        ok = [r for r in answers if not r.HasField("error")]
        refused = [r for r in answers if r.HasField("error")]
        # The burst (10), plus what trickled back meanwhile.
        self.assertGreaterEqual(len(ok), 10)
        self.assertLess(len(ok), 20)
        for r in refused:
            self.assertError(r, E.OVERLOADED)
            self.assertGreater(r.error.retry_after_ms, 0)
            self.assertLessEqual(r.error.retry_after_ms, 201)
        # Another terminal has a bucket of its own.
        self.assertOk(self.authed("desk").ping(), "ping")
        # And another connection of the same terminal shares this one.
        same = self.authed("clinic")
        first = same.ping()
        if first.HasField("error"):
            self.assertError(first, E.OVERLOADED)
        time.sleep(max(r.error.retry_after_ms for r in refused) / 1000 + 0.05)
        self.assertOk(c.ping(), "ping")
        self.assertIn("referrald_requests_rate_limited_total",
                      self.daemon.http_get("/metrics")[2])

    def test_connections_per_terminal(self):
        t = self.community["billing"]
        held = [self.authed("billing") for _ in range(3)]
        extra = self.connect()
        resp = extra.hello(t)
        self.assertError(resp, E.OVERLOADED, field="hello")
        self.assertGreater(resp.error.retry_after_ms, 0)
        extra.wait_closed()
        # Other terminals are not counted against it.
        self.assertOk(self.authed("monitor").ping(), "ping")
        # A closed connection frees its place.
        held.pop().close()
        harness.wait_for(lambda: self.try_hello(t), 5, what="a free place for billing")

    def try_hello(self, t):
        with self.daemon.client() as c:
            return not c.hello(t).HasField("error")


class ReloadLimitTest(harness.IntegrationCase):

    def test_reload_changes_the_limit(self):
        pg = harness.Postgres.shared()
        community = harness.Community(pg, "limits-reload")
        d = harness.Daemon(pg.dsn(), name="limits-reload",
                           settings={"terminal_rate_per_s": None, "terminal_rate_burst": None},
                           config_text="terminal_rate_per_s = 1\nterminal_rate_burst = 1\n")
        self.addCleanup(d.kill)
        d.start()
        c = self.open_client(d)
        self.assertOk(c.hello(community["admin"]), "hello")
        self.assertOk(c.ping(), "ping")
        self.assertError(c.ping(), E.OVERLOADED)
        d.write_config("terminal_rate_per_s = 0\n")
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"terminal_rate_per_s changed from '1' to '0'")
        for _ in range(20):
            self.assertOk(c.ping(), "ping")
        d.stop()


if __name__ == "__main__":
    unittest.main()
