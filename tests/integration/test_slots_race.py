#!/usr/bin/python3
"""The overbooking race: hundreds of connections, spread over two daemons,
book the same session at the same moment. Exactly capacity bookings
succeed, each pool exactly full, every other request is answered FULL,
every request is answered once; and the same holds while other clients
cancel bookings and the reserved share is released in the middle of it.
A monitor samples the database throughout: the counters never disagree
with the live bookings and no pool is ever over its capacity."""

import collections
import random
import sys
import threading
import time
import unittest

import harness
from harness import pb
import slots_support as ss

CONNECTIONS = 240        # per race, over two daemons
CAPACITY = 50
RESERVED = 20
# The second race: bookings stream in over STREAM_S seconds while
# cancellations go on, one every CANCEL_GAP_S per canceller, and the release
# is forced RELEASE_AT_S seconds in; family doctors' bookings stream in over
# FD_STREAM_S seconds from the release on.
STREAM_S = 1.2
FD_STREAM_S = 0.6
CANCEL_GAP_S = 0.05
RELEASE_AT_S = 0.3
FAMILY_DOCTORS = ("clinic", "clinic-b")
OTHERS = ("desk", "admin")


class Monitor(threading.Thread):
    """Checks the invariants in the database again and again until stopped."""

    def __init__(self, community):
        super().__init__(daemon=True)
        self.community = community
        self.stop_event = threading.Event()
        self.samples = 0
        self.violations = []
        self.error = None

    def run(self):
        try:
            while not self.stop_event.is_set():
                bad = self.community.invariant_violations()
                self.samples += 1
                if bad:
                    self.violations.append(bad)
        except Exception as e:     # reported by the test
            self.error = e

    def finish(self):
        self.stop_event.set()
        self.join(30)


class RaceTest(harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.dbname = cls.pg.create_database("slots_race")
        cls.addClassCleanup(cls.pg.drop_database, cls.dbname)
        cls.community = ss.SlotCommunity(cls.pg, "slots-race", dbname=cls.dbname)
        # Hundreds of handshakes, each a PBKDF2 check in the daemon's loop:
        # cheap hashes and a long handshake timeout keep them from being
        # what the test measures (under the sanitizers above all).
        cls.community.cheap_tokens(FAMILY_DOCTORS + OTHERS)
        settings = {
            "handshake_timeout_ms": "120000",
            "db_pool_size": "8",
            "db_queue_timeout_ms": "60000",
            "max_connections": "1000",
            "release_interval_ms": "100",
            "log_level": "info",
        }
        cls.daemons = []
        for i in range(2):
            d = ss.start_daemon(cls.pg, cls.dbname, settings, name=f"slots_race_{i}")
            cls.addClassCleanup(d.stop)
            cls.daemons.append(d)

    def setUp(self):
        self.desk = self.client("desk")

    def client(self, name, daemon=0):
        c = ss.SlotClient(self.daemons[daemon].port, timeout=30)
        self.addCleanup(c.close)
        self.assertOk(c.hello(self.community[name]), "hello")
        return c

    def publish(self, **kw):
        resp = self.desk.publish(capacity=CAPACITY, reserved_slots=RESERVED, **kw)
        self.assertOk(resp, "publish")
        return resp.publish.sessions[0]

    def swarm(self, n=CONNECTIONS):
        """n authenticated connections: alternately on each daemon, half of
        them family doctors."""
        names = []
        for i in range(n):
            group = FAMILY_DOCTORS if i % 4 < 2 else OTHERS
            names.append(group[(i // 4) % 2])
        endpoints = [(self.daemons[i % 2].port, self.community[name])
                     for i, name in enumerate(names)]
        swarm = ss.Swarm(endpoints, timeout=60)
        self.addCleanup(swarm.close)
        swarm.hello_all()
        return swarm, names

    @staticmethod
    def book_for(name, session_id, patient, request_id):
        if name in FAMILY_DOCTORS:
            return ss.book_request(session_id, patient, fallback=True, request_id=request_id)
        return ss.book_request(session_id, patient, request_id=request_id)

    def classify(self, answers, names, requests):
        """Checks every request got one answer with its id, and sorts them:
        returns (bookings: list of (name, Booking), full: count)."""
        bookings, full = [], 0
        for i, got in enumerate(answers):
            if requests[i] is None:
                self.assertEqual(got, [])
                continue
            self.assertEqual(len(got), 1, f"connection {i}: {got}")
            resp = got[0]
            self.assertEqual(resp.request_id, requests[i].request_id)
            if resp.HasField("error"):
                self.assertEqual(pb.ErrorCode.Name(resp.error.code), "FULL",
                                 f"connection {i} ({names[i]}): {resp}")
                self.assertEqual(resp.error.field, "session_id")
                full += 1
                continue
            self.assertOk(resp, "booking")
            b = resp.booking
            self.assertEqual((b.status, b.session_id, b.patient_id),
                             ("booked", requests[i].book.session_id,
                              requests[i].book.patient_id))
            if names[i] not in FAMILY_DOCTORS:
                self.assertEqual(b.pool, pb.POOL_PUBLIC, f"{names[i]} took {b}")
            bookings.append((names[i], b))
        return bookings, full

    def assertFinalState(self, session_id, acked, cancelled):
        """The database holds exactly the acknowledged bookings, live unless
        cancelled by the test, and counters equal to them."""
        rows = self.community.bookings(session_id)
        self.assertEqual(set(rows), set(acked), "bookings lost or made without an answer")
        for bid, (pool, status) in rows.items():
            self.assertEqual(status, "cancelled" if bid in cancelled else "booked", bid)
            self.assertEqual(pool, acked[bid], bid)
        live = collections.Counter(pool for bid, (pool, status) in rows.items()
                                   if status == "booked")
        row = self.community.session_row(session_id)
        self.assertEqual((row["reserved_booked"], row["public_booked"], row["emergency_booked"]),
                         (live["reserved"], live["public"], live["emergency"]), row)
        self.assertLessEqual(row["reserved_booked"], row["reserved_capacity"], row)
        self.assertLessEqual(row["public_booked"], row["capacity"] - row["reserved_capacity"],
                             row)
        self.assertEqual(self.community.invariant_violations(), [])
        return row, live

    def test_exactly_capacity_bookings_succeed(self):
        s = self.publish(resource="dr-wang")
        self.assertEqual((s.capacity, s.reserved_capacity), (CAPACITY, RESERVED))
        swarm, names = self.swarm()
        patients = self.community.patients(len(swarm))
        requests = [self.book_for(name, s.session_id, p, 1000 + i)
                    for i, (name, p) in enumerate(zip(names, patients))]
        monitor = Monitor(self.community)
        monitor.start()
        try:
            answers = swarm.exchange(requests)
        finally:
            monitor.finish()
        self.assertIsNone(monitor.error)
        self.assertEqual(monitor.violations, [])
        self.assertGreater(monitor.samples, 0)

        bookings, full = self.classify(answers, names, requests)
        pools = collections.Counter(pb.Pool.Name(b.pool) for _, b in bookings)
        self.assertEqual(dict(pools), {"POOL_RESERVED": RESERVED,
                                       "POOL_PUBLIC": CAPACITY - RESERVED})
        self.assertEqual(full, len(swarm) - CAPACITY)
        ids = [b.booking_id for _, b in bookings]
        self.assertEqual(len(set(ids)), CAPACITY, "booking ids are unique")
        # Bookings of one session are serialised: each saw the pool one
        # smaller than the one before.
        self.assertEqual(sorted(b.reserved_left for _, b in bookings
                                if b.pool == pb.POOL_RESERVED), list(range(RESERVED)))
        self.assertEqual(sorted(b.public_left for _, b in bookings
                                if b.pool == pb.POOL_PUBLIC), list(range(CAPACITY - RESERVED)))
        acked = {b.booking_id: "reserved" if b.pool == pb.POOL_RESERVED else "public"
                 for _, b in bookings}
        row, live = self.assertFinalState(s.session_id, acked, set())
        self.assertEqual((row["reserved_capacity"], row["reserved_booked"], row["public_booked"]),
                         (RESERVED, RESERVED, CAPACITY - RESERVED))
        # Both daemons took part.
        for d in self.daemons:
            self.assertTrue(d.running())
        # Full means full, for anyone.
        late = self.community.patient()
        self.assertError(self.desk.book(s.session_id, late), pb.FULL)
        self.assertError(self.client("clinic", 1).book(s.session_id, late, fallback=True),
                         pb.FULL)

    def test_race_with_cancellations_and_release(self):
        s = self.publish(resource="dr-li", department="internal")
        clinic = self.client("clinic", 1)
        pre_patients = self.community.patients(30)
        pre = {}
        for i, p in enumerate(pre_patients):
            c = clinic if i < 15 else self.desk
            resp = c.book(s.session_id, p)
            self.assertOk(resp, "booking")
            pre[resp.booking.booking_id] = ("reserved" if resp.booking.pool == pb.POOL_RESERVED
                                            else "public")
        self.assertEqual(collections.Counter(pre.values()), {"reserved": 15, "public": 15})

        swarm, names = self.swarm()
        patients = self.community.patients(len(swarm))
        requests = [self.book_for(name, s.session_id, p, 1000 + i)
                    for i, (name, p) in enumerate(zip(names, patients))]
        # Three quarters of the connections book in a stream; the rest, a
        # final burst, after the cancellations and the release. Desks book
        # all along the stream (STREAM_S seconds), family doctors from the
        # moment the release is recorded on (over FD_STREAM_S seconds):
        # until then no reserved unit is taken, so the release has units to
        # move (at least the RESERVED - 15 never booked) while public
        # bookings and cancellations go on.
        n_stream = len(swarm) * 3 // 4
        rnd = random.Random(7)
        schedule, gated = [], []
        for i in range(len(swarm)):
            if i >= n_stream:
                schedule.append(0.0)
            elif names[i] in FAMILY_DOCTORS:
                schedule.append(rnd.uniform(0, FD_STREAM_S))
                gated.append(i)
            else:
                schedule.append(rnd.uniform(0, STREAM_S))
        stream = requests[:n_stream] + [None] * (len(swarm) - n_stream)
        final = [None] * n_stream + requests[n_stream:]
        released = threading.Event()

        def watch_release():
            deadline = time.monotonic() + 60 * harness.SLOW
            while not released.is_set() and time.monotonic() < deadline:
                if self.community.releases(s.session_id):
                    released.set()
                time.sleep(0.01)

        # Two connections (one per daemon) cancel every pre-booked unit
        # during the stream, reserved ones first; at RELEASE_AT_S into it,
        # the session's release time is forced to now, and a daemon
        # releases it at its next tick.
        to_cancel = ([bid for bid, pool in pre.items() if pool == "reserved"] +
                     [bid for bid, pool in pre.items() if pool == "public"])
        cancel_results, cancel_errors = {}, []

        def cancel_some(ids, daemon, name):
            try:
                c = ss.SlotClient(self.daemons[daemon].port, timeout=60)
                try:
                    self.assertOk(c.hello(self.community[name]), "hello")
                    for bid in ids:
                        cancel_results[bid] = c.cancel(bid, "race")
                        time.sleep(CANCEL_GAP_S)
                finally:
                    c.close()
            except Exception as e:
                cancel_errors.append(e)

        threads = [
            threading.Thread(target=cancel_some, args=(to_cancel[0::2], 0, "desk")),
            threading.Thread(target=cancel_some, args=(to_cancel[1::2], 1, "admin")),
            threading.Timer(RELEASE_AT_S, self.community.set_release_at, args=([s.session_id],)),
            threading.Thread(target=watch_release),
        ]
        monitor = Monitor(self.community)
        monitor.start()
        try:
            for t in threads:
                t.start()
            answers = swarm.exchange(stream, schedule=schedule, settle=0, gate=released,
                                     gated=gated)
            for t in threads:
                t.join(60 * harness.SLOW)
            self.assertEqual(cancel_errors, [])
            harness.wait_for(lambda: self.community.releases(s.session_id), 30,
                             what="the release during the race")
            for i, got in enumerate(swarm.exchange(final)):
                answers[i] += got
        finally:
            monitor.finish()
        self.assertIsNone(monitor.error)
        self.assertEqual(monitor.violations, [])

        # Every cancellation was acknowledged, once.
        self.assertEqual(set(cancel_results), set(pre))
        for bid, resp in cancel_results.items():
            self.assertOk(resp, "booking")
            self.assertEqual((resp.booking.booking_id, resp.booking.status,
                              resp.booking.replayed), (bid, "cancelled", False))

        bookings, full = self.classify(answers, names, requests)
        # All pre-booked units were cancelled and the last wave filled the
        # session: the race's bookings are exactly the capacity.
        self.assertEqual(len(bookings), CAPACITY)
        self.assertEqual(full, len(swarm) - CAPACITY)
        acked = dict(pre)
        acked.update({b.booking_id: "reserved" if b.pool == pb.POOL_RESERVED else "public"
                      for _, b in bookings})
        self.assertEqual(len(acked), len(pre) + CAPACITY, "booking ids are unique")
        row, live = self.assertFinalState(s.session_id, acked, set(pre))
        self.assertEqual(live["reserved"] + live["public"], CAPACITY)
        # Released once; after the release the reserved pool holds only
        # booked units.
        [(sid, released_count)] = self.community.releases(s.session_id)
        self.assertEqual(sid, s.session_id)
        self.assertTrue(row["released"])
        self.assertEqual(row["released_count"], released_count)
        self.assertGreaterEqual(released_count, RESERVED - 15)
        self.assertEqual(row["reserved_capacity"], row["reserved_booked"])
        self.assertEqual(row["capacity"], CAPACITY)
        self.assertEqual(row["reserved_initial"], RESERVED)
        c = harness.sql_literal(self.community.community_id)
        summary = self.community.psql(f"""
SELECT count(*) FILTER (WHERE b.created_at < s.released_at),
       count(*) FILTER (WHERE b.created_at > s.released_at),
       count(*) FILTER (WHERE b.cancelled_at > s.released_at)
  FROM bookings b JOIN sessions s USING (community_id, session_id)
 WHERE b.community_id = {c} AND b.session_id = {s.session_id}""")
        print(f"race: bookings before / after the release, cancellations after it: "
              f"{summary}; released {released_count}; monitor samples {monitor.samples}",
              file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
