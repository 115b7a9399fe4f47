#!/usr/bin/python3
"""Handshake and idle timeouts, set small with -s."""

import threading
import time
import unittest

import harness
from harness import pb

HANDSHAKE_S = 0.5
IDLE_S = 1.2


class TimeoutTest(harness.DaemonTestCase):
    daemon_settings = {"handshake_timeout_ms": str(int(HANDSHAKE_S * 1000)),
                       "idle_timeout_ms": str(int(IDLE_S * 1000))}

    def assertClosedAfter(self, c, since, low, high):
        c.wait_closed(timeout=high + 2)
        elapsed = time.monotonic() - since
        self.assertGreaterEqual(elapsed, low * 0.9, "closed too early")
        self.assertLess(elapsed, high * harness.SLOW + 1, "closed too late")

    def test_silent_connection_closed_at_handshake_timeout(self):
        start = time.monotonic()
        c = self.connect()
        self.assertClosedAfter(c, start, HANDSHAKE_S, IDLE_S)

    def test_traffic_without_hello_is_closed_too(self):
        """Requests that are not Hello do not extend the handshake window."""
        start = time.monotonic()
        c = self.connect()
        answered = 0
        try:
            while time.monotonic() - start < HANDSHAKE_S + 1.5:
                resp = c.call(harness.ping_request())
                self.assertError(resp, pb.UNAUTHENTICATED)
                answered += 1
                time.sleep(0.1)
        except (harness.ConnectionClosed, BrokenPipeError, ConnectionResetError):
            pass
        else:
            self.fail("connection still open well after the handshake timeout")
        elapsed = time.monotonic() - start
        self.assertGreater(answered, 0)
        self.assertGreaterEqual(elapsed, HANDSHAKE_S * 0.9)
        self.assertLess(elapsed, HANDSHAKE_S + 1.5)

    def test_hello_in_time_survives_the_handshake_timeout(self):
        c = self.authed("clinic")
        time.sleep(HANDSHAKE_S + 0.3)     # past the handshake timer, short of idle
        self.assertOk(c.ping(), "ping")

    def test_idle_connection_closed(self):
        c = self.authed("clinic")
        self.assertOk(c.ping(), "ping")
        last = time.monotonic()
        self.assertClosedAfter(c, last, IDLE_S, IDLE_S + 2)

    def test_activity_keeps_a_connection_open(self):
        c = self.authed("clinic")
        start = time.monotonic()
        while True:
            self.assertOk(c.ping(), "ping")
            last = time.monotonic()
            if last - start > 2.5 * IDLE_S:
                break
            time.sleep(IDLE_S / 3)
        # Then silence closes it.
        self.assertClosedAfter(c, last, IDLE_S, IDLE_S + 2)

    def test_peer_that_never_reads_is_closed(self):
        """A client that sends and never reads: once its replies stop
        draining, the write side times out and the daemon lets go of it."""
        c = self.authed("clinic")
        frame = harness.frame(harness.ping_request(b"r" * 2000, request_id=1).SerializeToString())
        chunk = frame * 32
        c.sock.settimeout(10 * harness.SLOW)   # a send that times out is a failure
        start = time.monotonic()
        with self.assertRaises((BrokenPipeError, ConnectionResetError)):
            # Far more than the socket buffers hold: this write blocks until
            # the daemon gives up on us.
            for _ in range(500):
                c.sock.sendall(chunk)
        self.assertLess(time.monotonic() - start, 10 * harness.SLOW)
        self.daemon.wait_log(r"closing: peer not reading \(write timeout\)")

    def test_timeouts_are_per_connection(self):
        """Several connections time out independently; the active one lives."""
        active = self.authed("monitor")
        idle = [self.connect() for _ in range(5)]
        stop = threading.Event()
        errors = []

        def keep_busy():
            try:
                while not stop.is_set():
                    active.ping()
                    time.sleep(0.2)
            except Exception as e:
                errors.append(e)

        t = threading.Thread(target=keep_busy)
        t.start()
        try:
            for c in idle:
                c.wait_closed(timeout=HANDSHAKE_S + 3)
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        st = active.status().status
        self.assertEqual(st.connections, 1)


if __name__ == "__main__":
    unittest.main()
