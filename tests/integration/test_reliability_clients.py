#!/usr/bin/python3
"""Slow and hostile clients do not slow the others down (docs/reliability.md).

A client that stops reading its answers, clients that send a frame one byte
per second, 5,000 idle connections: meanwhile a well-behaved client's
requests (a search, which goes to the database) take about as long as they
did before, in the same test. The comparison is relative to that baseline,
with a generous ratio: what it catches is a daemon that waits on one client
(seconds), not the noise of a busy machine.
"""

import resource
import time
import unittest

import harness
from harness import pb
import load_support as ls
import slots_support as ss

# A well-behaved client's latency may grow this much, at most.
RATIO = 10
SAMPLES = 90
IDLE = 5000


def search():
    return ss.search_request(resource_id="dr-wang", until=ss.future(days=30), page_size=20)


class HostileClientsTest(ss.SlotAssertions, harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.community = ss.SlotCommunity(cls.pg, "reliability-clients")

    def start_daemon(self, **settings):
        d = harness.Daemon(self.pg.dsn(), name="reliability_clients",
                           settings=dict({"log_level": "info"}, **settings))
        self.addCleanup(d.stop)
        d.start()
        with ss.SlotClient(d.port) as desk:
            self.assertOk(desk.hello(self.community["desk"]), "hello")
            ls.publish(desk, 5, 10)
        return d

    def probe(self, daemon):
        p = ls.LatencyProbe(daemon.port, self.community["clinic"], search)
        self.addCleanup(p.close)
        p.sample(10)   # warm: prepared plans, caches
        return p

    def assertKeepsLatency(self, baseline, during, what):
        base, now = ls.steady_latency(baseline), ls.steady_latency(during)
        print(f"{what}: {base * 1000:.2f} ms before, {now * 1000:.2f} ms during")
        self.assertLessEqual(now, RATIO * base,
                             f"{what}: a well-behaved client's latency went from "
                             f"{base * 1000:.2f} ms to {now * 1000:.2f} ms")

    def test_client_that_stops_reading(self):
        """Its answers pile up to max_output_bytes; then the daemon stops
        reading it (its sends block), keeps serving the others, and closes it
        when it has not read for idle_timeout_ms."""
        d = self.start_daemon(max_output_bytes="65536", idle_timeout_ms="3000",
                              log_level="debug")   # the reason of each close
        probe = self.probe(d)
        baseline = probe.sample(SAMPLES)
        rss_before = harness.rss_kib(d.pid)

        stalled = self.open_client(d)
        self.assertOk(stalled.hello(self.community["clinic"]), "hello")
        stalled.sock.setblocking(False)
        ping = harness.frame(harness.ping_request(b"x" * 32768, request_id=9).SerializeToString())
        sent, blocked_since = 0, None
        # Send until the daemon stops taking our requests for a while.
        while blocked_since is None or time.monotonic() - blocked_since < 0.5:
            try:
                sent += stalled.sock.send(ping)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                time.sleep(0.01)
            self.assertLess(sent, 256 << 20, "the daemon never stopped reading a client "
                                             "that does not read")
        during = probe.sample(SAMPLES)
        self.assertKeepsLatency(baseline, during, "a client not reading")
        # Its answers waiting in the daemon are bounded by max_output_bytes
        # (plus what the socket buffers hold): the daemon's memory barely moved.
        grown = harness.rss_kib(d.pid) - rss_before
        self.assertLess(grown, 64 << 10, f"RSS grew by {grown} KiB")
        d.wait_log(r"closing: peer not reading \(write timeout\)", timeout=15)
        self.assertOk(probe.client.ping(), "ping")

    def test_frames_one_byte_per_second(self):
        """Twenty clients each send a Ping one byte per second (about ten
        seconds a frame); the others are served meanwhile, and each slow
        frame, once complete, is answered."""
        d = self.start_daemon()
        probe = self.probe(d)
        baseline = probe.sample(SAMPLES)
        slow = []
        for i in range(20):
            c = self.open_client(d)
            self.assertOk(c.hello(self.community["clinic"]), "hello")
            req = harness.ping_request(b"slow", request_id=100 + i)
            slow.append((c, harness.frame(req.SerializeToString())))
        length = len(slow[0][1])
        during = []
        for pos in range(length):
            for c, data in slow:
                c.send_raw(data[pos:pos + 1])
            second = time.monotonic() + 1
            # Probe for the rest of the second.
            while time.monotonic() < second:
                during += probe.sample(1)
        for i, (c, _) in enumerate(slow):
            resp = c.recv()
            self.assertEqual(resp.request_id, 100 + i)
            self.assertOk(resp, "ping")
            self.assertEqual(resp.ping.payload, b"slow")
        self.assertGreaterEqual(len(during), SAMPLES)
        self.assertKeepsLatency(baseline, during, "frames one byte per second")

    def test_5000_idle_connections(self):
        """5,000 connections that say nothing (unauthenticated: a long
        handshake timeout keeps them) and 200 authenticated ones that then
        idle."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = IDLE + 500
        if hard != resource.RLIM_INFINITY and hard < need:
            self.skipTest(f"RLIMIT_NOFILE hard limit {hard} is below {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
        # The daemon inherits the raised limit.
        # 200 handshakes at once, each a PBKDF2 check on the daemon's loop:
        # cheap hashes and a long queue timeout keep them from being what
        # the test measures (under the sanitizers above all).
        d = self.start_daemon(max_connections=str(IDLE + 300), handshake_timeout_ms="600000",
                              db_queue_timeout_ms="60000")
        self.community.cheap_tokens(["clinic-b"])
        probe = self.probe(d)
        mon = self.open_client(d)
        self.assertOk(mon.hello(self.community["monitor"]), "hello")
        baseline = probe.sample(SAMPLES)
        rss_before = harness.rss_kib(d.pid)

        idle = []
        self.addCleanup(lambda: [c.close() for c in idle])
        for _ in range(IDLE):
            idle.append(harness.Client(d.port, timeout=30))
        swarm = ss.Swarm([(d.port, self.community["clinic-b"])] * 200, timeout=60)
        self.addCleanup(swarm.close)
        swarm.hello_all()
        harness.wait_for(lambda: mon.status().status.connections >= IDLE + 202, 30,
                         what="every idle connection to be accepted")

        during = probe.sample(SAMPLES)
        self.assertKeepsLatency(baseline, during, f"{IDLE} idle connections")
        per_conn = (harness.rss_kib(d.pid) - rss_before) * 1024 / (IDLE + 200)
        print(f"daemon memory per idle connection: {per_conn:.0f} bytes")
        # Nobody was closed or refused: all of them still answer.
        for answers in swarm.exchange([harness.ping_request(request_id=2)] * 200):
            self.assertOk(answers[0], "ping")
        for c in idle[::100]:
            self.assertError(c.ping(), pb.ErrorCode.UNAUTHENTICATED, request_id=1)
        for c in idle:
            c.close()
        idle.clear()
        swarm.close()
        harness.wait_for(lambda: mon.status().status.connections <= 3, 30,
                         what="the idle connections to be counted out")
        self.assertOk(probe.client.ping(), "ping")


if __name__ == "__main__":
    unittest.main()
