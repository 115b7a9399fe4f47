#!/usr/bin/python3
"""Overload: bookings arrive faster than the database commits them
(docs/reliability.md).

Eight connections keep 64 bookings in flight each, far more than the two
database connections and the queue of 32 can hold. The daemon answers the
excess OVERLOADED at once, with retry_after_ms, instead of queueing it; its
memory stays flat while the flood goes on; and when the flood stops it is
back to normal by itself: the queue empties, bookings succeed again and take
about as long as before.

A database of its own: the flood's commits stay out of the other modules'
way as far as the shared cluster allows.
"""

import os
import threading
import time
import unittest

import harness
from harness import pb
import load_support as ls
import slots_support as ss

E = pb.ErrorCode
QUEUE_MAX = 32
FLOOD_S = 4
RATIO = 10


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.wait(0.05):
            self.samples.append(harness.rss_kib(self.pid))

    def stop(self):
        self.stop_event.set()
        self.join(5)
        return self.samples


class OverloadTest(ss.SlotAssertions, harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.dbname = cls.pg.create_database("reliability_overload")
        cls.addClassCleanup(cls.pg.drop_database, cls.dbname)
        cls.community = ss.SlotCommunity(cls.pg, "reliability-overload", dbname=cls.dbname)

    def test_flood_of_bookings(self):
        # Under ASan, freed memory sits in a quarantine of up to 256 MB by
        # default, which would look like growth: keep it small here.
        asan = os.environ.get("ASAN_OPTIONS", harness.SANITIZER_ENV["ASAN_OPTIONS"])
        d = harness.Daemon(self.pg.dsn(self.dbname), name="reliability_overload",
                           settings={"db_pool_size": "2", "db_queue_max": str(QUEUE_MAX),
                                     "log_level": "info"},
                           env={"ASAN_OPTIONS": asan + ":quarantine_size_mb=4"})
        self.addCleanup(d.stop)
        d.start()
        with ss.SlotClient(d.port) as desk:
            self.assertOk(desk.hello(self.community["desk"]), "hello")
            session = ls.publish(desk, 1, 10000)[0]
        patients = self.community.patients(2000)
        flood_patients = iter(patients[1000:] * 1000)
        probe_patients = iter(patients[:1000])

        def book_for_probe():
            return ss.book_request(session, next(probe_patients), fallback=True)

        def book_for_flood():
            return ss.book_request(session, next(flood_patients), fallback=True)

        probe = ls.LatencyProbe(d.port, self.community["clinic"], book_for_probe)
        self.addCleanup(probe.close)
        probe.sample(10)
        baseline = probe.sample(60)
        mon = self.open_client(d)
        self.assertOk(mon.hello(self.community["monitor"]), "hello")

        rss = RssSampler(d.pid)
        flood = ls.Flood(d.port, self.community["clinic-b"], book_for_flood, conns=8, depth=64)
        rss.start()
        flood.start()
        time.sleep(FLOOD_S)
        queued = mon.status().status.db_queue_length
        flood.stop()
        samples = rss.stop()

        served = [t for code, ts in flood.latency.items() if code != "OVERLOADED" for t in ts]
        overloaded = flood.latency["OVERLOADED"]
        print(f"flood answers {dict(flood.answers)}; median latency: OVERLOADED "
              f"{ls.median(overloaded) * 1000:.2f} ms, served {ls.median(served) * 1000:.2f} ms; "
              f"RSS {samples[0]} .. {max(samples)} KiB")
        # The excess is refused, the rest served; nothing else.
        self.assertGreater(flood.answers["OVERLOADED"], 0)
        self.assertGreater(flood.answers["OK"], 0)
        self.assertLessEqual(set(flood.answers), {"OK", "OVERLOADED", "CONFLICT", "UNAVAILABLE"})
        self.assertNotIn(0, flood.retry_after["OVERLOADED"], "OVERLOADED says when to retry")
        self.assertLessEqual(queued, QUEUE_MAX)
        # Refused quickly: without waiting for the database, unlike the
        # requests it serves, which wait their turn in the queue.
        self.assertLess(ls.median(overloaded), ls.median(served))
        # Memory flat: the second half of the flood needs no more than the
        # first half did (with some slack for the allocator).
        half = len(samples) // 2
        first, second = max(samples[:half]), max(samples[half:])
        self.assertLessEqual(second, first * 1.2 + 4096,
                             f"RSS kept growing under the flood: {samples}")

        # Back to normal by itself.
        harness.wait_for(lambda: mon.status().status.db_queue_length == 0, 10,
                         what="the queue to empty")
        after = probe.sample(60)
        before, now = ls.steady_latency(baseline), ls.steady_latency(after)
        print(f"booking latency: {before * 1000:.2f} ms before, {now * 1000:.2f} ms after "
              f"the flood")
        self.assertLessEqual(now, RATIO * before)
        self.assertEqual(self.community.invariant_violations(), [])


if __name__ == "__main__":
    unittest.main()
