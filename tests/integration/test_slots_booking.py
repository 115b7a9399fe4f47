#!/usr/bin/python3
"""Booking: which pool a booking takes (family doctors reserved first, others
public), idempotency keys (replays, conflicts, replayed refusals), patient
conflicts, cancellation returning units to their pool (to public after the
release), audited emergency overbooking (for green-channel referrals), the
referral requirement of Yunnan (a real up-referral of the patient), listing
bookings, and referralctl's slot commands.

Referral ids on bookings name real referrals, made through the daemon with
ReferUp (refer() below): a booking's referral must be a live up-referral of
the same patient to the session's institution, an emergency booking's an
urgent or emergency one."""

import json
import re
import subprocess
import threading
import unittest
import uuid

import harness
from harness import pb
import referrals_support as rs
import slots_support as ss
from slots_support import HOUR, future


def refer(case, patient, urgency=pb.URGENCY_ROUTINE, terminal="clinic"):
    """A real up-referral of the patient to county-hospital (cardiology),
    made by a clinic terminal through the daemon; returns its id."""
    c = rs.ReferralClient(case.daemon.port)
    case.addCleanup(c.close)
    case.assertOk(c.hello(case.community[terminal]), "hello")
    resp = c.refer_up(patient, urgency=urgency)
    case.assertOk(resp, "referral")
    return resp.referral.referral_id


def detail(resp):
    """A FULL message without its '(reserved left .., public left ..)' tail."""
    return re.sub(r"\s*\(reserved left \d+, public left \d+\)$", "", resp.error.message)


class PoolChoiceTest(ss.SlotsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_family_doctor_takes_reserved_first(self):
        s = self.publish_one(self.desk, capacity=5)     # reserved 2, public 3
        p = self.community.patients(7)
        b = self.assertBooked(self.clinic.book(s.session_id, p[0]), pb.POOL_RESERVED)
        self.assertEqual((b.reserved_left, b.public_left, b.replayed, b.session_id,
                          b.patient_id, b.booked_by_institution),
                         (1, 3, False, s.session_id, p[0], "village-a"))
        self.assertTrue(ss.is_uuid(b.booking_id), b.booking_id)
        # Fallback allowed, but reserved still has room: reserved it is.
        b = self.assertBooked(self.clinic.book(s.session_id, p[1], fallback=True),
                              pb.POOL_RESERVED)
        self.assertEqual((b.reserved_left, b.public_left), (0, 3))
        # Reserved full, no fallback: FULL, although public has room.
        resp = self.clinic.book(s.session_id, p[2])
        self.assertError(resp, pb.FULL, field="session_id")
        self.assertIn("reserved", resp.error.message)
        resp = self.clinic.book(s.session_id, p[2], pool=pb.POOL_RESERVED)
        self.assertError(resp, pb.FULL, field="session_id")
        # With fallback: a public unit.
        b = self.assertBooked(self.clinic.book(s.session_id, p[2], fallback=True),
                              pb.POOL_PUBLIC)
        self.assertEqual((b.reserved_left, b.public_left), (0, 2))
        b = self.assertBooked(self.clinic.book(s.session_id, p[3], pool=pb.POOL_RESERVED,
                                               fallback=True), pb.POOL_PUBLIC)
        # A family doctor may ask for public directly.
        b = self.assertBooked(self.clinic.book(s.session_id, p[4], pool=pb.POOL_PUBLIC),
                              pb.POOL_PUBLIC)
        self.assertEqual((b.reserved_left, b.public_left), (0, 0))
        # Everything taken.
        self.assertError(self.clinic.book(s.session_id, p[5], fallback=True), pb.FULL,
                         field="session_id")
        self.assertError(self.desk.book(s.session_id, p[6]), pb.FULL, field="session_id")
        self.assertCounters(s.session_id, capacity=5, reserved_capacity=2, reserved_booked=2,
                            public_booked=3, emergency_booked=0)
        self.assertEqual(self.community.live_counts(s.session_id),
                         {"reserved": 2, "public": 3, "emergency": 0})
        self.assertConsistent()

    def test_desk_takes_public(self):
        s = self.publish_one(self.desk, capacity=4)     # reserved 2, public 2
        p = self.community.patients(5)
        b = self.assertBooked(self.desk.book(s.session_id, p[0]), pb.POOL_PUBLIC)
        self.assertEqual((b.reserved_left, b.public_left, b.booked_by_institution),
                         (2, 1, "county-hospital"))
        # The reserved pool is for family doctors only.
        resp = self.desk.book(s.session_id, p[1], pool=pb.POOL_RESERVED)
        self.assertError(resp, pb.PERMISSION_DENIED, field="pool")
        resp = self.desk.book(s.session_id, p[1], pool=pb.POOL_RESERVED, fallback=True)
        self.assertError(resp, pb.PERMISSION_DENIED, field="pool")
        admin = self.authed("admin")
        self.assertError(admin.book(s.session_id, p[1], pool=pb.POOL_RESERVED),
                         pb.PERMISSION_DENIED, field="pool")
        # Admins book public like desks.
        self.assertBooked(admin.book(s.session_id, p[1]), pb.POOL_PUBLIC)
        # Public full: FULL for the desk, though reserved units are left.
        resp = self.desk.book(s.session_id, p[2], pool=pb.POOL_PUBLIC)
        self.assertError(resp, pb.FULL, field="session_id")
        self.assertIn("public", resp.error.message)
        self.assertError(self.desk.book(s.session_id, p[2], fallback=True), pb.FULL)
        # ... which the family doctor still gets.
        self.assertBooked(self.clinic.book(s.session_id, p[2]), pb.POOL_RESERVED)
        self.assertCounters(s.session_id, reserved_booked=1, public_booked=2)
        self.assertConsistent()

    def test_arguments(self):
        s = self.publish_one(self.desk, capacity=4)
        p = self.community.patient()
        cases = [
            ("patient not a uuid", ss.book_request(s.session_id, "patient-1"),
             pb.INVALID_ARGUMENT, "patient_id"),
            ("patient missing", ss.book_request(s.session_id, ""),
             pb.INVALID_ARGUMENT, "patient_id"),
            ("referral not a uuid", ss.book_request(s.session_id, p, referral="ref-1"),
             pb.INVALID_ARGUMENT, "referral_id"),
            ("no idempotency key", ss.book_request(s.session_id, p, key=""),
             pb.INVALID_ARGUMENT, "idempotency_key"),
            ("idempotency key too long", ss.book_request(s.session_id, p, key="k" * 129),
             pb.INVALID_ARGUMENT, "idempotency_key"),
            ("pool emergency", ss.book_request(s.session_id, p, pool=pb.POOL_EMERGENCY),
             pb.INVALID_ARGUMENT, "pool"),
            ("pool unknown", ss.book_request(s.session_id, p, pool=17),
             pb.INVALID_ARGUMENT, "pool"),
            ("unknown session", ss.book_request(987654321, p), pb.NOT_FOUND, "session_id"),
            ("unknown patient", ss.book_request(s.session_id, str(uuid.uuid4())),
             pb.NOT_FOUND, "patient_id"),
        ]
        for what, req, code, field in cases:
            with self.subTest(what):
                self.assertError(self.clinic.call(req), code, field=field)
        # A key of exactly 128 bytes is fine.
        self.assertBooked(self.clinic.book(s.session_id, p, key="k" * 128))
        # A patient of another community is unknown here.
        self.assertError(self.clinic.book(s.session_id, self.community.foreign_patient()),
                         pb.NOT_FOUND, field="patient_id")
        for name in ("monitor", "billing"):
            with self.subTest(role=name):
                self.assertError(self.authed(name).book(s.session_id, p), pb.PERMISSION_DENIED)
        self.assertConsistent()

    def test_started_session_is_closed(self):
        s = self.publish_one(self.desk, capacity=4)
        self.community.psql(
            "UPDATE sessions SET starts_at = now() - interval '1 minute', "
            "ends_at = now() + interval '1 hour' "
            f"WHERE community_id = {harness.sql_literal(self.community.community_id)} "
            f"AND session_id = {s.session_id}")
        resp = self.clinic.book(s.session_id, self.community.patient())
        self.assertError(resp, pb.FAILED_PRECONDITION, field="session_id")
        self.assertIn("started", resp.error.message)
        self.assertError(self.desk.change_capacity(s.session_id, 6), pb.FAILED_PRECONDITION)


class IdempotencyTest(ss.SlotsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_same_key_same_request_is_replayed(self):
        s = self.publish_one(self.desk, capacity=4)
        p = self.community.patients(2)
        key = ss.new_key()
        first = self.assertBooked(self.clinic.book(s.session_id, p[0], key=key),
                                  pb.POOL_RESERVED)
        self.assertFalse(first.replayed)
        # Another connection of the same terminal (a retry after a lost answer).
        again = self.authed("clinic")
        for c in (self.clinic, again):
            b = self.assertBooked(c.book(s.session_id, p[0], key=key), pb.POOL_RESERVED)
            self.assertEqual((b.booking_id, b.replayed, b.session_id, b.patient_id),
                             (first.booking_id, True, s.session_id, p[0]))
            self.assertEqual((b.reserved_left, b.public_left), (1, 2))
        # One booking, counted once.
        self.assertEqual(self.community.live_counts(s.session_id),
                         {"reserved": 1, "public": 0, "emergency": 0})
        self.assertCounters(s.session_id, reserved_booked=1, public_booked=0)
        # The same key on another terminal is another key.
        other = self.authed("clinic-b")
        b = self.assertBooked(other.book(s.session_id, p[1], key=key), pb.POOL_RESERVED)
        self.assertNotEqual(b.booking_id, first.booking_id)
        self.assertFalse(b.replayed)
        self.assertConsistent()

    def test_same_key_other_request_conflicts(self):
        s = self.publish_one(self.desk, capacity=4)
        s2 = self.publish_one(self.desk, capacity=4, resource="dr-li", department="internal",
                              start=s.starts_at + 10 * HOUR)
        p = self.community.patients(2)
        key = ss.new_key()
        first = self.assertBooked(self.clinic.book(s.session_id, p[0], key=key))
        variants = [
            ("other patient", dict(session_id=s.session_id, patient_id=p[1])),
            ("other session", dict(session_id=s2.session_id, patient_id=p[0])),
            ("other pool", dict(session_id=s.session_id, patient_id=p[0],
                                pool=pb.POOL_PUBLIC)),
            ("fallback", dict(session_id=s.session_id, patient_id=p[0], fallback=True)),
            ("referral", dict(session_id=s.session_id, patient_id=p[0],
                              referral=str(uuid.uuid4()))),
        ]
        for what, kw in variants:
            with self.subTest(what):
                resp = self.clinic.book(key=key, **kw)
                self.assertError(resp, pb.CONFLICT, field="idempotency_key")
        self.assertEqual(len(self.community.bookings(s.session_id)), 1)
        self.assertEqual(len(self.community.bookings(s2.session_id)), 0)
        # The original request still replays.
        b = self.assertBooked(self.clinic.book(s.session_id, p[0], key=key))
        self.assertEqual((b.booking_id, b.replayed), (first.booking_id, True))

    def test_refusal_is_replayed(self):
        s = self.publish_one(self.desk, capacity=2)     # reserved 1, public 1
        p = self.community.patients(3)
        taken = self.assertBooked(self.desk.book(s.session_id, p[0]), pb.POOL_PUBLIC)
        key = ss.new_key()
        refused = self.desk.book(s.session_id, p[1], key=key)
        self.assertError(refused, pb.FULL, field="session_id")
        # Room again: a fresh request would succeed, the key still says FULL.
        self.assertOk(self.desk.cancel(taken.booking_id), "booking")
        replay = self.desk.book(s.session_id, p[1], key=key)
        self.assertError(replay, pb.FULL, field="session_id")
        self.assertEqual(detail(replay), detail(refused))
        self.assertBooked(self.desk.book(s.session_id, p[1]), pb.POOL_PUBLIC)
        # Other refusals replay too: PERMISSION_DENIED ...
        key2 = ss.new_key()
        resp = self.desk.book(s.session_id, p[2], pool=pb.POOL_RESERVED, key=key2)
        self.assertError(resp, pb.PERMISSION_DENIED, field="pool")
        resp2 = self.desk.book(s.session_id, p[2], pool=pb.POOL_RESERVED, key=key2)
        self.assertError(resp2, pb.PERMISSION_DENIED, field="pool")
        self.assertEqual(resp2.error.message, resp.error.message)
        # ... and a patient conflict, even after the conflict is gone.
        key3 = ss.new_key()
        resp = self.clinic.book(s.session_id, p[1], key=key3)
        self.assertError(resp, pb.CONFLICT, field="patient_id")
        live = [bid for bid, (_, st) in self.community.bookings(s.session_id).items()
                if st == "booked"]
        self.assertEqual(len(live), 1)
        self.assertOk(self.desk.cancel(live[0]), "booking")
        resp2 = self.clinic.book(s.session_id, p[1], key=key3)
        self.assertError(resp2, pb.CONFLICT, field="patient_id")
        self.assertEqual(resp2.error.message, resp.error.message)
        self.assertConsistent()

    def test_replay_after_cancel_tells_the_truth(self):
        """A retry of a booking that has been cancelled since names the same
        booking, and says it is cancelled."""
        s = self.publish_one(self.desk, capacity=4)
        p = self.community.patient()
        key = ss.new_key()
        first = self.assertBooked(self.clinic.book(s.session_id, p, key=key))
        self.assertOk(self.clinic.cancel(first.booking_id), "booking")
        resp = self.clinic.book(s.session_id, p, key=key)
        self.assertOk(resp, "booking")
        self.assertEqual((resp.booking.booking_id, resp.booking.replayed),
                         (first.booking_id, True))
        self.assertEqual(self.community.bookings(s.session_id)[first.booking_id],
                         ("reserved", "cancelled"))
        self.assertEqual(resp.booking.status, "cancelled", resp)

    def test_concurrent_retries_of_one_key(self):
        """The same request with the same key on many connections at once:
        one booking, every answer names it, exactly one is not a replay."""
        s = self.publish_one(self.desk, capacity=10)
        p = self.community.patient()
        key = ss.new_key()
        swarm = ss.Swarm([(self.daemon.port, self.community["clinic"])] * 12)
        self.addCleanup(swarm.close)
        swarm.hello_all()
        answers = swarm.exchange([ss.book_request(s.session_id, p, key=key, request_id=7)
                                  for _ in range(len(swarm))])
        ids, fresh = set(), 0
        for [resp] in answers:
            b = self.assertBooked(resp, pb.POOL_RESERVED)
            ids.add(b.booking_id)
            fresh += not b.replayed
        self.assertEqual(len(ids), 1, ids)
        self.assertEqual(fresh, 1)
        self.assertEqual(list(self.community.bookings(s.session_id)), list(ids))
        self.assertCounters(s.session_id, reserved_booked=1, public_booked=0)


class PatientConflictTest(ss.SlotsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_same_and_overlapping_sessions(self):
        start = future(days=4)
        s = self.publish_one(self.desk, capacity=4, start=start, length=4 * HOUR)
        overlap = self.publish_one(self.desk, capacity=4, resource="dr-li",
                                   department="internal", start=start + 2 * HOUR,
                                   length=2 * HOUR)
        later = self.publish_one(self.desk, capacity=4, resource="dr-li",
                                 department="internal", start=start + 4 * HOUR,
                                 length=2 * HOUR)
        exam = self.publish_one(self.desk, capacity=4, kind=pb.KIND_EXAM,
                                department="radiology", resource="ct-1", start=start + HOUR)
        p = self.community.patient()
        first = self.assertBooked(self.clinic.book(s.session_id, p))
        # The same session again, by anyone.
        for c in (self.clinic, self.desk):
            resp = c.book(s.session_id, p)
            self.assertError(resp, pb.CONFLICT, field="patient_id")
            self.assertIn(first.booking_id, resp.error.message)
        # An overlapping session of the same kind.
        resp = self.clinic.book(overlap.session_id, p, fallback=True)
        self.assertError(resp, pb.CONFLICT, field="patient_id")
        self.assertIn(first.booking_id, resp.error.message)
        # Back to back (ranges are half-open) and another kind are fine.
        self.assertBooked(self.clinic.book(later.session_id, p))
        self.assertBooked(self.desk.book(exam.session_id, p))
        # Once the first is cancelled, the overlapping one can be booked.
        self.assertOk(self.clinic.cancel(first.booking_id), "booking")
        self.assertBooked(self.clinic.book(overlap.session_id, p, pool=pb.POOL_PUBLIC))
        self.assertConsistent()

    def test_overlapping_sessions_at_once(self):
        """The same patient booked into two overlapping sessions at once (no
        common row lock): one is booked, the other is the same CONFLICT as
        without the race (field patient_id, naming the booking), never an
        internal error. A lock on the patient's row holds both bookings
        after their conflict check (the first in its foreign key check, the
        second, sent a moment later, behind the first's uncommitted row), so
        the race is certain."""
        start = future(days=4, hour=1)
        a = self.publish_one(self.desk, capacity=4, start=start)
        b = self.publish_one(self.desk, capacity=4, resource="dr-li",
                             department="internal", start=start + HOUR)
        p = self.community.patient()
        swarm = ss.Swarm([(self.daemon.port, self.community["clinic"]),
                          (self.daemon.port, self.community["desk"])])
        self.addCleanup(swarm.close)
        swarm.hello_all()
        lock = harness.PsqlSession(self.pg, self.dbname)
        self.addCleanup(lock.close)
        [lock_pid] = lock.run("SELECT pg_backend_pid();")
        lock.run("BEGIN; SELECT 1 FROM patients WHERE community_id = "
                 f"{harness.sql_literal(self.community.community_id)} "
                 f"AND patient_id = {harness.sql_literal(p)} FOR UPDATE;")
        result = {}

        def fire():
            result["answers"] = swarm.exchange([
                ss.book_request(a.session_id, p, fallback=True, request_id=11),
                ss.book_request(b.session_id, p, request_id=12)], settle=0,
                schedule=[0, 0.05])

        t = threading.Thread(target=fire)
        t.start()
        try:
            harness.wait_for(
                lambda: ss.blocked_by(self.pg, self.dbname, lock_pid) >= 2 or not t.is_alive(),
                20, interval=0.02, what="both bookings waiting behind the lock")
        finally:
            lock.run("ROLLBACK;")
            t.join(60)
        answers = [resp for [resp] in result["answers"]]
        outcomes = sorted(resp.WhichOneof("body") or pb.ErrorCode.Name(resp.error.code)
                          for resp in answers)
        self.assertEqual(outcomes, ["CONFLICT", "booking"], answers)
        self.assertEqual(len(self.community.bookings(a.session_id)) +
                         len(self.community.bookings(b.session_id)), 1)
        self.assertConsistent()
        [won] = [r.booking for r in answers if r.HasField("booking")]
        [lost] = [r for r in answers if r.HasField("error")]
        self.assertError(lost, pb.CONFLICT, field="patient_id")
        self.assertIn(won.booking_id, lost.error.message)

    def test_emergency_for_a_patient_already_booked(self):
        """An emergency booking for a patient who already holds a booking in
        the session (or an overlapping one) is a CONFLICT like any other."""
        s = self.publish_one(self.desk, capacity=2)
        p = self.community.patient()
        first = self.assertBooked(self.clinic.book(s.session_id, p))
        resp = self.desk.emergency(s.session_id, p,
                                   referral=refer(self, p, pb.URGENCY_URGENT))
        self.assertEqual(pb.ErrorCode.Name(resp.error.code), "CONFLICT", resp)
        self.assertCounters(s.session_id, emergency_booked=0, reserved_booked=1)
        self.assertEqual(list(self.community.bookings(s.session_id)), [first.booking_id])
        self.assertError(resp, pb.CONFLICT, field="patient_id")
        self.assertIn(first.booking_id, resp.error.message)


class CancelTest(ss.SlotsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_cancel_returns_the_unit_to_its_pool(self):
        s = self.publish_one(self.desk, capacity=4)     # reserved 2, public 2
        p = self.community.patients(6)
        r1 = self.assertBooked(self.clinic.book(s.session_id, p[0]), pb.POOL_RESERVED)
        self.assertBooked(self.clinic.book(s.session_id, p[1]), pb.POOL_RESERVED)
        u1 = self.assertBooked(self.desk.book(s.session_id, p[2]), pb.POOL_PUBLIC)
        self.assertBooked(self.desk.book(s.session_id, p[3]), pb.POOL_PUBLIC)
        self.assertError(self.clinic.book(s.session_id, p[4], fallback=True), pb.FULL)

        resp = self.clinic.cancel(r1.booking_id, "patient feels better")
        self.assertOk(resp, "booking")
        self.assertEqual((resp.booking.booking_id, resp.booking.session_id, resp.booking.pool,
                          resp.booking.status, resp.booking.replayed),
                         (r1.booking_id, s.session_id, pb.POOL_RESERVED, "cancelled", False))
        self.assertCounters(s.session_id, reserved_capacity=2, reserved_booked=1,
                            public_booked=2)
        # The freed unit is reserved: the desk cannot have it ...
        self.assertError(self.desk.book(s.session_id, p[4]), pb.FULL)
        # ... a family doctor can.
        self.assertBooked(self.clinic.book(s.session_id, p[4]), pb.POOL_RESERVED)

        resp = self.desk.cancel(u1.booking_id)
        self.assertOk(resp, "booking")
        self.assertEqual((resp.booking.pool, resp.booking.status), (pb.POOL_PUBLIC, "cancelled"))
        self.assertBooked(self.desk.book(s.session_id, p[5]), pb.POOL_PUBLIC)

        # Cancelling twice is harmless: the same answer, marked replayed,
        # and the counters do not move.
        before = self.community.session_row(s.session_id)
        for c in (self.clinic, self.desk):
            resp = c.cancel(r1.booking_id, "again")
            self.assertOk(resp, "booking")
            self.assertEqual((resp.booking.booking_id, resp.booking.pool, resp.booking.status,
                              resp.booking.replayed),
                             (r1.booking_id, pb.POOL_RESERVED, "cancelled", True))
        self.assertEqual(self.community.session_row(s.session_id), before)
        # The first reason is kept.
        resp = self.desk.list_bookings(session_id=s.session_id, include_cancelled=True)
        self.assertOk(resp, "bookings")
        reasons = {b.booking_id: (b.status, b.cancel_reason) for b in resp.bookings.bookings}
        self.assertEqual(reasons[r1.booking_id], ("cancelled", "patient feels better"))
        self.assertEqual(reasons[u1.booking_id], ("cancelled", ""))
        self.assertEqual(sum(1 for st, _ in reasons.values() if st == "booked"), 4)
        self.assertConsistent()

    def test_cancel_arguments_and_scope(self):
        s = self.publish_one(self.desk, capacity=4)
        p = self.community.patients(3)
        b = self.assertBooked(self.clinic.book(s.session_id, p[0]))
        self.assertError(self.clinic.cancel("not-a-uuid"), pb.INVALID_ARGUMENT,
                         field="booking_id")
        self.assertError(self.clinic.cancel(str(uuid.uuid4())), pb.NOT_FOUND,
                         field="booking_id")
        # Another clinic and another hospital do not see the booking.
        for name in ("clinic-b", "desk-tcm"):
            with self.subTest(terminal=name):
                self.assertError(self.authed(name).cancel(b.booking_id), pb.NOT_FOUND,
                                 field="booking_id")
        self.assertCounters(s.session_id, reserved_booked=1)
        for name in ("monitor", "billing"):
            with self.subTest(role=name):
                self.assertError(self.authed(name).cancel(b.booking_id), pb.PERMISSION_DENIED)
        # The hospital's desk may cancel a clinic's booking of its session.
        resp = self.desk.cancel(b.booking_id, "desk cancels")
        self.assertOk(resp, "booking")
        self.assertEqual(resp.booking.status, "cancelled")
        # An admin may cancel anything in the community.
        b2 = self.assertBooked(self.clinic.book(s.session_id, p[1]))
        resp = self.authed("admin").cancel(b2.booking_id)
        self.assertOk(resp, "booking")
        self.assertEqual(resp.booking.status, "cancelled")
        self.assertCounters(s.session_id, reserved_booked=0, public_booked=0)

    def test_cancel_after_release_goes_to_public(self):
        s = self.publish_one(self.desk, capacity=5)     # reserved 2, public 3
        p = self.community.patients(6)
        r = self.assertBooked(self.clinic.book(s.session_id, p[0]), pb.POOL_RESERVED)
        self.assertBooked(self.desk.book(s.session_id, p[1]), pb.POOL_PUBLIC)
        self.community.set_release_at([s.session_id])
        harness.wait_for(lambda: self.community.session_row(s.session_id)["released"], 15,
                         what="the release of the session")
        # One unbooked reserved unit went to the public pool.
        self.assertCounters(s.session_id, capacity=5, reserved_initial=2, reserved_capacity=1,
                            reserved_booked=1, public_booked=1, released_count=1)
        self.assertEqual(self.community.releases(s.session_id), [(s.session_id, 1)])
        got = self.clinic.session(s.session_id, "dr-wang")
        self.assertEqual((got.released, got.reserved_capacity, got.reserved_left,
                          got.public_left, got.reserved_initial), (True, 1, 0, 3, 2))
        # A family doctor now gets public units only (and only with fallback).
        self.assertError(self.clinic.book(s.session_id, p[2]), pb.FULL)
        # Cancelling the reserved booking returns its unit to public.
        resp = self.clinic.cancel(r.booking_id)
        self.assertOk(resp, "booking")
        self.assertEqual((resp.booking.pool, resp.booking.status), (pb.POOL_RESERVED, "cancelled"))
        self.assertCounters(s.session_id, reserved_capacity=0, reserved_booked=0,
                            public_booked=1)
        got = self.clinic.session(s.session_id, "dr-wang")
        self.assertEqual((got.reserved_left, got.public_left), (0, 4))
        self.assertError(self.clinic.book(s.session_id, p[2]), pb.FULL)
        for i in range(2, 6):
            self.assertBooked(self.desk.book(s.session_id, p[i]) if i % 2 else
                              self.clinic.book(s.session_id, p[i], fallback=True),
                              pb.POOL_PUBLIC)
        self.assertCounters(s.session_id, reserved_capacity=0, public_booked=5)
        self.assertError(self.desk.book(s.session_id, p[0]), pb.FULL)
        # Still released once.
        self.assertEqual(self.community.releases(s.session_id), [(s.session_id, 1)])
        self.assertConsistent()


class EmergencyTest(ss.SlotsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_overbooking_beyond_capacity(self):
        s = self.publish_one(self.desk, capacity=2)     # reserved 1, public 1
        p = self.community.patients(5)
        self.assertBooked(self.clinic.book(s.session_id, p[0]), pb.POOL_RESERVED)
        self.assertBooked(self.desk.book(s.session_id, p[1]), pb.POOL_PUBLIC)
        self.assertError(self.desk.book(s.session_id, p[2]), pb.FULL)
        # Beyond capacity only for a green-channel referral of this patient.
        for what, rid in (("no referral", ""), ("a random id", str(uuid.uuid4())),
                          ("a routine referral", refer(self, p[2])),
                          ("another patient's", refer(self, p[4], pb.URGENCY_URGENT))):
            with self.subTest(what):
                resp = self.desk.emergency(s.session_id, p[2], reason="STEMI", referral=rid)
                self.assertError(resp, pb.FAILED_PRECONDITION, field="referral_id")
        self.assertCounters(s.session_id, emergency_booked=0)
        referral = refer(self, p[2], pb.URGENCY_URGENT)
        resp = self.desk.emergency(s.session_id, p[2], reason="STEMI, green channel",
                                   referral=referral)
        e1 = self.assertBooked(resp, pb.POOL_EMERGENCY)
        self.assertEqual((e1.session_id, e1.patient_id, e1.referral_id,
                          e1.booked_by_institution), (s.session_id, p[2], referral,
                                                      "county-hospital"))
        self.assertTrue(ss.is_uuid(e1.booking_id))
        e2 = self.assertBooked(self.desk.emergency(
            s.session_id, p[3], referral=refer(self, p[3], pb.URGENCY_EMERGENCY)),
            pb.POOL_EMERGENCY)
        self.assertCounters(s.session_id, capacity=2, reserved_booked=1, public_booked=1,
                            emergency_booked=2)
        got = self.desk.session(s.session_id, "dr-wang")
        self.assertEqual((got.emergency_booked, got.reserved_left, got.public_left),
                         (2, 0, 0))
        # Emergencies do not free or take regular units.
        self.assertError(self.clinic.book(s.session_id, p[4], fallback=True), pb.FULL)
        resp = self.desk.list_bookings(session_id=s.session_id)
        self.assertOk(resp, "bookings")
        pools = sorted(pb.Pool.Name(b.pool) for b in resp.bookings.bookings)
        self.assertEqual(pools, ["POOL_EMERGENCY", "POOL_EMERGENCY", "POOL_PUBLIC",
                                 "POOL_RESERVED"])
        # Cancelling one gives back the count, not a regular unit.
        resp = self.desk.cancel(e2.booking_id)
        self.assertOk(resp, "booking")
        self.assertEqual((resp.booking.pool, resp.booking.status), (pb.POOL_EMERGENCY, "cancelled"))
        self.assertCounters(s.session_id, emergency_booked=1, reserved_booked=1,
                            public_booked=1)
        self.assertError(self.desk.book(s.session_id, p[4]), pb.FULL)
        self.assertConsistent()

    def test_who_and_why(self):
        s = self.publish_one(self.desk, capacity=2)
        p = self.community.patient()
        # A valid green-channel referral throughout: every refusal below is
        # for what the case names.
        ref = refer(self, p, pb.URGENCY_URGENT)
        self.assertError(self.desk.emergency(s.session_id, p, reason="", referral=ref),
                         pb.INVALID_ARGUMENT, field="reason")
        self.assertError(self.desk.emergency(s.session_id, "nobody", referral=ref),
                         pb.INVALID_ARGUMENT, field="patient_id")
        self.assertError(self.desk.emergency(s.session_id, p, referral="r-1"),
                         pb.INVALID_ARGUMENT, field="referral_id")
        self.assertError(self.desk.emergency(987654321, p, referral=ref), pb.NOT_FOUND,
                         field="session_id")
        self.assertError(self.desk.emergency(s.session_id, str(uuid.uuid4()), referral=ref),
                         pb.NOT_FOUND)
        # Desk only, and only for its own institution's sessions.
        for name in ("clinic", "admin", "monitor", "billing"):
            with self.subTest(role=name):
                self.assertError(self.authed(name).emergency(s.session_id, p, referral=ref),
                                 pb.PERMISSION_DENIED)
        self.assertError(self.authed("desk-tcm").emergency(s.session_id, p, referral=ref),
                         pb.NOT_FOUND, field="session_id")
        self.assertCounters(s.session_id, emergency_booked=0)
        self.assertEqual(self.community.bookings(s.session_id), {})


class ReferralRequiredTest(ss.SlotsTestCase):
    """Yunnan: reserved units are for referred patients only."""

    community_options = {"province": "yunnan"}

    def test_reserved_needs_a_referral(self):
        desk = self.authed("desk")
        clinic = self.authed("clinic")
        s = self.publish_one(desk, capacity=10)          # 20%: reserved 2
        self.assertEqual((s.reserved_capacity, s.public_left), (2, 8))
        p = self.community.patients(5)
        resp = clinic.book(s.session_id, p[0], pool=pb.POOL_RESERVED)
        self.assertError(resp, pb.PERMISSION_DENIED, field="pool")
        self.assertIn("referral", resp.error.message)
        # auto means reserved for a family doctor: the same.
        self.assertError(clinic.book(s.session_id, p[0]), pb.PERMISSION_DENIED, field="pool")
        self.assertError(clinic.book(s.session_id, p[0], referral="ref-42"),
                         pb.INVALID_ARGUMENT, field="referral_id")
        # The referral must be real: a live up-referral of this patient to
        # the session's hospital. Anything else is FAILED_PRECONDITION.
        referral = refer(self, p[0])
        other = refer(self, p[1])
        for what, rid in (("a random id", str(uuid.uuid4())),
                          ("another patient's referral", other)):
            with self.subTest(what):
                for pool in (pb.POOL_RESERVED, pb.POOL_AUTO):
                    self.assertError(clinic.book(s.session_id, p[0], pool=pool, referral=rid),
                                     pb.FAILED_PRECONDITION, field="referral_id")
        self.assertEqual(self.community.bookings(s.session_id), {})
        b = self.assertBooked(clinic.book(s.session_id, p[0], pool=pb.POOL_RESERVED,
                                          referral=referral), pb.POOL_RESERVED)
        self.assertEqual(b.referral_id, referral)
        self.assertBooked(clinic.book(s.session_id, p[1], referral=other), pb.POOL_RESERVED)
        # Public units need no referral, for the family doctor either:
        # asked for, or as the fallback of a request without a referral.
        self.assertBooked(clinic.book(s.session_id, p[2], pool=pb.POOL_PUBLIC), pb.POOL_PUBLIC)
        self.assertBooked(desk.book(s.session_id, p[3]), pb.POOL_PUBLIC)
        self.assertBooked(clinic.book(s.session_id, p[4], fallback=True), pb.POOL_PUBLIC)
        resp = clinic.list_bookings(session_id=s.session_id, patient_id=p[0])
        self.assertOk(resp, "bookings")
        self.assertEqual([(x.booking_id, x.referral_id) for x in resp.bookings.bookings],
                         [(b.booking_id, referral)])
        self.assertCounters(s.session_id, reserved_booked=2, public_booked=3)
        # Public full: without a referral, the fallback has nothing to take.
        more = self.community.patients(6)
        for q in more[:5]:
            self.assertBooked(desk.book(s.session_id, q), pb.POOL_PUBLIC)
        self.assertError(clinic.book(s.session_id, more[5], fallback=True),
                         pb.PERMISSION_DENIED, field="pool")
        self.assertError(clinic.book(s.session_id, more[5], fallback=True,
                                     referral=refer(self, more[5])), pb.FULL)
        self.assertCounters(s.session_id, reserved_booked=2, public_booked=8)
        self.assertConsistent()


class ListBookingsTest(ss.SlotsTestCase):
    own_community = True    # monitor and admin list the whole community

    def test_scope_filters_and_pages(self):
        desk = self.authed("desk")
        clinic = self.authed("clinic")
        clinic_b = self.authed("clinic-b")
        start = future(days=5)
        s1 = self.publish_one(desk, capacity=20, start=start)
        s2 = self.publish_one(desk, capacity=20, resource="dr-li", department="internal",
                              start=start + 6 * HOUR)
        tcm = self.authed("desk-tcm")
        s3 = self.publish_one(tcm, capacity=10, resource="dr-zhao", department="acupuncture",
                              start=start)
        p = self.community.patients(8)
        by_clinic = [self.assertBooked(clinic.book(s1.session_id, p[i])).booking_id
                     for i in range(3)]
        by_clinic.append(self.assertBooked(clinic.book(s2.session_id, p[0])).booking_id)
        by_clinic_b = [self.assertBooked(clinic_b.book(s1.session_id, p[3])).booking_id]
        by_desk = [self.assertBooked(desk.book(s2.session_id, p[4])).booking_id]
        at_tcm = [self.assertBooked(clinic.book(s3.session_id, p[5])).booking_id,
                  self.assertBooked(tcm.book(s3.session_id, p[6])).booking_id]
        cancelled = self.assertBooked(clinic.book(s1.session_id, p[7])).booking_id
        self.assertOk(clinic.cancel(cancelled), "booking")

        def listed(c, **fields):
            out, token = [], ""
            for _ in range(50):
                resp = c.list_bookings(page_token=token, **fields)
                self.assertOk(resp, "bookings")
                out += [b.booking_id for b in resp.bookings.bookings]
                token = resp.bookings.next_page_token
                if not token:
                    self.assertEqual(len(out), len(set(out)), "no booking twice")
                    return set(out)
            self.fail("page tokens do not end")

        everything = set(by_clinic + by_clinic_b + by_desk + at_tcm)
        # Clinics see what they booked (any hospital).
        self.assertEqual(listed(clinic), set(by_clinic + at_tcm[:1]))
        self.assertEqual(listed(clinic, include_cancelled=True),
                         set(by_clinic + at_tcm[:1] + [cancelled]))
        self.assertEqual(listed(clinic_b), set(by_clinic_b))
        # Desks see bookings of their sessions and their own.
        self.assertEqual(listed(desk), set(by_clinic + by_clinic_b + by_desk))
        self.assertEqual(listed(tcm), set(at_tcm))
        # Monitor and admin see the community, in pages too.
        for name in ("monitor", "admin"):
            with self.subTest(role=name):
                c = self.authed(name)
                self.assertEqual(listed(c), everything)
                self.assertEqual(listed(c, page_size=2), everything)
                self.assertEqual(listed(c, page_size=1, include_cancelled=True),
                                 everything | {cancelled})
        # Filters.
        self.assertEqual(listed(desk, session_id=s2.session_id),
                         {by_clinic[3], by_desk[0]})
        self.assertEqual(listed(desk, patient_id=p[0]), {by_clinic[0], by_clinic[3]})
        self.assertEqual(listed(desk, patient_id=p[0], session_id=s1.session_id),
                         {by_clinic[0]})
        self.assertError(desk.list_bookings(patient_id="x"), pb.INVALID_ARGUMENT,
                         field="patient_id")
        self.assertError(desk.list_bookings(page_token="12:not-a-uuid"), pb.INVALID_ARGUMENT,
                         field="page_token")
        self.assertError(self.authed("billing").list_bookings(), pb.PERMISSION_DENIED)
        # What a listed booking says.
        resp = clinic.list_bookings(session_id=s1.session_id, patient_id=p[1])
        self.assertOk(resp, "bookings")
        [b] = resp.bookings.bookings
        self.assertEqual((b.booking_id, b.session_id, b.patient_id, b.pool, b.status,
                          b.booked_by_institution, b.starts_at),
                         (by_clinic[1], s1.session_id, p[1], pb.POOL_RESERVED, "booked",
                          "village-a", s1.starts_at))
        self.assertGreater(b.created_at, 0)


class ListBookingsPlanTest(ss.SlotsTestCase):
    own_community = True    # 3,000 bookings of its own

    def test_a_page_reads_a_page(self):
        """A page of the list reads about a page of bookings, whatever the
        community holds: the plan auto_explain reports for list_bookings()
        (what ListBookings runs) reads no more than a few pages of rows from
        bookings, or the bookings of the one session asked for, for every
        filter the list takes. A statement that read the community and
        sorted it (as ListBookings once did) reads all 3,000."""
        desk = self.authed("desk")
        clinic = self.community["clinic"]
        sessions = [self.publish_one(desk, capacity=100,
                                     start=future(days=3) + i * 5 * HOUR).session_id
                    for i in range(30)]
        patients = self.community.patients(3000)
        lit, arr = harness.sql_literal, harness.sql_array
        n = len(patients)
        booked = self.community.psql(f"""
SELECT count(*) FILTER (WHERE outcome = 'booked')
  FROM book_batch({lit(self.community.community_id)}, {arr([clinic.terminal_id] * n, "text")},
                  {arr([clinic.institution_id] * n, "text")}, {arr(["clinic"] * n, "terminal_role")},
                  {arr([""] * n, "text")}, {arr([sessions[i % len(sessions)] for i in range(n)], "bigint")},
                  {arr(patients, "uuid")}, {arr(["auto"] * n, "text")}, {arr(["t"] * n, "boolean")},
                  {arr([f"page-{i}" for i in range(n)], "text")})""")
        self.assertEqual(int(booked), n)
        # As autovacuum would, after a day's bookings.
        self.community.psql("ANALYZE bookings, sessions")
        cancelled = self.community.psql(f"""
SELECT b.patient_id FROM bookings b
  JOIN LATERAL cancel_booking({lit(self.community.community_id)}, {lit(clinic.terminal_id)},
                              {lit(clinic.institution_id)}, b.booking_id, 'test') c ON true
 WHERE b.community_id = {lit(self.community.community_id)} AND b.session_id = {sessions[7]}
 LIMIT 1""")
        page = 20
        # name: (institution, session, patient, cancelled too, most rows read)
        cases = {
            "everything": ("", 0, "", "false", 3 * page),
            "with the cancelled": ("", 0, "", "true", 3 * page),
            "the clinic's": (clinic.institution_id, 0, "", "false", 3 * page),
            "the hospital's sessions'": ("county-hospital", 0, "", "false", 3 * page),
            "one session's": ("", sessions[12], "", "false", 100),
            "one patient's": ("", 0, patients[100], "false", 3 * page),
            "one patient's, cancelled too": ("", 0, cancelled, "true", 3 * page),
        }
        for name, (inst, session, patient, with_cancelled, most) in cases.items():
            with self.subTest(name):
                rows_read, listed = self.bookings_read(
                    f"{lit(inst)}, {session}, {lit(patient)}, {with_cancelled}, 0, "
                    f"'00000000-0000-0000-0000-000000000000', {page}")
                self.assertGreater(listed, 0, "the case lists something")
                self.assertLessEqual(rows_read, most, f"{name}: {rows_read} rows read")

    def bookings_read(self, args):
        """(rows of bookings read, rows listed) by one list_bookings() call:
        every node of the nested plan that reads bookings, the rows it
        returned and those its filter removed."""
        c = harness.sql_literal(self.community.community_id)
        p = subprocess.run(self.community.pg.psql_cmd(self.community.dbname), text=True, input=f"""
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_timing = off;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_format = json;
SET auto_explain.log_level = notice;
SELECT count(*) FROM list_bookings({c}, {args});""", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(p.returncode, 0, p.stderr)
        inner = [x["Plan"] for x in harness.auto_explain_plans(p.stderr)
                 if "FROM bookings b" in x["Query Text"]]
        self.assertEqual(len(inner), 1, p.stderr)

        def read(node):
            own = 0
            if node.get("Relation Name") == "bookings":
                own = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
            return own + sum(read(c) for c in node.get("Plans", []))
        return read(inner[0]), int(p.stdout.strip())


class ReferralctlTest(ss.SlotsTestCase):

    def ctl(self, terminal, *args, rc=0, json_out=True):
        p = ss.referralctl(self.daemon, self.community[terminal], *args, json_out=json_out)
        self.assertEqual(p.returncode, rc, f"referralctl {args}: stdout {p.stdout!r} "
                                           f"stderr {p.stderr!r}")
        if json_out and p.stdout.strip():
            return json.loads(p.stdout)
        return p

    def test_publish_book_cancel_list(self):
        start = future(days=4, hour=2)
        out = self.ctl("desk", "publish", "--department", "cardiology", "--kind", "expert",
                       "--resource", "dr-wang", "--capacity", "3", "--start", str(start),
                       "--end", str(start + HOUR))
        [s] = out["sessions"]
        sid = s["session_id"]
        self.assertEqual((s["capacity"], s["reserved_capacity"], s["reserved_left"],
                          s["public_left"], s["kind"], s["starts_at"]),
                         (3, 2, 2, 1, "KIND_EXPERT", start))
        # Below the floor: exit 1, the error as JSON.
        out = self.ctl("desk", "publish", "--department", "cardiology", "--kind", "expert",
                       "--resource", "dr-wang", "--capacity", "7", "--reserved", "2",
                       "--start", str(start), "--end", str(start + HOUR), rc=1)
        self.assertEqual((out["error"]["code"], out["error"]["field"]),
                         ("INVALID_ARGUMENT", "reserved_slots"))
        self.assertIn("40%", out["error"]["message"])

        out = self.ctl("clinic", "sessions", "--resource", "dr-wang", "--kind", "expert",
                       "--from", str(start), "--until", str(start + 1))
        self.assertEqual([x["session_id"] for x in out["sessions"]], [sid])
        self.assertEqual(out["next_page_token"], "")

        p = self.community.patients(4)
        key = ss.new_key("ctl")
        b = self.ctl("clinic", "book", "--session", str(sid), "--patient", p[0], "--key", key)
        self.assertEqual((b["pool"], b["status"], b["replayed"], b["reserved_left"],
                          b["public_left"]), ("POOL_RESERVED", "booked", False, 1, 1))
        again = self.ctl("clinic", "book", "--session", str(sid), "--patient", p[0],
                         "--key", key)
        self.assertEqual((again["booking_id"], again["replayed"]), (b["booking_id"], True))
        self.ctl("desk", "book", "--session", str(sid), "--patient", p[1], "--pool", "public")
        # Public full: exit 1 and FULL.
        out = self.ctl("desk", "book", "--session", str(sid), "--patient", p[2], rc=1)
        self.assertEqual((out["error"]["code"], out["error"]["field"]), ("FULL", "session_id"))
        plain = self.ctl("desk", "book", "--session", str(sid), "--patient", p[2], rc=1,
                         json_out=False)
        self.assertIn("FULL", plain.stderr)
        fb = self.ctl("clinic", "book", "--session", str(sid), "--patient", p[2], "--fallback")
        self.assertEqual(fb["pool"], "POOL_RESERVED")
        out = self.ctl("clinic", "book", "--session", str(sid), "--patient", p[3], "--fallback",
                       rc=1)
        self.assertEqual(out["error"]["code"], "FULL")
        # Emergency overbooking.
        green = refer(self, p[3], pb.URGENCY_EMERGENCY)
        out = self.ctl("desk", "overbook", str(sid), p[3], "acute abdomen", rc=1)
        self.assertEqual((out["error"]["code"], out["error"]["field"]),
                         ("FAILED_PRECONDITION", "referral_id"))
        e = self.ctl("desk", "overbook", str(sid), p[3], "acute abdomen", green)
        self.assertEqual(e["referral_id"], green)
        self.assertEqual((e["pool"], e["status"]), ("POOL_EMERGENCY", "booked"))
        self.assertEqual(self.ctl("clinic", "overbook", str(sid), p[3], "x", green, rc=1)
                         ["error"]["code"], "PERMISSION_DENIED")
        # Cancel, twice.
        c1 = self.ctl("clinic", "cancel", b["booking_id"], "moved away")
        self.assertEqual((c1["status"], c1["replayed"], c1["pool"]),
                         ("cancelled", False, "POOL_RESERVED"))
        c2 = self.ctl("clinic", "cancel", b["booking_id"])
        self.assertEqual((c2["status"], c2["replayed"]), ("cancelled", True))
        # Bookings: live only, then --all.
        live = self.ctl("desk", "bookings", "--session", str(sid))
        self.assertEqual(sorted(x["patient_id"] for x in live["bookings"]),
                         sorted([p[1], p[2], p[3]]))
        every = self.ctl("desk", "bookings", "--session", str(sid), "--all")
        statuses = {x["booking_id"]: (x["status"], x["cancel_reason"]) for x in every["bookings"]}
        self.assertEqual(statuses[b["booking_id"]], ("cancelled", "moved away"))
        self.assertEqual(len(statuses), 4)
        # The human tables.
        table = self.ctl("desk", "bookings", "--session", str(sid), "--all", json_out=False)
        self.assertIn(b["booking_id"], table.stdout)
        self.assertIn("cancelled", table.stdout)
        table = self.ctl("clinic", "sessions", "--resource", "dr-wang", "--from", str(start),
                         "--until", str(start + 1), json_out=False)
        self.assertRegex(table.stdout, rf"(?m)^{sid}\s+county-hospital\s+cardiology\s+expert")
        # Capacity and cancel-session.
        out = self.ctl("desk", "capacity", str(sid), "1", rc=1)
        self.assertEqual(out["error"]["code"], "FAILED_PRECONDITION")
        out = self.ctl("desk", "capacity", str(sid), "6")
        self.assertEqual((out["capacity"], out["reserved_capacity"]), (6, 4))
        out = self.ctl("desk", "cancel-session", str(sid), "expert ill")
        self.assertEqual((out["session_id"], out["bookings_flagged"]), (sid, 3))
        out = self.ctl("desk", "book", "--session", str(sid), "--patient", p[0], rc=1)
        self.assertEqual(out["error"]["code"], "FAILED_PRECONDITION")
        self.assertConsistent()

    def test_usage_errors(self):
        self.ctl("desk", "book", "--patient", str(uuid.uuid4()), rc=2)
        self.ctl("desk", "book", "--session", "1", "--patient", str(uuid.uuid4()),
                 "--pool", "vip", rc=2)
        self.ctl("desk", "publish", "--department", "cardiology", rc=2)
        self.ctl("desk", "capacity", "1", rc=2)
        self.ctl("desk", "cancel", rc=2)
        self.ctl("desk", "overbook", "1", rc=2)
        self.ctl("desk", "sessions", "--kind", "spa", rc=2)


if __name__ == "__main__":
    unittest.main()
