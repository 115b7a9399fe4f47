#!/usr/bin/python3
"""Up-referrals (ReferUp, from a family doctor's clinic terminal): argument
checks, the referral network's routes (only upwards, inside the network,
same level only where the community allows it), the referral and its booking
made in one transaction (both or neither; waiting for a slot when full and
asked to), idempotency keys (replays, conflicts, refusals keep no key), and
what a referral_id on a booking must now be (a live up-referral of the same
patient to the session's institution; a green-channel one for emergency
bookings)."""

import unittest

import harness
from harness import pb
import referrals_support as rs
import slots_support as ss
from referrals_support import future


class ReferUpArgumentsTest(rs.ReferralsTestCase):

    def setUp(self):
        self.clinic = self.authed("clinic")

    def test_a_plain_referral(self):
        p = self.community.patient()
        ref = self.assertReferral(self.clinic.refer_up(
            p, diagnosis="J18.9", reason="pneumonia, not improving on oral antibiotics",
            urgency=pb.URGENCY_URGENT), "pending")
        self.assertTrue(ss.is_uuid(ref.referral_id), ref)
        self.assertEqual(
            (ref.direction, ref.urgency, ref.patient_id, ref.from_institution,
             ref.from_practitioner, ref.to_institution, ref.to_department, ref.diagnosis,
             ref.reason, ref.version, ref.replayed, ref.booking_id, ref.session_id,
             ref.escalated, ref.redirected_from, ref.redirected_to),
            (pb.DIRECTION_UP, pb.URGENCY_URGENT, p, "village-a", "fd-a", "county-hospital",
             "cardiology", "J18.9", "pneumonia, not improving on oral antibiotics", 1, False,
             "", 0, False, "", ""))
        self.assertGreater(ref.created_at, 0)
        # The patient's (already masked) display name, never more.
        self.assertEqual(ref.patient_display, self.community.psql(
            "SELECT display_name FROM patients WHERE community_id = "
            f"{harness.sql_literal(self.community.community_id)} "
            f"AND patient_id = {harness.sql_literal(p)}"))
        # What the database holds: the row, one history entry, one event.
        row = self.community.referral_row(ref.referral_id)
        self.assertEqual((row["state"], row["version"], row["urgency"], row["direction"],
                          row["booking_id"]), ("pending", 1, "urgent", "up", None))
        self.assertEqual(self.community.history_rows(ref.referral_id),
                         [(1, "create", "", "pending", "clinic-01", "clinic", "")])
        self.assertEqual([e[1] for e in self.community.events(ref.referral_id)],
                         ["referral.create"])
        self.assertEqual(self.community.patient_bookings(p), [])
        # GetReferral says the same.
        got = self.assertReferral(self.clinic.get(ref.referral_id), "pending")
        self.assertEqual(got, ref)

    def test_diagnosis_must_be_icd10(self):
        for code in ("I21.0", "J18.9", "C34", "K35.80", "C4A.9", "S72.0012", "U07"):
            with self.subTest(valid=code):
                ref = self.refer_up(self.clinic, diagnosis=code)
                self.assertEqual(ref.diagnosis, code)
        for code in ("", "I2", "21.0", "I21.", "I21.00001", "II1.0", "I21-0", "I21.0 ",
                     " I21.0", "I210", "I21.0;X", "中21.0", "I21..0"):
            with self.subTest(invalid=code):
                p = self.community.patient()
                self.assertError(self.clinic.refer_up(p, diagnosis=code), pb.INVALID_ARGUMENT,
                                 field="diagnosis")
                self.assertEqual(self.community.patient_referrals(p), [])

    def test_other_arguments(self):
        p = self.community.patient()
        cases = [
            ("no key", rs.refer_up_request(p, key=""), pb.INVALID_ARGUMENT, "idempotency_key"),
            ("key too long", rs.refer_up_request(p, key="k" * 129), pb.INVALID_ARGUMENT,
             "idempotency_key"),
            ("patient not a uuid", rs.refer_up_request("patient-1"), pb.INVALID_ARGUMENT,
             "patient_id"),
            ("patient missing", rs.refer_up_request(""), pb.INVALID_ARGUMENT, "patient_id"),
            ("no reason", rs.refer_up_request(p, reason=""), pb.INVALID_ARGUMENT, "reason"),
            ("unknown patient", rs.refer_up_request(rs.random_id()), pb.NOT_FOUND, "patient_id"),
            ("unknown department", rs.refer_up_request(p, department="dermatology"),
             pb.NOT_FOUND, "to_department"),
            ("department of another hospital", rs.refer_up_request(p, department="acupuncture"),
             pb.NOT_FOUND, "to_department"),
        ]
        for what, req, code, field in cases:
            with self.subTest(what):
                self.assertError(self.clinic.call(req), code, field=field)
        self.assertEqual(self.community.patient_referrals(p), [])
        # A patient of another community is unknown here.
        self.assertError(self.clinic.refer_up(self.community.foreign_patient()), pb.NOT_FOUND,
                         field="patient_id")
        # A key of exactly 128 bytes is fine; so is no department.
        self.refer_up(self.clinic, patient=p, key="k" * 128)
        ref = self.refer_up(self.clinic, department="")
        self.assertEqual(ref.to_department, "")


class RoutesTest(rs.ReferralsTestCase):
    """Up means up, inside the network; same level only where allowed."""

    def test_upwards_inside_the_network(self):
        clinic = self.authed("clinic")
        for to, dept in (("county-hospital", "cardiology"), ("tcm-hospital", "acupuncture"),
                         ("city-hospital", "oncology")):
            with self.subTest(to=to):
                ref = self.refer_up(clinic, to=to, department=dept)
                self.assertEqual((ref.from_institution, ref.to_institution, ref.to_department),
                                 ("village-a", to, dept))
        # A township centre refers upwards too.
        ref = self.refer_up(self.authed("clinic-c"))
        self.assertEqual((ref.from_institution, ref.from_practitioner, ref.to_institution),
                         ("township-c", "fd-c", "county-hospital"))

    def test_refused_routes(self):
        clinic = self.authed("clinic")
        township = self.authed("clinic-c")
        p = self.community.patient()
        # Outside the network, although higher.
        resp = clinic.refer_up(p, to="outside-hospital", department="surgery")
        self.assertError(resp, pb.PERMISSION_DENIED, field="to_institution")
        self.assertIn("network", resp.error.message)
        # Downwards: township to village.
        resp = township.refer_up(p, to="village-a", department="")
        self.assertError(resp, pb.PERMISSION_DENIED, field="to_institution")
        self.assertIn("level", resp.error.message)
        # Same level, not allowed by default.
        resp = clinic.refer_up(p, to="village-b", department="")
        self.assertError(resp, pb.PERMISSION_DENIED, field="to_institution")
        self.assertIn("level", resp.error.message)
        # Its own institution.
        self.assertError(clinic.refer_up(p, to="village-a", department=""),
                         pb.PERMISSION_DENIED, field="to_institution")
        self.assertEqual(self.community.patient_referrals(p), [])

    def test_same_level_where_the_community_allows_it(self):
        clinic = self.authed("clinic")
        self.community.set(allow_same_level_referral=True)
        self.addCleanup(self.community.set, allow_same_level_referral=False)
        ref = self.refer_up(clinic, to="village-b", department="")
        self.assertEqual((ref.from_institution, ref.to_institution), ("village-a", "village-b"))
        # Still not downwards, nor outside the network.
        self.assertError(self.authed("clinic-c").refer_up(self.community.patient(),
                                                          to="village-a", department=""),
                         pb.PERMISSION_DENIED, field="to_institution")
        self.assertError(clinic.refer_up(self.community.patient(), to="outside-hospital",
                                         department="surgery"),
                         pb.PERMISSION_DENIED, field="to_institution")
        # Switched off again: refused again.
        self.community.set(allow_same_level_referral=False)
        self.assertError(clinic.refer_up(self.community.patient(), to="village-b",
                                         department=""),
                         pb.PERMISSION_DENIED, field="to_institution")


class ReferWithBookingTest(rs.ReferralsTestCase):
    """The referral and its booking: both or neither."""

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def assertNothingMade(self, patient, key, seq_before):
        self.assertEqual(self.community.patient_referrals(patient), [])
        self.assertEqual(self.community.patient_bookings(patient), [])
        self.assertEqual(self.community.key_count("clinic", key), 0, "a refusal keeps no key")
        self.assertEqual(self.community.last_event_seq(), seq_before, "no event")

    def test_booked_with_the_referral(self):
        s = self.publish_one(self.desk, capacity=5)       # reserved 2, public 3
        p = self.community.patients(3)
        ref = self.assertReferral(self.clinic.refer_up(p[0], session_id=s.session_id,
                                                       urgency=pb.URGENCY_URGENT), "pending")
        self.assertTrue(ss.is_uuid(ref.booking_id), ref)
        self.assertEqual((ref.session_id, ref.version, ref.from_practitioner, ref.replayed),
                         (s.session_id, 1, "fd-a", False))
        self.assertEqual(self.community.patient_bookings(p[0]),
                         [(ref.booking_id, str(s.session_id), "reserved", "booked",
                           ref.referral_id)])
        self.assertEqual(self.community.referral_row(ref.referral_id)["booking_id"],
                         ref.booking_id)
        self.assertCounters(s.session_id, reserved_booked=1, public_booked=0)
        self.assertEqual(self.community.history_rows(ref.referral_id),
                         [(1, "create", "", "pending", "clinic-01", "clinic", "")])
        got = self.assertReferral(self.clinic.get(ref.referral_id), "pending")
        self.assertEqual((got.booking_id, got.session_id), (ref.booking_id, s.session_id))
        # The slot as the referral shows it.
        self.assertEqual((ref.booking_status, ref.slot_starts_at), ("booked", s.starts_at))
        self.assertEqual((got.booking_status, got.slot_starts_at), ("booked", s.starts_at))
        # The public pool when asked for, or as the fallback of a full reserved pool.
        r2 = self.refer_up(self.clinic, patient=p[1], session_id=s.session_id,
                           pool=pb.POOL_PUBLIC)
        self.assertEqual(self.community.patient_bookings(p[1])[0][2], "public")
        self.refer_up(self.authed("clinic-b"), patient=p[2], session_id=s.session_id)
        p3 = self.community.patient()
        self.assertError(self.clinic.refer_up(p3, session_id=s.session_id), pb.FULL,
                         field="session_id")
        r3 = self.refer_up(self.clinic, patient=p3, session_id=s.session_id, fallback=True)
        self.assertEqual(self.community.patient_bookings(p3)[0][2], "public")
        self.assertCounters(s.session_id, reserved_booked=2, public_booked=2)
        self.assertNotEqual(r2.booking_id, r3.booking_id)
        self.assertConsistent()

    def test_refused_booking_makes_no_referral(self):
        s = self.publish_one(self.desk, capacity=2)       # reserved 1, public 1
        taken = self.community.patient()
        first = self.refer_up(self.clinic, patient=taken, session_id=s.session_id)
        gone = self.publish_one(self.desk, capacity=4, start=future(days=6))
        self.assertOk(self.desk.cancel_session(gone.session_id, "expert away"),
                      "cancel_session")
        before = self.community.session_row(s.session_id)
        cases = [
            ("reserved pool full", dict(session_id=s.session_id), pb.FULL, "session_id"),
            ("unknown session", dict(session_id=987654321), pb.NOT_FOUND, "session_id"),
            ("cancelled session", dict(session_id=gone.session_id), pb.FAILED_PRECONDITION,
             "session_id"),
        ]
        for what, kw, code, field in cases:
            with self.subTest(what):
                p = self.community.patient()
                key = rs.new_key()
                seq = self.community.last_event_seq()
                self.assertError(self.clinic.refer_up(p, key=key, **kw), code, field=field)
                self.assertNothingMade(p, key, seq)
        # The patient already holds a booking in this session (the first
        # referral's): CONFLICT, and no second referral.
        key = rs.new_key()
        seq = self.community.last_event_seq()
        resp = self.clinic.refer_up(taken, session_id=s.session_id, fallback=True, key=key)
        self.assertError(resp, pb.CONFLICT, field="patient_id")
        self.assertEqual(self.community.patient_referrals(taken), [first.referral_id])
        self.assertEqual(len(self.community.patient_bookings(taken)), 1)
        self.assertEqual(self.community.key_count("clinic", key), 0)
        self.assertEqual(self.community.last_event_seq(), seq)
        self.assertEqual(self.community.session_row(s.session_id), before)
        self.assertConsistent()

    def test_session_at_another_hospital(self):
        """The session must be at the referral's target (the booking would
        name a referral to another hospital): refused, nothing made."""
        tcm = self.publish_one(self.authed("desk-tcm"), capacity=4, resource="dr-zhao",
                               department="acupuncture")
        p = self.community.patient()
        key = rs.new_key()
        seq = self.community.last_event_seq()
        resp = self.clinic.refer_up(p, key=key, session_id=tcm.session_id)
        self.assertError(resp, pb.FAILED_PRECONDITION)
        self.assertNothingMade(p, key, seq)
        self.assertCounters(tcm.session_id, reserved_booked=0, public_booked=0)
        # ReferUp has no referral_id: the session is the field in the way.
        self.assertEqual(resp.error.field, "session_id", resp)
        self.assertIn("not at county-hospital", resp.error.message)

    def test_wait_if_full(self):
        s = self.publish_one(self.desk, capacity=2)       # reserved 1, public 1
        p = self.community.patients(3)
        # Room: booked as usual.
        booked = self.refer_up(self.clinic, patient=p[0], session_id=s.session_id,
                               wait_if_full=True)
        self.assertTrue(booked.booking_id)
        # Full: the referral waits for a slot, without a booking.
        ref = self.assertReferral(self.clinic.refer_up(p[1], session_id=s.session_id,
                                                       wait_if_full=True), "waiting_slot")
        self.assertEqual((ref.booking_id, ref.version), ("", 1))
        self.assertEqual(self.community.patient_bookings(p[1]), [])
        row = self.community.referral_row(ref.referral_id)
        self.assertEqual((row["state"], row["booking_id"]), ("waiting_slot", None))
        self.assertEqual(self.community.history_rows(ref.referral_id),
                         [(1, "create", "", "waiting_slot", "clinic-01", "clinic", "")])
        self.assertCounters(s.session_id, reserved_booked=1, public_booked=0)
        # Other refusals still make nothing: the patient is booked already.
        key = rs.new_key()
        self.assertError(self.clinic.refer_up(p[0], session_id=s.session_id, wait_if_full=True,
                                              key=key), pb.CONFLICT, field="patient_id")
        self.assertEqual(self.community.patient_referrals(p[0]), [booked.referral_id])
        self.assertEqual(self.community.key_count("clinic", key), 0)
        self.assertConsistent()


class IdempotencyTest(rs.ReferralsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_same_key_same_request_is_replayed(self):
        s = self.publish_one(self.desk, capacity=5)
        p = self.community.patient()
        key = rs.new_key()
        first = self.assertReferral(self.clinic.refer_up(p, session_id=s.session_id, key=key),
                                    "pending")
        self.assertFalse(first.replayed)
        again = self.authed("clinic")
        for c in (self.clinic, again):
            got = self.assertReferral(c.refer_up(p, session_id=s.session_id, key=key), "pending")
            self.assertEqual((got.referral_id, got.booking_id, got.version, got.replayed),
                             (first.referral_id, first.booking_id, 1, True))
        self.assertEqual(self.community.patient_referrals(p), [first.referral_id])
        self.assertEqual(len(self.community.patient_bookings(p)), 1)
        self.assertCounters(s.session_id, reserved_booked=1)
        self.assertEqual(self.community.history_actions(first.referral_id), ["create"])
        self.assertEqual(len(self.community.events(first.referral_id)), 1)
        # A retry after the referral moved on: the referral as it is now.
        self.move(self.desk, first, pb.ACTION_ACCEPT, "accepted")
        got = self.assertReferral(self.clinic.refer_up(p, session_id=s.session_id, key=key),
                                  "accepted")
        self.assertEqual((got.referral_id, got.version, got.replayed),
                         (first.referral_id, 2, True))
        self.assertEqual(self.community.patient_referrals(p), [first.referral_id])

    def test_keys_are_shared_with_bookings(self):
        """A terminal's keys are one namespace for Book and ReferUp."""
        s = self.publish_one(self.desk, capacity=5)
        p, q = self.community.patients(2)
        key = rs.new_key()
        self.assertBooked(self.clinic.book(s.session_id, p, key=key))
        self.assertError(self.clinic.refer_up(p, key=key), pb.CONFLICT, field="idempotency_key")
        self.assertEqual(self.community.patient_referrals(p), [])
        key2 = rs.new_key()
        self.refer_up(self.clinic, patient=q, key=key2)
        self.assertError(self.clinic.book(s.session_id, q, key=key2), pb.CONFLICT,
                         field="idempotency_key")
        self.assertEqual(self.community.patient_bookings(q), [])

    def test_same_key_other_request_conflicts(self):
        s = self.publish_one(self.desk, capacity=5)
        p, q = self.community.patients(2)
        key = rs.new_key()
        first = self.refer_up(self.clinic, patient=p, key=key)
        variants = [
            ("other patient", dict(patient_id=q)),
            ("other diagnosis", dict(patient_id=p, diagnosis="I20.0")),
            ("other reason", dict(patient_id=p, reason="something else")),
            ("other urgency", dict(patient_id=p, urgency=pb.URGENCY_URGENT)),
            ("other target", dict(patient_id=p, to="tcm-hospital", department="acupuncture")),
            ("with a session", dict(patient_id=p, session_id=s.session_id)),
        ]
        for what, kw in variants:
            with self.subTest(what):
                pid = kw.pop("patient_id")
                self.assertError(self.clinic.refer_up(pid, key=key, **kw), pb.CONFLICT,
                                 field="idempotency_key")
        self.assertEqual(self.community.patient_referrals(p), [first.referral_id])
        self.assertEqual(self.community.patient_referrals(q), [])
        self.assertEqual(self.community.patient_bookings(p), [])
        # The same key on another terminal is another key.
        other = self.refer_up(self.authed("clinic-b"), patient=q, key=key)
        self.assertNotEqual(other.referral_id, first.referral_id)
        self.assertFalse(other.replayed)

    def test_refusals_keep_no_key(self):
        s = self.publish_one(self.desk, capacity=2)       # reserved 1, public 1
        p = self.community.patients(2)
        blocking = self.refer_up(self.clinic, patient=p[0], session_id=s.session_id)
        key = rs.new_key()
        self.assertError(self.clinic.refer_up(p[1], session_id=s.session_id, key=key), pb.FULL,
                         field="session_id")
        # Room again: the same request with the same key is evaluated afresh.
        self.assertOk(self.clinic.cancel(blocking.booking_id), "booking")
        ref = self.assertReferral(self.clinic.refer_up(p[1], session_id=s.session_id, key=key),
                                  "pending")
        self.assertFalse(ref.replayed)
        self.assertTrue(ref.booking_id)
        # A malformed request keeps no key either: corrected, it goes through.
        q = self.community.patient()
        key2 = rs.new_key()
        self.assertError(self.clinic.refer_up(q, diagnosis="chest pain", key=key2),
                         pb.INVALID_ARGUMENT, field="diagnosis")
        self.assertError(self.clinic.refer_up(q, to="outside-hospital", department="surgery",
                                              key=key2),
                         pb.PERMISSION_DENIED, field="to_institution")
        ref = self.assertReferral(self.clinic.refer_up(q, key=key2), "pending")
        self.assertFalse(ref.replayed)
        self.assertEqual(self.community.patient_referrals(q), [ref.referral_id])


class YunnanTest(rs.ReferralsTestCase):
    """Yunnan keeps reserved units for referred patients: a referral's own
    booking (made with it, or when the desk accepts it) is such a booking."""

    community_options = {"province": "yunnan"}

    def test_referral_bookings_take_reserved_units(self):
        desk = self.authed("desk")
        clinic = self.authed("clinic")
        s = self.publish_one(desk, capacity=10)           # 20%: reserved 2
        p = self.community.patients(3)
        # A plain booking may not have them ...
        self.assertError(clinic.book(s.session_id, p[0]), pb.PERMISSION_DENIED, field="pool")
        # ... a referral's booking may.
        ref = self.refer_up(clinic, patient=p[0], session_id=s.session_id)
        self.assertEqual(self.community.patient_bookings(p[0])[0][2:],
                         ("reserved", "booked", ref.referral_id))
        ref = self.refer_up(clinic, patient=p[1])
        acc = self.move(desk, ref, pb.ACTION_ACCEPT, "accepted", session_id=s.session_id)
        self.assertEqual(self.community.patient_bookings(p[1])[0][:1] +
                         self.community.patient_bookings(p[1])[0][2:],
                         (acc.booking_id, "reserved", "booked", ref.referral_id))
        self.assertCounters(s.session_id, reserved_booked=2, public_booked=0)
        # Reserved gone: public with fallback, the referral still attached.
        ref = self.refer_up(clinic, patient=p[2], session_id=s.session_id, fallback=True)
        self.assertEqual(self.community.patient_bookings(p[2])[0][2:],
                         ("public", "booked", ref.referral_id))
        self.assertConsistent()


class BookingNamesAReferralTest(rs.ReferralsTestCase):
    """A booking that names a referral needs a live up-referral of the same
    patient to the session's institution; an emergency booking needs a
    green-channel (urgent or emergency) one."""

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_book_with_a_referral(self):
        s = self.publish_one(self.desk, capacity=10)
        p, q, r = self.community.patients(3)
        ref = self.refer_up(self.clinic, patient=p)
        b = self.assertBooked(self.clinic.book(s.session_id, p, referral=ref.referral_id),
                              pb.POOL_RESERVED)
        self.assertEqual(b.referral_id, ref.referral_id)
        self.assertEqual(self.community.patient_bookings(p)[0][4], ref.referral_id)
        # Not a referral at all, someone else's, to another hospital, closed,
        # or a down-referral: FAILED_PRECONDITION on referral_id.
        to_tcm = self.refer_up(self.clinic, patient=q, to="tcm-hospital", department="acupuncture")
        cancelled = self.refer_up(self.clinic, patient=q)
        self.move(self.clinic, cancelled, pb.ACTION_CANCEL, "cancelled")
        down = self.refer_down(self.desk, patient=q)
        cases = [
            ("random uuid", rs.random_id()),
            ("another patient's referral", ref.referral_id),
            ("referral to another hospital", to_tcm.referral_id),
            ("cancelled referral", cancelled.referral_id),
            ("down-referral", down.referral_id),
        ]
        for what, rid in cases:
            with self.subTest(what):
                for c in (self.clinic, self.desk):
                    resp = c.book(s.session_id, q, referral=rid)
                    self.assertError(resp, pb.FAILED_PRECONDITION, field="referral_id")
        self.assertEqual(self.community.patient_bookings(q), [])
        # The desk books public with a referral too.
        ref_r = self.refer_up(self.clinic, patient=r)
        b = self.assertBooked(self.desk.book(s.session_id, r, referral=ref_r.referral_id),
                              pb.POOL_PUBLIC)
        self.assertEqual(b.referral_id, ref_r.referral_id)
        self.assertConsistent()

    def test_emergency_needs_a_green_channel_referral(self):
        s = self.publish_one(self.desk, capacity=2)
        p = self.community.patients(4)
        routine = self.refer_up(self.clinic, patient=p[0])
        urgent = self.refer_up(self.clinic, patient=p[1], urgency=pb.URGENCY_URGENT)
        emergency = self.refer_up(self.clinic, patient=p[2], urgency=pb.URGENCY_EMERGENCY)
        other_patient = self.refer_up(self.clinic, patient=p[3], urgency=pb.URGENCY_URGENT)
        for what, patient, rid in (("no referral", p[0], ""),
                                   ("routine referral", p[0], routine.referral_id),
                                   ("random uuid", p[0], rs.random_id()),
                                   ("another patient's", p[0], other_patient.referral_id)):
            with self.subTest(what):
                resp = self.desk.emergency(s.session_id, patient, referral=rid)
                self.assertError(resp, pb.FAILED_PRECONDITION, field="referral_id")
        self.assertCounters(s.session_id, emergency_booked=0)
        for patient, ref in ((p[1], urgent), (p[2], emergency)):
            b = self.assertBooked(self.desk.emergency(s.session_id, patient,
                                                      referral=ref.referral_id),
                                  pb.POOL_EMERGENCY)
            self.assertEqual(b.referral_id, ref.referral_id)
        self.assertCounters(s.session_id, emergency_booked=2)
        self.assertConsistent()


if __name__ == "__main__":
    unittest.main()
