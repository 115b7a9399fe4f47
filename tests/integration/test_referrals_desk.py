#!/usr/bin/python3
"""The receiving side of up-referrals (ReferralAction): accepting (with the
attached booking, booking a session now, or without one for emergencies),
the "no slot yet" list, rejecting, redirecting (a new referral, the original
linked to it), returning, the referring side's cancel, the patient's course
(arrive, admit, discharge, complete); the rules every move obeys (visibility,
if_version, actions per direction, legal states, the side that may move,
reasons); slots lost under a live referral; and the history every move
appends to, which nobody can change."""

import unittest

from harness import pb
import referrals_support as rs
import slots_support as ss
from referrals_support import future


class AcceptTest(rs.ReferralsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_accept_confirms_the_attached_booking(self):
        s = self.publish_one(self.desk, capacity=4)
        ref = self.refer_up(self.clinic, session_id=s.session_id)
        acc = self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted", if_version=1)
        self.assertEqual((acc.version, acc.booking_id, acc.session_id),
                         (2, ref.booking_id, s.session_id))
        self.assertEqual(self.community.booking_status(ref.booking_id), "booked")
        self.assertEqual(self.community.history_rows(ref.referral_id)[-1],
                         (2, "accept", "pending", "accepted", "desk-01", "desk", ""))
        self.assertCounters(s.session_id, reserved_booked=1)

    def test_accept_needs_a_slot(self):
        s = self.publish_one(self.desk, capacity=2)       # reserved 1, public 1
        p = self.community.patients(4)
        ref = self.refer_up(self.clinic, patient=p[0])
        err = self.assertRefused(self.desk, ref, pb.ACTION_ACCEPT, pb.FAILED_PRECONDITION,
                                 "session_id")
        self.assertIn("slot", err.message)
        # Booked now: the reserved pool first ...
        acc = self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted", session_id=s.session_id)
        self.assertEqual(acc.session_id, s.session_id)
        self.assertTrue(ss.is_uuid(acc.booking_id), acc)
        self.assertEqual(self.community.patient_bookings(p[0]),
                         [(acc.booking_id, str(s.session_id), "reserved", "booked",
                           ref.referral_id)])
        self.assertEqual(self.community.referral_row(ref.referral_id)["booking_id"],
                         acc.booking_id)
        # A referral holding a live booking is not booked twice.
        other = self.publish_one(self.desk, capacity=4, start=future(days=5))
        held = self.refer_up(self.clinic, patient=p[3], session_id=other.session_id)
        self.assertRefused(self.desk, held, pb.ACTION_ACCEPT, pb.CONFLICT, "session_id",
                           session_id=s.session_id)
        self.assertEqual(len(self.community.patient_bookings(p[3])), 1)
        # ... then public ...
        ref2 = self.refer_up(self.clinic, patient=p[1])
        acc2 = self.move(self.desk, ref2, pb.ACTION_ACCEPT, "accepted", session_id=s.session_id)
        self.assertEqual(self.community.patient_bookings(p[1])[0][2], "public")
        self.assertNotEqual(acc2.booking_id, acc.booking_id)
        # ... and a full session refuses, changing nothing.
        ref3 = self.refer_up(self.clinic, patient=p[2])
        self.assertRefused(self.desk, ref3, pb.ACTION_ACCEPT, pb.FULL, "session_id",
                           session_id=s.session_id)
        self.assertEqual(self.community.patient_bookings(p[2]), [])
        self.assertCounters(s.session_id, reserved_booked=1, public_booked=1)
        self.assertConsistent()

    def test_emergency_is_accepted_without_a_slot(self):
        ref = self.refer_up(self.clinic, urgency=pb.URGENCY_EMERGENCY)
        acc = self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted")
        self.assertEqual(acc.booking_id, "")
        # Urgent is not enough.
        urgent = self.refer_up(self.clinic, urgency=pb.URGENCY_URGENT)
        self.assertRefused(self.desk, urgent, pb.ACTION_ACCEPT, pb.FAILED_PRECONDITION,
                           "session_id")

    def test_no_slot_list_then_accept(self):
        s = self.publish_one(self.desk, capacity=4)
        ref = self.refer_up(self.clinic)
        waiting = self.move(self.desk, ref, pb.ACTION_NO_SLOT, "waiting_slot")
        self.assertRefused(self.desk, waiting, pb.ACTION_ACCEPT, pb.FAILED_PRECONDITION,
                           "session_id")
        acc = self.move(self.desk, waiting, pb.ACTION_ACCEPT, "accepted", session_id=s.session_id)
        self.assertTrue(acc.booking_id)
        self.assertEqual(self.community.history_actions(ref.referral_id),
                         ["create", "no_slot", "accept"])
        # A referral made waiting (full session, wait_if_full) is accepted the same way.
        full = self.publish_one(self.desk, capacity=1, start=future(days=5))   # reserved 1
        self.refer_up(self.clinic, session_id=full.session_id)
        w = self.refer_up(self.clinic, session_id=full.session_id, wait_if_full=True,
                          state="waiting_slot")
        acc = self.move(self.desk, w, pb.ACTION_ACCEPT, "accepted", session_id=s.session_id)
        self.assertEqual(acc.session_id, s.session_id)
        self.assertConsistent()


class CloseTest(rs.ReferralsTestCase):
    """Reject, redirect, return and cancel close a referral and give its slot back."""

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def booked_referral(self, capacity=4, **kw):
        s = self.publish_one(self.desk, capacity=capacity, start=future(days=3, hour=1))
        ref = self.refer_up(self.clinic, session_id=s.session_id, **kw)
        self.assertCounters(s.session_id, reserved_booked=1)
        return s, ref

    def assertReleased(self, s, ref):
        self.assertEqual(self.community.booking_status(ref.booking_id), "cancelled")
        self.assertCounters(s.session_id, reserved_booked=0, public_booked=0)
        self.assertConsistent()

    def test_reject(self):
        s, ref = self.booked_referral()
        self.assertRefused(self.desk, ref, pb.ACTION_REJECT, pb.INVALID_ARGUMENT, "reason")
        rej = self.move(self.desk, ref, pb.ACTION_REJECT, "rejected",
                        reason="treatable at the township centre")
        self.assertEqual(self.community.history_rows(ref.referral_id)[-1],
                         (2, "reject", "pending", "rejected", "desk-01", "desk",
                          "treatable at the township centre"))
        self.assertReleased(s, ref)
        # The unit is back: someone else gets it.
        self.assertBooked(self.clinic.book(s.session_id, self.community.patient()),
                          pb.POOL_RESERVED)
        # Closed: nothing more.
        err = self.assertRefused(self.desk, rej, pb.ACTION_ACCEPT, pb.FAILED_PRECONDITION,
                                 "action")
        self.assertIn("rejected", err.message)
        self.assertRefused(self.clinic, rej, pb.ACTION_CANCEL, pb.FAILED_PRECONDITION, "action")

    def test_redirect(self):
        s, ref = self.booked_referral(urgency=pb.URGENCY_URGENT)
        self.assertRefused(self.desk, ref, pb.ACTION_REDIRECT, pb.INVALID_ARGUMENT, "reason",
                           to_institution="tcm-hospital", to_department="acupuncture")
        for what, kw, code, field in (
                ("nowhere new", dict(to_institution="county-hospital",
                                     to_department="cardiology"),
                 pb.INVALID_ARGUMENT, "to_institution"),
                ("outside the network", dict(to_institution="outside-hospital",
                                             to_department="surgery"),
                 pb.PERMISSION_DENIED, "to_institution"),
                ("same level as the referring clinic", dict(to_institution="village-b"),
                 pb.PERMISSION_DENIED, "to_institution"),
                ("unknown department", dict(to_institution="tcm-hospital",
                                            to_department="dermatology"),
                 pb.NOT_FOUND, "to_department")):
            with self.subTest(what):
                self.assertRefused(self.desk, ref, pb.ACTION_REDIRECT, code, field,
                                   reason="elsewhere", **kw)
        self.assertEqual(len(self.community.patient_referrals(ref.patient_id)), 1)

        red = self.move(self.desk, ref, pb.ACTION_REDIRECT, "redirected",
                        reason="acupuncture first", to_institution="tcm-hospital",
                        to_department="acupuncture")
        self.assertTrue(ss.is_uuid(red.redirected_to), red)
        self.assertNotEqual(red.redirected_to, ref.referral_id)
        self.assertReleased(s, ref)
        # The new referral: pending, from the same clinic, to the new target.
        tcm = self.authed("desk-tcm")
        new = self.assertReferral(tcm.get(red.redirected_to), "pending")
        self.assertEqual(
            (new.redirected_from, new.version, new.patient_id, new.direction, new.urgency,
             new.from_institution, new.from_practitioner, new.to_institution,
             new.to_department, new.diagnosis, new.booking_id),
            (ref.referral_id, 1, ref.patient_id, pb.DIRECTION_UP, pb.URGENCY_URGENT,
             "village-a", "fd-a", "tcm-hospital", "acupuncture", ref.diagnosis, ""))
        self.assertEqual([h[1:4] for h in self.community.history_rows(new.referral_id)],
                         [("create", "", "pending")])
        self.assertEqual(self.community.referral_row(new.referral_id)["redirected_from"],
                         ref.referral_id)
        self.assertEqual(self.community.referral_row(ref.referral_id)["redirected_to"],
                         new.referral_id)
        # The clinic sees both; each hospital its own.
        self.assertReferral(self.clinic.get(new.referral_id), "pending")
        self.assertError(tcm.get(ref.referral_id), pb.NOT_FOUND, field="referral_id")
        self.assertError(self.desk.get(new.referral_id), pb.NOT_FOUND, field="referral_id")
        self.move(tcm, new, pb.ACTION_NO_SLOT, "waiting_slot")
        # A redirect to another department of the same hospital.
        _, ref2 = self.booked_referral()
        red2 = self.move(self.desk, ref2, pb.ACTION_REDIRECT, "redirected",
                         reason="internal medicine first", to_department="internal")
        new2 = self.assertReferral(self.desk.get(red2.redirected_to), "pending")
        self.assertEqual((new2.to_institution, new2.to_department, new2.redirected_from),
                         ("county-hospital", "internal", ref2.referral_id))

    def test_redirect_naming_nothing_new(self):
        """A redirect must name another institution or department."""
        s, ref = self.booked_referral()
        resp = self.desk.act(ref.referral_id, pb.ACTION_REDIRECT, reason="elsewhere")
        made = self.community.patient_referrals(ref.patient_id)
        row = self.community.referral_row(ref.referral_id)
        self.assertError(resp, pb.INVALID_ARGUMENT, field="to_institution")
        self.assertEqual((row["state"], row["version"]), ("pending", 1))
        self.assertEqual(made, [ref.referral_id])
        self.assertEqual(self.community.booking_status(ref.booking_id), "booked")

    def test_return_from_the_no_slot_list(self):
        s, ref = self.booked_referral()
        self.assertRefused(self.desk, ref, pb.ACTION_RETURN, pb.FAILED_PRECONDITION, "action",
                           reason="no slot")
        waiting = self.move(self.desk, ref, pb.ACTION_NO_SLOT, "waiting_slot")
        self.assertRefused(self.desk, waiting, pb.ACTION_RETURN, pb.INVALID_ARGUMENT, "reason")
        self.move(self.desk, waiting, pb.ACTION_RETURN, "returned",
                  reason="no cardiology slot this month: manage with the township centre")
        self.assertReleased(s, ref)

    def test_cancel_by_the_referring_clinic(self):
        for how in ("pending", "waiting_slot", "accepted"):
            with self.subTest(state=how):
                s, ref = self.booked_referral()
                if how == "waiting_slot":
                    ref = self.move(self.desk, ref, pb.ACTION_NO_SLOT, "waiting_slot")
                elif how == "accepted":
                    ref = self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted")
                self.assertRefused(self.desk, ref, pb.ACTION_CANCEL, pb.PERMISSION_DENIED,
                                   "action")
                self.move(self.clinic, ref, pb.ACTION_CANCEL, "cancelled",
                          reason="patient went to the city")
                self.assertReleased(s, ref)
                self.assertOk(self.desk.cancel_session(s.session_id, "cleanup"),
                              "cancel_session")
        # Not after arrival.
        s, ref = self.booked_referral()
        ref = self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted")
        ref = self.move(self.desk, ref, pb.ACTION_ARRIVE, "arrived")
        err = self.assertRefused(self.clinic, ref, pb.ACTION_CANCEL, pb.FAILED_PRECONDITION,
                                 "action")
        self.assertIn("arrived", err.message)


class CourseTest(rs.ReferralsTestCase):
    """After acceptance: arrival, admission, discharge, completion."""

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_full_course_and_its_history(self):
        s = self.publish_one(self.desk, capacity=4)
        ref = self.refer_up(self.clinic, session_id=s.session_id)
        steps = [(pb.ACTION_ACCEPT, "accepted", ""), (pb.ACTION_ARRIVE, "arrived", ""),
                 (pb.ACTION_ADMIT, "admitted", "for PCI"), (pb.ACTION_DISCHARGE, "discharged", ""),
                 (pb.ACTION_COMPLETE, "completed", "")]
        for action, state, reason in steps:
            ref = self.move(self.desk, ref, action, state, reason=reason, if_version=ref.version)
            # The answer is the referral as it now is.
            self.assertEqual(self.assertReferral(self.desk.get(ref.referral_id)), ref)
        self.assertEqual(ref.version, 6)
        # The booking was used, not released.
        self.assertEqual(self.community.booking_status(ref.booking_id), "booked")
        # GetHistory: every move, in order, with who and why.
        for c in (self.desk, self.clinic):
            resp = c.history(ref.referral_id)
            self.assertOk(resp, "history")
            h = resp.history
            self.assertEqual(h.referral_id, ref.referral_id)
            self.assertEqual(
                [(e.seq, e.action, e.from_state, e.to_state, e.terminal_id, e.role,
                  e.institution_id, e.reason) for e in h.entries],
                [(1, "create", "", "pending", "clinic-01", "clinic", "village-a", ""),
                 (2, "accept", "pending", "accepted", "desk-01", "desk", "county-hospital", ""),
                 (3, "arrive", "accepted", "arrived", "desk-01", "desk", "county-hospital", ""),
                 (4, "admit", "arrived", "admitted", "desk-01", "desk", "county-hospital",
                  "for PCI"),
                 (5, "discharge", "admitted", "discharged", "desk-01", "desk",
                  "county-hospital", ""),
                 (6, "complete", "discharged", "completed", "desk-01", "desk",
                  "county-hospital", "")])
            self.assertEqual([e.practitioner_id for e in h.entries],
                             ["fd-a"] + ["desk-clerk"] * 5)
            self.assertTrue(all(e.at > 0 for e in h.entries), h)
            micros = [e.at_micros for e in h.entries]
            self.assertEqual(micros, sorted(micros))
            # The same instant (in whole seconds, however rounded).
            self.assertTrue(all(abs(e.at * 1000000 - e.at_micros) <= 1000000
                                for e in h.entries), h)
        err = self.assertRefused(self.desk, ref, pb.ACTION_ARRIVE, pb.FAILED_PRECONDITION,
                                 "action")
        self.assertIn("completed", err.message)

    def test_shorter_courses(self):
        s = self.publish_one(self.desk, capacity=4)
        p = self.community.patients(2)
        # Admitted straight from accepted.
        ref = self.refer_up(self.clinic, patient=p[0], session_id=s.session_id)
        ref = self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted")
        err = self.assertRefused(self.desk, ref, pb.ACTION_DISCHARGE, pb.FAILED_PRECONDITION,
                                 "action")
        self.assertIn("accepted", err.message)
        self.assertIn("admitted", err.message)        # where it could be done from
        ref = self.move(self.desk, ref, pb.ACTION_ADMIT, "admitted")
        self.assertRefused(self.desk, ref, pb.ACTION_COMPLETE, pb.FAILED_PRECONDITION, "action")
        # An outpatient visit: arrived, then completed.
        ref = self.refer_up(self.clinic, patient=p[1], session_id=s.session_id)
        ref = self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted")
        ref = self.move(self.desk, ref, pb.ACTION_ARRIVE, "arrived")
        self.move(self.desk, ref, pb.ACTION_COMPLETE, "completed")


class RulesTest(rs.ReferralsTestCase):
    """What every move is checked for."""

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_which_referral(self):
        ref = self.refer_up(self.clinic)
        self.assertError(self.desk.act("ref-1", pb.ACTION_ACCEPT), pb.INVALID_ARGUMENT,
                         field="referral_id")
        self.assertError(self.desk.act("", pb.ACTION_ACCEPT), pb.INVALID_ARGUMENT,
                         field="referral_id")
        self.assertError(self.desk.act(rs.random_id(), pb.ACTION_NO_SLOT), pb.NOT_FOUND,
                         field="referral_id")
        # Not visible to other institutions: the same as missing.
        for name, action in (("desk-tcm", pb.ACTION_NO_SLOT), ("clinic-b", pb.ACTION_CANCEL),
                             ("desk-city", pb.ACTION_NO_SLOT)):
            with self.subTest(terminal=name):
                self.assertRefused(self.authed(name), ref, action, pb.NOT_FOUND, "referral_id")
        for name in ("billing", "monitor"):
            with self.subTest(role=name):
                self.assertError(self.authed(name).act(ref.referral_id, pb.ACTION_NO_SLOT),
                                 pb.PERMISSION_DENIED)
        self.assertEqual(self.community.referral_row(ref.referral_id)["version"], 1)

    def test_if_version(self):
        ref = self.refer_up(self.clinic)
        waiting = self.move(self.desk, ref, pb.ACTION_NO_SLOT, "waiting_slot", if_version=1)
        err = self.assertRefused(self.desk, waiting, pb.ACTION_REJECT, pb.CONFLICT, "if_version",
                                 reason="x", if_version=1)
        self.assertIn("waiting_slot", err.message)
        err = self.assertRefused(self.desk, waiting, pb.ACTION_REJECT, pb.CONFLICT, "if_version",
                                 reason="x", if_version=7)
        self.assertIn("waiting_slot", err.message)
        # The version seen, or none at all, goes through.
        self.move(self.desk, waiting, pb.ACTION_REJECT, "rejected", reason="x", if_version=2)

    def test_actions_per_direction_and_state(self):
        ref = self.refer_up(self.clinic)
        for action in (pb.ACTION_DECLINE, pb.ACTION_FOLLOW_UP, pb.ACTION_NONE, 99):
            with self.subTest(action=action):
                self.assertRefused(self.desk, ref, action, pb.INVALID_ARGUMENT, "action",
                                   reason="note")
        for action in (pb.ACTION_ARRIVE, pb.ACTION_ADMIT, pb.ACTION_DISCHARGE,
                       pb.ACTION_COMPLETE, pb.ACTION_RETURN, pb.ACTION_REVERSE_NO_SHOW):
            with self.subTest(action=pb.Action.Name(action)):
                err = self.assertRefused(self.desk, ref, action, pb.FAILED_PRECONDITION,
                                         "action", reason="note")
                self.assertIn("pending", err.message)

    def test_sides(self):
        s = self.publish_one(self.desk, capacity=6)
        p = self.community.patients(3)
        ref = self.refer_up(self.clinic, patient=p[0], session_id=s.session_id)
        # The referring clinic may not act for the hospital ...
        for action, reason in ((pb.ACTION_ACCEPT, ""), (pb.ACTION_REJECT, "no"),
                               (pb.ACTION_NO_SLOT, ""),
                               (pb.ACTION_REDIRECT, "elsewhere")):
            with self.subTest(action=pb.Action.Name(action)):
                self.assertRefused(self.clinic, ref, action, pb.PERMISSION_DENIED, "action",
                                   reason=reason, to_institution="tcm-hospital",
                                   to_department="acupuncture")
        # ... nor the hospital for the clinic.
        self.assertRefused(self.desk, ref, pb.ACTION_CANCEL, pb.PERMISSION_DENIED, "action")
        # The desk's moves go on; the clinic still may not make them.
        acc = self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted")
        self.assertRefused(self.clinic, acc, pb.ACTION_ARRIVE, pb.PERMISSION_DENIED, "action")
        # Admins make the moves of either side.
        admin = self.authed("admin")
        ref2 = self.refer_up(self.clinic, patient=p[1], session_id=s.session_id)
        ref2 = self.move(admin, ref2, pb.ACTION_ACCEPT, "accepted")
        self.assertEqual(self.community.history_rows(ref2.referral_id)[-1][4:6],
                         ("admin-01", "admin"))
        self.move(admin, ref2, pb.ACTION_CANCEL, "cancelled")
        ref3 = self.refer_up(self.clinic, patient=p[2])
        self.move(admin, ref3, pb.ACTION_REJECT, "rejected", reason="duplicate")
        self.assertConsistent()


class SlotLostTest(rs.ReferralsTestCase):
    """A live referral whose booking is cancelled under it waits for a slot again."""

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_cancel_booking_under_a_pending_referral(self):
        s = self.publish_one(self.desk, capacity=4)
        ref = self.refer_up(self.clinic, session_id=s.session_id)
        self.assertOk(self.clinic.cancel(ref.booking_id, "wrong day"), "booking")
        got = self.assertReferral(self.desk.get(ref.referral_id), "waiting_slot")
        self.assertEqual(got.version, 2)
        self.assertEqual(self.community.history_rows(ref.referral_id)[-1][1:6],
                         ("slot_lost", "pending", "waiting_slot", "clinic-01", "clinic"))
        self.assertIn("referral.slot_lost",
                      [e[1] for e in self.community.events(ref.referral_id)])
        # A new slot, and on it goes.
        self.move(self.desk, got, pb.ACTION_ACCEPT, "accepted", session_id=s.session_id)
        self.assertConsistent()

    def test_cancel_session_under_an_accepted_referral(self):
        s = self.publish_one(self.desk, capacity=4)
        other = self.publish_one(self.desk, capacity=4, start=future(days=5))
        p = self.community.patients(2)
        acc = self.move(self.desk, self.refer_up(self.clinic, patient=p[0],
                                                 session_id=s.session_id),
                        pb.ACTION_ACCEPT, "accepted")
        closed = self.move(self.desk, self.refer_up(self.clinic, patient=p[1],
                                                    session_id=s.session_id),
                           pb.ACTION_REJECT, "rejected", reason="not indicated")
        self.assertOk(self.desk.cancel_session(s.session_id, "expert ill"), "cancel_session")
        got = self.assertReferral(self.clinic.get(acc.referral_id), "waiting_slot")
        self.assertEqual(got.version, 3)
        self.assertEqual(self.community.history_rows(acc.referral_id)[-1][1:6],
                         ("slot_lost", "accepted", "waiting_slot", "desk-01", "desk"))
        # A closed referral stays as it was.
        self.assertEqual(self.community.referral_row(closed.referral_id)["version"], 2)
        self.assertEqual(self.community.history_actions(closed.referral_id), ["create", "reject"])
        acc2 = self.move(self.desk, got, pb.ACTION_ACCEPT, "accepted",
                         session_id=other.session_id)
        self.assertEqual(acc2.session_id, other.session_id)


class HistoryIsAppendOnlyTest(rs.ReferralsTestCase):

    def test_history_cannot_be_changed(self):
        desk = self.authed("desk")
        ref = self.refer_up()
        self.move(desk, ref, pb.ACTION_REJECT, "rejected", reason="not indicated")
        where = self.community.where(ref.referral_id)
        for sql in (f"UPDATE referral_history SET reason = 'forged' WHERE {where}",
                    f"DELETE FROM referral_history WHERE {where}",
                    f"UPDATE referral_history SET to_state = 'accepted' WHERE {where} AND seq = 2"):
            with self.subTest(sql=sql.split()[0]):
                with self.assertRaisesRegex(AssertionError, "append-only"):
                    self.community.psql(sql)
        self.assertEqual([h[1:] for h in self.community.history_rows(ref.referral_id)],
                         [("create", "", "pending", "clinic-01", "clinic", ""),
                          ("reject", "pending", "rejected", "desk-01", "desk", "not indicated")])
        # GetHistory: the arguments.
        self.assertError(desk.history("nope"), pb.INVALID_ARGUMENT, field="referral_id")
        self.assertError(desk.history(rs.random_id()), pb.NOT_FOUND, field="referral_id")
        self.assertError(desk.get("nope"), pb.INVALID_ARGUMENT, field="referral_id")
        self.assertError(desk.get(rs.random_id()), pb.NOT_FOUND, field="referral_id")


if __name__ == "__main__":
    unittest.main()
