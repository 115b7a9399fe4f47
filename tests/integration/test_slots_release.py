#!/usr/bin/python3
"""Release: at the release time, unbooked reserved units of a session go to
the public pool, exactly once, recorded in table releases; several daemons
on one database share the work without releasing anything twice; sessions
that fell due while no daemon ran are released as soon as one starts.

Every class works in a database of its own: any daemon of the suite runs a
release timer over its whole database, and these tests must know which
daemons touch theirs."""

import re
import time
import unittest

import harness
from harness import pb
import slots_support as ss
from slots_support import DAY, HOUR, future

RELEASED_LINE = re.compile(r"released (\d+) reserved unit\(s\) of session ([^/\s]+)/(\d+)")


def released_in_log(daemon):
    """session id -> list of counts the daemon logged releasing."""
    out = {}
    for m in RELEASED_LINE.finditer(daemon.log()):
        out.setdefault(int(m.group(3)), []).append(int(m.group(1)))
    return out


class ReleaseTest(ss.SlotsTestCase):
    private_database = True
    daemon_settings = {"release_interval_ms": "100"}

    def test_release_moves_exactly_the_unbooked_reserved_units(self):
        desk = self.authed("desk")
        clinic = self.authed("clinic")
        s1 = self.publish_one(desk, capacity=10)                        # reserved 4
        s2 = self.publish_one(desk, capacity=10, start=future(days=4))  # not due
        s3 = self.publish_one(desk, capacity=5,                         # reserved 2, all booked
                              start=future(days=3, hour=15))
        p = self.community.patients(10)
        self.assertBooked(clinic.book(s1.session_id, p[0]), pb.POOL_RESERVED)
        self.assertBooked(desk.book(s1.session_id, p[1]), pb.POOL_PUBLIC)
        self.assertBooked(desk.book(s1.session_id, p[2]), pb.POOL_PUBLIC)
        self.assertBooked(clinic.book(s3.session_id, p[0]), pb.POOL_RESERVED)
        self.assertBooked(clinic.book(s3.session_id, p[1]), pb.POOL_RESERVED)
        # Several ticks: nothing is due yet.
        time.sleep(0.5)
        self.assertEqual(self.community.releases(), [])

        self.community.set_release_at([s1.session_id, s3.session_id])
        harness.wait_for(lambda: len(self.community.releases()) == 2, 15,
                         what="two releases")
        self.assertEqual(self.community.releases(), [(s1.session_id, 3), (s3.session_id, 0)])
        self.assertCounters(s1.session_id, capacity=10, reserved_initial=4, reserved_capacity=1,
                            reserved_booked=1, public_booked=2, released_count=3,
                            released=True)
        self.assertCounters(s3.session_id, capacity=5, reserved_initial=2, reserved_capacity=2,
                            reserved_booked=2, public_booked=0, released_count=0,
                            released=True)
        self.assertCounters(s2.session_id, reserved_capacity=4, released=False)
        # The release is recorded with when it was due.
        c = harness.sql_literal(self.community.community_id)
        self.assertEqual(self.community.psql(
            "SELECT count(*) FROM releases r JOIN sessions s USING (community_id, session_id) "
            f"WHERE r.community_id = {c} AND r.due_at = s.release_at "
            "AND r.released_at = s.released_at AND r.released_count = s.released_count"), "2")
        # What clients see.
        got = desk.session(s1.session_id, "dr-wang")
        self.assertEqual((got.released, got.reserved_initial, got.reserved_capacity,
                          got.reserved_left, got.public_left), (True, 4, 1, 0, 7))
        # The unit that was reserved is public now: the desk gets it, the
        # family doctor only with fallback.
        self.assertError(clinic.book(s1.session_id, p[3]), pb.FULL)
        self.assertBooked(clinic.book(s1.session_id, p[3], fallback=True), pb.POOL_PUBLIC)
        for i in range(4, 10):
            self.assertBooked(desk.book(s1.session_id, p[i]), pb.POOL_PUBLIC)
        # 1 reserved + 9 public: full.
        self.assertError(desk.book(s1.session_id, self.community.patient()), pb.FULL)
        self.assertError(clinic.book(s1.session_id, self.community.patient(), fallback=True),
                         pb.FULL)
        self.assertCounters(s1.session_id, reserved_booked=1, public_booked=9,
                            reserved_capacity=1)
        # Once: more ticks change nothing.
        time.sleep(0.6)
        self.assertEqual(self.community.releases(), [(s1.session_id, 3), (s3.session_id, 0)])
        self.assertEqual(released_in_log(self.daemon), {s1.session_id: [3], s3.session_id: [0]})
        self.assertCounters(s1.session_id, reserved_capacity=1, released_count=3)
        # Growing a released session keeps its reserved pool as it is.
        resp = desk.change_capacity(s1.session_id, 12)
        self.assertOk(resp, "session")
        self.assertEqual((resp.session.capacity, resp.session.reserved_capacity,
                          resp.session.reserved_initial, resp.session.public_left), (12, 1, 4, 2))
        self.assertConsistent()

    def test_cancelled_sessions_are_not_released(self):
        desk = self.authed("desk")
        s = self.publish_one(desk, capacity=10, resource="dr-li", department="internal")
        self.assertOk(desk.cancel_session(s.session_id, "expert ill"), "cancel_session")
        self.community.set_release_at([s.session_id])
        time.sleep(0.6)
        self.assertEqual(self.community.releases(s.session_id), [])
        self.assertCounters(s.session_id, reserved_capacity=4, released=False)


class LeadTimeTest(ss.SlotsTestCase):
    """The release time is the start minus the community's lead per kind."""

    private_database = True
    daemon_settings = {"release_interval_ms": "100"}
    # Expert: 3 days; exam: 1 hour; bed: 0 (released at the start).
    community_options = {"lead_expert_min": 3 * 24 * 60, "lead_exam_min": 60,
                         "lead_bed_min": 0}

    def test_lead_per_kind(self):
        desk = self.authed("desk")
        clinic = self.authed("clinic")
        soon = future(days=2)
        far = future(days=5)
        e_soon = self.publish_one(desk, capacity=10, start=soon)       # due 1 day ago
        e_far = self.publish_one(desk, capacity=10, start=far)         # due in 2 days
        x_soon = self.publish_one(desk, capacity=10, kind=pb.KIND_EXAM, department="radiology",
                                  resource="ct-1", start=soon)        # due in ~2 days
        b_soon = self.publish_one(desk, capacity=10, kind=pb.KIND_BED, department="internal",
                                  resource="ward-3", start=soon)
        c = harness.sql_literal(self.community.community_id)
        leads = self.community.psql(
            "SELECT session_id, extract(epoch FROM starts_at - release_at)::bigint FROM sessions "
            f"WHERE community_id = {c} ORDER BY session_id")
        self.assertEqual(leads.splitlines(), [
            f"{e_soon.session_id}|{3 * DAY}", f"{e_far.session_id}|{3 * DAY}",
            f"{x_soon.session_id}|{HOUR}", f"{b_soon.session_id}|0"])
        # Published inside its lead: released at the next tick, all 4 units.
        harness.wait_for(lambda: self.community.releases(), 15, what="a release")
        time.sleep(0.5)
        self.assertEqual(self.community.releases(), [(e_soon.session_id, 4)])
        got = clinic.session(e_soon.session_id, "dr-wang")
        self.assertEqual((got.released, got.reserved_capacity, got.reserved_left,
                          got.public_left), (True, 0, 0, 10))
        self.assertError(clinic.book(e_soon.session_id, self.community.patient()), pb.FULL)
        self.assertBooked(clinic.book(e_soon.session_id, self.community.patient(),
                                      fallback=True), pb.POOL_PUBLIC)
        for s in (e_far, x_soon, b_soon):
            self.assertCounters(s.session_id, released=False, reserved_capacity=4)


class ConcurrentDaemonsTest(harness.IntegrationCase):
    """Three daemons on one database release a thousand sessions falling
    due at the same moment: each exactly once."""

    SESSIONS = 1200     # more than two batches of 500

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.dbname = cls.pg.create_database("slots_rel3")
        cls.addClassCleanup(cls.pg.drop_database, cls.dbname)
        cls.community = ss.SlotCommunity(cls.pg, "slots-release-3", dbname=cls.dbname)
        cls.daemons = []
        for i in range(3):
            d = ss.start_daemon(cls.pg, cls.dbname, {"release_interval_ms": "100",
                                                     "log_level": "info"},
                                name=f"slots_release_{i}")
            cls.addClassCleanup(d.stop)
            cls.daemons.append(d)

    def test_each_session_released_exactly_once(self):
        desk = ss.SlotClient(self.daemons[0].port)
        self.addCleanup(desk.close)
        self.assertOk(desk.hello(self.community["desk"]), "hello")
        base = future(days=3, hour=0)
        sessions = []
        half = self.SESSIONS // 2
        for device in ("ct-1", "mri-1"):
            times = [(base + i * 60, base + i * 60 + 1800) for i in range(half)]
            resp = desk.publish(kind=pb.KIND_EXAM, department="radiology", resource=device,
                                capacity=10, times=times)
            self.assertOk(resp, "publish")
            sessions += [s.session_id for s in resp.publish.sessions]
        self.assertEqual(len(set(sessions)), self.SESSIONS)
        # A reserved booking in every 7th session: those release 3 units, the rest 4.
        booked = sessions[::7]
        patients = self.community.patients(len(booked))
        clinic = ss.SlotClient(self.daemons[1].port, timeout=30)
        self.addCleanup(clinic.close)
        self.assertOk(clinic.hello(self.community["clinic"]), "hello")
        reqs = [ss.book_request(sid, p, request_id=i + 1)
                for i, (sid, p) in enumerate(zip(booked, patients))]
        clinic.send_raw(b"".join(harness.frame(r.SerializeToString()) for r in reqs))
        for _ in reqs:
            resp = clinic.recv()
            self.assertOk(resp, "booking")
            self.assertEqual(resp.booking.pool, pb.POOL_RESERVED)
        self.assertEqual(self.community.releases(), [])

        # All due at the same moment, a second from now.
        c = harness.sql_literal(self.community.community_id)
        self.community.psql(f"UPDATE sessions SET release_at = now() + interval '1 second' "
                            f"WHERE community_id = {c}")
        count_sql = f"SELECT count(*) FROM releases WHERE community_id = {c}"
        harness.wait_for(lambda: int(self.community.psql(count_sql)) >= self.SESSIONS, 60,
                         interval=0.1, what=f"{self.SESSIONS} releases")
        time.sleep(0.5)     # more ticks of every daemon

        rows = self.community.releases()
        self.assertEqual(len(rows), self.SESSIONS)
        per_session = {}
        for sid, n in rows:
            per_session.setdefault(sid, []).append(n)
        booked_set = set(booked)
        expected = {sid: [3 if sid in booked_set else 4] for sid in sessions}
        self.assertEqual(per_session, expected)
        # The sessions agree with the record.
        self.assertEqual(self.community.psql(
            "SELECT count(*) FROM sessions s JOIN releases r USING (community_id, session_id) "
            f"WHERE s.community_id = {c} AND s.released_at IS NOT NULL "
            "AND s.released_count = r.released_count AND s.reserved_capacity = s.reserved_booked "
            "AND s.released_at = r.released_at"), str(self.SESSIONS))
        # Every release was logged by exactly one daemon, none failed.
        logged = {}
        for d in self.daemons:
            for sid, counts in released_in_log(d).items():
                logged.setdefault(sid, []).extend(counts)
            self.assertNotRegex(d.log(), r"release: \w+:", f"a release failed in {d.log_path}")
        self.assertEqual(logged, expected)
        self.assertEqual(self.community.invariant_violations(), [])


class CatchUpTest(harness.IntegrationCase):
    """Sessions that fell due while no daemon ran are released when one
    starts, at once, not one interval later."""

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.dbname = cls.pg.create_database("slots_catchup")
        cls.addClassCleanup(cls.pg.drop_database, cls.dbname)
        cls.community = ss.SlotCommunity(cls.pg, "slots-catchup", dbname=cls.dbname)

    def test_release_on_start(self):
        # An hour between ticks: only the tick at start can release anything.
        settings = {"release_interval_ms": "3600000"}
        first = ss.start_daemon(self.pg, self.dbname, settings, name="slots_catchup_a")
        self.addCleanup(first.stop)
        desk = ss.SlotClient(first.port)
        self.addCleanup(desk.close)
        self.assertOk(desk.hello(self.community["desk"]), "hello")
        clinic = ss.SlotClient(first.port)
        self.addCleanup(clinic.close)
        self.assertOk(clinic.hello(self.community["clinic"]), "hello")
        start = future(days=3)
        ids = []
        for i in range(5):
            resp = desk.publish(capacity=10, start=start + i * HOUR, length=HOUR)
            self.assertOk(resp, "publish")
            ids.append(resp.publish.sessions[0].session_id)
        resp = clinic.book(ids[0], self.community.patient())
        self.assertOk(resp, "booking")
        self.assertEqual(resp.booking.pool, pb.POOL_RESERVED)
        desk.close()
        clinic.close()
        first.stop()

        # While no daemon runs, four of them fall due.
        self.community.set_release_at(ids[:4], "now() - interval '2 hours'")
        time.sleep(0.2)
        self.assertEqual(self.community.releases(), [])

        t0 = time.monotonic()
        second = ss.start_daemon(self.pg, self.dbname, settings, name="slots_catchup_b")
        self.addCleanup(second.stop)
        harness.wait_for(lambda: len(self.community.releases()) >= 4, 15,
                         what="the catch-up release")
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 15 * harness.SLOW)
        self.assertEqual(self.community.releases(),
                         [(ids[0], 3), (ids[1], 4), (ids[2], 4), (ids[3], 4)])
        c = harness.sql_literal(self.community.community_id)
        # Recorded as due two hours ago, released now.
        self.assertEqual(self.community.psql(
            "SELECT count(*) FROM releases r JOIN sessions s USING (community_id, session_id) "
            f"WHERE r.community_id = {c} AND r.due_at = s.release_at "
            "AND r.released_at - r.due_at > interval '119 minutes'"), "4")
        row = self.community.session_row(ids[4])
        self.assertEqual((row["released"], row["reserved_capacity"]), (False, 4))
        self.assertEqual(released_in_log(second),
                         {ids[0]: [3], ids[1]: [4], ids[2]: [4], ids[3]: [4]})
        self.assertEqual(released_in_log(first), {})


if __name__ == "__main__":
    unittest.main()
