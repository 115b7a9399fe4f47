#!/usr/bin/python3
"""Pipelining: many requests sent without waiting are each answered exactly
once, on one connection and on several at once, and a client that does not
read is slowed down (back-pressure), not dropped or buffered without bound."""

import collections
import threading
import unittest

import harness
from harness import pb


def batch(n, first_id=1, payload_size=8):
    """n requests (mostly pings, every 10th a status) with ids first_id...
    Each ping's payload names its id, so a mixed-up answer is caught."""
    reqs = []
    for i in range(first_id, first_id + n):
        if i % 10 == 0:
            reqs.append(harness.status_request(request_id=i))
        else:
            payload = str(i).encode().ljust(payload_size, b".")
            reqs.append(harness.ping_request(payload, request_id=i))
    return reqs


class AnswerCheck:
    def check_answers(self, reqs, responses):
        by_id = {r.request_id: r for r in reqs}
        seen = collections.Counter(resp.request_id for resp in responses)
        dup = [i for i, n in seen.items() if n > 1]
        self.assertEqual(dup, [], "ids answered more than once")
        self.assertEqual(set(seen), set(by_id), "every id answered")
        for resp in responses:
            req = by_id[resp.request_id]
            body = req.WhichOneof("body")
            self.assertOk(resp, body)
            if body == "ping":
                self.assertEqual(resp.ping.payload, req.ping.payload)


class PipeliningTest(AnswerCheck, harness.DaemonTestCase):

    def test_one_connection(self):
        c = self.authed("monitor")
        reqs = batch(1000)
        # All of it in one write: the server sees many frames per read.
        c.send_raw(b"".join(harness.frame(r.SerializeToString()) for r in reqs))
        responses = [c.recv() for _ in reqs]
        self.check_answers(reqs, responses)
        # Requests answered from memory come back in order.
        self.assertEqual([r.request_id for r in responses], [r.request_id for r in reqs])
        self.assertOk(c.ping(), "ping")

    def test_mixed_with_errors(self):
        """Refused requests in the pipeline are answered in their turn too."""
        c = self.authed("clinic")   # clinic: status is PERMISSION_DENIED
        reqs = batch(300)
        c.send_raw(b"".join(harness.frame(r.SerializeToString()) for r in reqs))
        responses = {}
        for _ in reqs:
            resp = c.recv()
            self.assertNotIn(resp.request_id, responses)
            responses[resp.request_id] = resp
        for r in reqs:
            resp = responses[r.request_id]
            if r.WhichOneof("body") == "status":
                self.assertError(resp, pb.PERMISSION_DENIED, request_id=r.request_id)
            else:
                self.assertOk(resp, "ping")
                self.assertEqual(resp.ping.payload, r.ping.payload)

    def test_many_connections_at_once(self):
        clients = [self.authed("desk") for _ in range(8)]
        results, errors = {}, []

        def run(i, c):
            try:
                reqs = [harness.ping_request(f"{i}:{k}".encode(), request_id=k + 1)
                        for k in range(400)]
                c.send_raw(b"".join(harness.frame(r.SerializeToString()) for r in reqs))
                results[i] = (reqs, [c.recv() for _ in reqs])
            except Exception as e:   # reported below, in the test's thread
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), len(clients))
        for reqs, responses in results.values():
            self.check_answers(reqs, responses)


class BackPressureTest(AnswerCheck, harness.DaemonTestCase):
    # The smallest allowed output limit: the daemon stops reading a client
    # whose unsent replies pass 4 KiB.
    daemon_settings = {"max_output_bytes": "4096"}

    def test_slow_reader(self):
        c = self.authed("monitor")
        # ~32 MB of requests and as much in replies: far more than the
        # kernel's socket buffers on both sides can hold (about 6 MB here).
        reqs = batch(16000, payload_size=2000)
        wire = b"".join(harness.frame(r.SerializeToString()) for r in reqs)
        rss_before = harness.rss_kib(self.daemon.pid)
        progress, errors = [0], []

        def writer():
            try:
                for i in range(0, len(wire), 65536):
                    c.sock.sendall(wire[i:i + 65536])
                    progress[0] = i + 65536
            except Exception as e:
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        # Nobody reads the replies yet: the daemon must stop reading this
        # client, so the writer stalls, and the daemon's memory stays flat.
        stalled = harness.wait_for(
            lambda: self._stalled(progress), 10, interval=0.2, what="the writer to stall")
        self.assertLess(stalled, len(wire) // 2, "most of the requests were taken unread")
        if not harness.is_sanitized(self.daemon.pid):   # ASan's quarantine keeps freed memory
            growth = harness.rss_kib(self.daemon.pid) - rss_before
            self.assertLess(growth, 16 * 1024, f"daemon grew by {growth} KiB")
        # Meanwhile the daemon serves everybody else.
        other = self.authed("admin")
        st = other.status()
        self.assertOk(st, "status")
        self.assertEqual(st.status.connections, 2)
        # Now read: everything gets answered, once, in order.
        responses = [c.recv(timeout=30) for _ in reqs]
        t.join(30)
        self.assertEqual(errors, [])
        self.check_answers(reqs, responses)
        self.assertEqual([r.request_id for r in responses], [r.request_id for r in reqs])
        self.assertOk(c.ping(b"done"), "ping")

    _last = None

    def _stalled(self, progress):
        """Progress that did not move for one polling interval, else None."""
        now = progress[0]
        stalled = now if now and now == self._last else None
        self._last = now
        return stalled


if __name__ == "__main__":
    unittest.main()
