#!/usr/bin/python3
"""Token checks run on worker threads: a Hello whose stored hash is very slow
to check (millions of PBKDF2 iterations) does not hold up the event loop, so
other connections keep being answered meanwhile."""

import subprocess
import time
import unittest

import harness
from harness import pb


def slow_hash(token, iterations):
    p = subprocess.run([harness.REFERRALD, "-s", f"pbkdf2_iterations={iterations}",
                        "--hash-token"], input=token + "\n", env=harness.binary_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    return p.stdout.strip()


class AuthOffloadTest(harness.DaemonTestCase):
    daemon_settings = {"auth_threads": "1", "handshake_timeout_ms": "120000"}

    def test_slow_hello_does_not_block_other_connections(self):
        c = self.community
        token = "slow-terminal-token"
        c.pg.psql(f"""INSERT INTO terminals (community_id, terminal_id, institution_id, role,
                      token_hash) VALUES ({harness.sql_literal(c.community_id)}, 'slow-01',
                      'county-hospital', 'monitor', {harness.sql_literal(slow_hash(token, 600000))})""")
        busy = self.authed("monitor")
        slow = self.connect(timeout=60)
        started = time.monotonic()
        hid = slow.send(harness.hello_request(c["monitor"], terminal_id="slow-01", token=token))
        # While the slow check runs, pings on another connection come back
        # at once (they would wait for the hash if it ran on the loop).
        time.sleep(0.1)
        worst = 0.0
        for _ in range(5):
            t0 = time.monotonic()
            self.assertOk(busy.ping(b"still here"), "ping")
            worst = max(worst, time.monotonic() - t0)
        resp = slow.recv(timeout=60)
        took = time.monotonic() - started
        self.assertEqual(resp.request_id, hid)
        self.assertOk(resp, "hello")
        self.assertGreater(took, 0.1, "the hash was not slow enough to show anything")
        self.assertLess(worst, took / 3, f"pings waited {worst:.3f}s while the Hello took {took:.3f}s")


if __name__ == "__main__":
    unittest.main()
