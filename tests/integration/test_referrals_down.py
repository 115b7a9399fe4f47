#!/usr/bin/python3
"""Down-referrals (ReferDown, from a hospital's referral desk to a primary
institution, for recovery and follow-up): argument checks (care plan,
follow-up date within a year), routes (only downwards), the up-referral it
closes, idempotency; and their state machine: the family doctor accepts or
declines, records follow-ups, completes; the hospital may cancel."""

import datetime
import unittest

from harness import pb
import referrals_support as rs
import slots_support as ss


class ReferDownTest(rs.ReferralsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")

    def test_a_down_referral(self):
        p = self.community.patient()
        due = (self.community.today() + datetime.timedelta(days=14)).isoformat()
        ref = self.assertReferral(self.desk.refer_down(
            p, to="village-a", from_department="cardiology", diagnosis="I21.0",
            reason="stable after PCI", care_plan="aspirin; BP monthly", follow_up_due=due),
            "pending")
        self.assertTrue(ss.is_uuid(ref.referral_id))
        self.assertEqual(
            (ref.direction, ref.patient_id, ref.from_institution, ref.from_department,
             ref.from_practitioner, ref.to_institution, ref.diagnosis, ref.reason,
             ref.care_plan, ref.follow_up_due, ref.closes_referral_id, ref.version,
             ref.replayed, ref.follow_up_overdue),
            (pb.DIRECTION_DOWN, p, "county-hospital", "cardiology", "desk-clerk", "village-a",
             "I21.0", "stable after PCI", "aspirin; BP monthly", due, "", 1, False, False))
        self.assertEqual(self.community.history_rows(ref.referral_id),
                         [(1, "create", "", "pending", "desk-01", "desk", "")])
        self.assertEqual([e[1] for e in self.community.events(ref.referral_id)],
                         ["referral.create"])
        self.assertEqual(self.assertReferral(self.desk.get(ref.referral_id)), ref)
        # To a township centre, and from another county hospital.
        self.refer_down(self.desk, to="township-c")
        ref = self.refer_down(self.authed("desk-tcm"), to="village-b", from_department="")
        self.assertEqual((ref.from_institution, ref.to_institution), ("tcm-hospital", "village-b"))

    def test_arguments(self):
        p = self.community.patient()
        today = self.community.today()
        bad_dates = ["", "tomorrow", "2026/12/01", "2026-13-01", "20261201", "2026-1-05",
                     (today - datetime.timedelta(days=1)).isoformat(),
                     (today + datetime.timedelta(days=400)).isoformat()]
        cases = [("no care plan", dict(care_plan=""), pb.INVALID_ARGUMENT, "care_plan"),
                 ("no reason", dict(reason=""), pb.INVALID_ARGUMENT, "reason"),
                 ("bad diagnosis", dict(diagnosis="heart attack"), pb.INVALID_ARGUMENT,
                  "diagnosis"),
                 ("no key", dict(key=""), pb.INVALID_ARGUMENT, "idempotency_key"),
                 ("key too long", dict(key="k" * 129), pb.INVALID_ARGUMENT, "idempotency_key")]
        cases += [(f"follow_up_due {d!r}", dict(follow_up_due=d), pb.INVALID_ARGUMENT,
                   "follow_up_due") for d in bad_dates]
        for what, kw, code, field in cases:
            with self.subTest(what):
                self.assertError(self.desk.refer_down(p, **kw), code, field=field)
        for what, pid, code in (("not a uuid", "p-1", pb.INVALID_ARGUMENT),
                                ("unknown", rs.random_id(), pb.NOT_FOUND),
                                ("another community's", self.community.foreign_patient(),
                                 pb.NOT_FOUND)):
            with self.subTest(patient=what):
                self.assertError(self.desk.refer_down(pid), code, field="patient_id")
        self.assertEqual(self.community.patient_referrals(p), [])
        # The edges of the window: today, and a year ahead.
        for d in (today, today + datetime.timedelta(days=365)):
            with self.subTest(due=d.isoformat()):
                ref = self.refer_down(self.desk, follow_up_due=d.isoformat())
                self.assertEqual(ref.follow_up_due, d.isoformat())

    def test_impossible_date(self):
        """A date of the right shape that does not exist (February 30th,
        within the year ahead)."""
        p = self.community.patient()
        day = f"{self.community.today().year + 1}-02-30"
        resp = self.desk.refer_down(p, follow_up_due=day)
        self.assertError(resp, pb.INVALID_ARGUMENT, field="follow_up_due")
        self.assertEqual(self.community.patient_referrals(p), [])
        # A 29th of February exists in leap years only.
        leap = next(y for y in range(self.community.today().year + 1, 2200)
                    if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0))
        self.assertError(self.desk.refer_down(p, follow_up_due=f"{leap - 1}-02-29"),
                         pb.INVALID_ARGUMENT, field="follow_up_due")

    def test_only_downwards(self):
        p = self.community.patient()
        for to in ("tcm-hospital", "city-hospital", "outside-hospital", "county-hospital"):
            with self.subTest(to=to):
                self.assertError(self.desk.refer_down(p, to=to), pb.PERMISSION_DENIED,
                                 field="to_institution")
        self.assertEqual(self.community.patient_referrals(p), [])

    def test_roles(self):
        p = self.community.patient()
        for name in ("clinic", "billing", "monitor", "admin"):
            with self.subTest(role=name):
                self.assertError(self.authed(name).refer_down(p), pb.PERMISSION_DENIED)
        self.assertEqual(self.community.patient_referrals(p), [])

    def test_closes_an_up_referral(self):
        clinic = self.authed("clinic")
        p, q = self.community.patients(2)
        up = self.refer_up(clinic, patient=p)
        up_tcm = self.refer_up(clinic, patient=p, to="tcm-hospital", department="acupuncture")
        up_other = self.refer_up(clinic, patient=q)
        down = self.refer_down(self.desk, patient=p)
        for what, rid in (("random", rs.random_id()),
                          ("another patient's", up_other.referral_id),
                          ("to another hospital", up_tcm.referral_id),
                          ("a down-referral", down.referral_id)):
            with self.subTest(what):
                self.assertError(self.desk.refer_down(p, closes=rid), pb.NOT_FOUND,
                                 field="closes_referral_id")
        self.assertError(self.desk.refer_down(p, closes="up-1"), pb.INVALID_ARGUMENT,
                         field="closes_referral_id")
        self.assertEqual(len(self.community.patient_referrals(p)), 3)
        ref = self.refer_down(self.desk, patient=p, closes=up.referral_id)
        self.assertEqual(ref.closes_referral_id, up.referral_id)
        self.assertEqual(self.community.referral_row(ref.referral_id)["closes_referral"],
                         up.referral_id)

    def test_idempotency(self):
        p = self.community.patient()
        key = rs.new_key()
        due = (self.community.today() + datetime.timedelta(days=30)).isoformat()
        first = self.refer_down(self.desk, patient=p, key=key, follow_up_due=due)
        again = self.assertReferral(self.authed("desk").refer_down(p, key=key, follow_up_due=due),
                                    "pending")
        self.assertEqual((again.referral_id, again.replayed), (first.referral_id, True))
        self.assertError(self.desk.refer_down(p, key=key, follow_up_due=due, care_plan="other"),
                         pb.CONFLICT, field="idempotency_key")
        self.assertEqual(self.community.patient_referrals(p), [first.referral_id])
        # A refusal keeps no key.
        key2 = rs.new_key()
        self.assertError(self.desk.refer_down(p, key=key2, care_plan=""), pb.INVALID_ARGUMENT,
                         field="care_plan")
        ref = self.refer_down(self.desk, patient=p, key=key2)
        self.assertFalse(ref.replayed)


class DownCourseTest(rs.ReferralsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_accept_follow_up_complete(self):
        ref = self.refer_down(self.desk)
        # The hospital may not act for the clinic.
        self.assertRefused(self.desk, ref, pb.ACTION_ACCEPT, pb.PERMISSION_DENIED, "action")
        # Another clinic does not see it.
        self.assertRefused(self.authed("clinic-b"), ref, pb.ACTION_ACCEPT, pb.NOT_FOUND,
                           "referral_id")
        err = self.assertRefused(self.clinic, ref, pb.ACTION_FOLLOW_UP, pb.FAILED_PRECONDITION,
                                 "action", reason="seen")
        self.assertIn("pending", err.message)
        ref = self.move(self.clinic, ref, pb.ACTION_ACCEPT, "accepted", if_version=1)
        self.assertRefused(self.clinic, ref, pb.ACTION_COMPLETE, pb.FAILED_PRECONDITION, "action")
        self.assertRefused(self.clinic, ref, pb.ACTION_FOLLOW_UP, pb.INVALID_ARGUMENT, "reason")
        ref = self.move(self.clinic, ref, pb.ACTION_FOLLOW_UP, "followed_up",
                        reason="BP 130/80, walking 2 km a day")
        ref = self.move(self.clinic, ref, pb.ACTION_FOLLOW_UP, "followed_up",
                        reason="second visit: stable")
        ref = self.move(self.clinic, ref, pb.ACTION_COMPLETE, "completed")
        self.assertEqual(ref.version, 5)
        resp = self.desk.history(ref.referral_id)
        self.assertOk(resp, "history")
        self.assertEqual(
            [(e.action, e.from_state, e.to_state, e.terminal_id, e.role, e.reason)
             for e in resp.history.entries],
            [("create", "", "pending", "desk-01", "desk", ""),
             ("accept", "pending", "accepted", "clinic-01", "clinic", ""),
             ("follow_up", "accepted", "followed_up", "clinic-01", "clinic",
              "BP 130/80, walking 2 km a day"),
             ("follow_up", "followed_up", "followed_up", "clinic-01", "clinic",
              "second visit: stable"),
             ("complete", "followed_up", "completed", "clinic-01", "clinic", "")])

    def test_decline_and_cancel(self):
        ref = self.refer_down(self.desk)
        self.assertRefused(self.clinic, ref, pb.ACTION_DECLINE, pb.INVALID_ARGUMENT, "reason")
        self.move(self.clinic, ref, pb.ACTION_DECLINE, "declined",
                  reason="no rehabilitation capacity")
        # The hospital cancels, before or after acceptance; the clinic may not.
        ref = self.refer_down(self.desk)
        self.assertRefused(self.clinic, ref, pb.ACTION_CANCEL, pb.PERMISSION_DENIED, "action")
        self.move(self.desk, ref, pb.ACTION_CANCEL, "cancelled")
        ref = self.move(self.clinic, self.refer_down(self.desk), pb.ACTION_ACCEPT, "accepted")
        self.move(self.desk, ref, pb.ACTION_CANCEL, "cancelled", reason="readmitted")
        ref = self.move(self.clinic, self.refer_down(self.desk), pb.ACTION_ACCEPT, "accepted")
        ref = self.move(self.clinic, ref, pb.ACTION_FOLLOW_UP, "followed_up", reason="seen")
        self.assertRefused(self.desk, ref, pb.ACTION_CANCEL, pb.FAILED_PRECONDITION, "action")

    def test_up_only_actions(self):
        ref = self.refer_down(self.desk)
        for client, action in ((self.clinic, pb.ACTION_NO_SLOT), (self.clinic, pb.ACTION_RETURN),
                               (self.clinic, pb.ACTION_ARRIVE),
                               (self.clinic, pb.ACTION_REJECT), (self.clinic, pb.ACTION_REDIRECT),
                               (self.desk, pb.ACTION_REVERSE_NO_SHOW)):
            with self.subTest(action=pb.Action.Name(action)):
                self.assertRefused(client, ref, action, pb.INVALID_ARGUMENT, "action",
                                   reason="x", to_institution="village-b")
        # Admission into rehabilitation beds exists, once the patient is taken.
        for action in (pb.ACTION_ADMIT, pb.ACTION_DISCHARGE):
            with self.subTest(action=pb.Action.Name(action)):
                self.assertRefused(self.clinic, ref, action, pb.FAILED_PRECONDITION, "action")
        # Admins act for either side here too.
        admin = self.authed("admin")
        ref = self.move(admin, ref, pb.ACTION_ACCEPT, "accepted")
        self.move(admin, ref, pb.ACTION_CANCEL, "cancelled")


if __name__ == "__main__":
    unittest.main()
