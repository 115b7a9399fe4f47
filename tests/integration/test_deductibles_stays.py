#!/usr/bin/python3
"""Stays and their decisions beyond the rule itself: a retried admission
makes no second decision, a reversal is explicit and recorded and takes the
stay out of later chains, discharges, who may record and see which stays,
and the argument checks of RecordStay, DischargeStay and ReverseStay."""

import unittest

import deductibles_support as ds
from deductibles_support import hours_ago
from harness import pb


class RetriedAdmissionTest(ds.DeductiblesTestCase):

    def test_a_retried_direct_admission_replays_the_first(self):
        """The billing office's system sends RecordStay again after a lost
        answer: the same stay and decision come back, nothing new is made."""
        p = self.community.patient()
        billing = self.term("billing")
        first = self.assertDeductible(billing.record_stay(p, key="adm-1"), replayed=False)
        again = self.assertDeductible(billing.record_stay(p, key="adm-1"), replayed=True)
        self.assertEqual(again.stay_id, first.stay_id)
        first.replayed = True
        self.assertEqual(again, first)
        self.assertEqual(self.community.decision_count(p), 1)
        # The same key for another request is a conflict, and makes nothing.
        self.assertError(billing.record_stay(p, key="adm-1", scheme="employee"), pb.CONFLICT,
                         field="idempotency_key")
        # A new key while the patient is still admitted here: the stay in the
        # way is named, nothing is made.
        resp = billing.record_stay(p)
        self.assertError(resp, pb.CONFLICT, field="patient_id")
        self.assertIn(first.stay_id, resp.error.message)
        self.assertEqual(self.community.decision_count(p), 1)

    def test_a_retried_referral_admission_makes_no_second_stay(self):
        """The desk presses admit twice: the second is refused by the
        referral's state, and the referral keeps its one stay."""
        p = self.community.patient()
        ds.direct("township-c", 50, 1).make(self, p)
        _, close = ds.up("township-c").make(self, p)
        ref_id = self.community.patient_referrals(p)[-1]
        ref = self.assertReferral(self.term("desk").get(ref_id), "admitted")
        self.assertRefused(self.term("desk"), ref, pb.ACTION_ADMIT, pb.FAILED_PRECONDITION,
                           "action")
        self.assertEqual(self.community.decision_count(p), 2)
        self.assertEqual(self.stay_of_referral(ref_id).rule, "waive")
        # Discharging through the referral ends the stay.
        close()
        self.assertGreater(self.stay_of_referral(ref_id).discharged_at, 0)


class ReversalTest(ds.DeductiblesTestCase):

    def test_a_reversal_is_recorded_and_leaves_later_chains(self):
        """A township stay recorded for the wrong patient is reversed: its
        decision stays as it was, marked reversed with who and why, and the
        patient's next admission through a referral does not chain on it."""
        p = self.community.patient()
        billing = self.term("billing-c")
        stay, _ = ds.direct("township-c", 30, 2).make(self, p)
        before = self.decision(stay)
        self.assertError(billing.reverse_stay(stay, reason=""), pb.INVALID_ARGUMENT,
                         field="reason")
        after = self.assertDeductible(billing.reverse_stay(stay, reason="wrong patient"),
                                      replayed=False)
        self.assertEqual((after.reversed, after.reversal_reason, after.reversed_by),
                         (True, "wrong patient", "billing-c-01"))
        self.assertGreater(after.reversed_at, 0)
        # The decision itself is unchanged.
        for field in ("due_fen", "own_deductible_fen", "rule", "explanation", "policy_version",
                      "decided_at", "chain_position"):
            self.assertEqual(getattr(after, field), getattr(before, field), field)
        # Reversing twice changes nothing more.
        again = self.assertDeductible(billing.reverse_stay(stay, reason="again"), replayed=True)
        self.assertEqual(again.reversal_reason, "wrong patient")
        self.assertError(billing.discharge_stay(stay), pb.FAILED_PRECONDITION, field="stay_id")
        # The next admission through a referral finds no previous stay.
        county, _ = ds.up("township-c").make(self, p)
        d = self.audited(county)
        self.assertEqual((d.rule, d.due_fen, d.previous_stay_id), ("no_previous_stay", 50000, ""))
        # Totals leave the reversed stay out; the list still shows it.
        resp = self.term("admin").list_deductibles(patient_id=p)
        self.assertOk(resp, "deductibles")
        got = resp.deductibles
        self.assertEqual([(x.stay_id, x.reversed) for x in got.deductibles],
                         [(stay, True), (county, False)])
        self.assertEqual((got.total_count, got.total_due_fen, got.total_waived_fen), (2, 50000, 0))
        live = self.term("admin").list_deductibles(patient_id=p, live_only=True)
        self.assertEqual([x.stay_id for x in live.deductibles.deductibles], [county])

    def test_a_wrong_referral_admission_is_reversed_and_recorded_again(self):
        """The desk admitted a referral while the patient's registered scheme
        was wrong: billing reverses the stay, the scheme is corrected, and
        billing records the referral's stay again; the new decision is made
        afresh and the chain is kept."""
        p = self.community.patient()
        ds.direct("township-c", 50, 1).make(self, p)
        wrong, _ = ds.up("township-c").make(self, p)
        ref_id = self.community.patient_referrals(p)[-1]
        billing = self.term("billing")
        # While the first stands, the referral has its stay.
        self.assertError(billing.record_stay(p, referral=ref_id), pb.CONFLICT, field="referral_id")
        # Through DischargeStay only once the referral has moved on.
        self.assertError(billing.discharge_stay(wrong), pb.FAILED_PRECONDITION, field="stay_id")
        self.assertDeductible(billing.reverse_stay(wrong,
                                                   reason="admitted as resident, is employee"))
        right = self.assertDeductible(billing.record_stay(
            p, referral=ref_id, scheme="employee", admitted_at=self.decision(wrong).admitted_at))
        self.assertNotEqual(right.stay_id, wrong)
        d = self.audited(right.stay_id)
        self.assertEqual((d.scheme, d.referral_id, d.rule, d.own_deductible_fen, d.due_fen),
                         ("employee", ref_id, "waive", 60000, 0))
        self.assertEqual(self.stay_of_referral(ref_id).stay_id, right.stay_id)
        # A referral that was never admitted cannot be recorded this way.
        other = self.refer_up(self.term("clinic-c"), patient=self.community.patient())
        self.assertError(billing.record_stay(other.patient_id, referral=other.referral_id),
                         pb.FAILED_PRECONDITION, field="referral_id")


class DischargeTest(ds.DeductiblesTestCase):

    def test_direct_discharge(self):
        p = self.community.patient()
        billing = self.term("billing")
        d = self.assertDeductible(billing.record_stay(p, admitted_at=hours_ago(30)))
        self.assertEqual(d.discharged_at, 0)
        self.assertError(billing.discharge_stay(d.stay_id, at=hours_ago(40)), pb.INVALID_ARGUMENT,
                         field="discharged_at")
        at = hours_ago(2)
        out = self.assertDeductible(billing.discharge_stay(d.stay_id, at=at), replayed=False)
        self.assertEqual(out.discharged_at, at)
        # Discharged already: answered as it is.
        again = self.assertDeductible(billing.discharge_stay(d.stay_id), replayed=True)
        self.assertEqual(again.discharged_at, out.discharged_at)
        # Now the patient may be admitted here again.
        self.assertDeductible(billing.record_stay(p))


class ArgumentsAndScopeTest(ds.DeductiblesTestCase):

    def test_arguments(self):
        p = self.community.patient()
        billing = self.term("billing")
        cases = [
            ("no key", dict(key=""), pb.INVALID_ARGUMENT, "idempotency_key"),
            ("patient not a uuid", dict(patient_id="patient-7"), pb.INVALID_ARGUMENT,
             "patient_id"),
            ("unknown patient", dict(patient_id=ds.rs.random_id()), pb.NOT_FOUND, "patient_id"),
            ("unknown scheme", dict(scheme="commercial"), pb.INVALID_ARGUMENT, "scheme"),
            ("admitted in the future", dict(admitted_at=hours_ago(-2)), pb.INVALID_ARGUMENT,
             "admitted_at"),
            ("admitted more than a year ago", dict(admitted_at=hours_ago(24 * 400)),
             pb.INVALID_ARGUMENT, "admitted_at"),
            ("discharged before admitted", dict(admitted_at=hours_ago(5),
                                                discharged_at=hours_ago(6)),
             pb.INVALID_ARGUMENT, "discharged_at"),
            ("referral not a uuid", dict(referral="r-1"), pb.INVALID_ARGUMENT, "referral_id"),
            ("another institution's stay", dict(institution="township-c"), pb.PERMISSION_DENIED,
             "institution_id"),
        ]
        for words, fields, code, field in cases:
            with self.subTest(words):
                patient = fields.pop("patient_id", p)
                self.assertError(billing.record_stay(patient, **fields), code, field=field)
        self.assertEqual(self.community.decision_count(p), 0)
        admin = self.term("admin")
        self.assertError(admin.record_stay(p), pb.INVALID_ARGUMENT, field="institution_id")
        self.assertError(admin.record_stay(p, institution="nowhere"), pb.NOT_FOUND,
                         field="institution_id")
        for bad in (billing.discharge_stay("x"), billing.reverse_stay("x"),
                    billing.get_deductible("")):
            self.assertError(bad, pb.INVALID_ARGUMENT, field="stay_id")
        self.assertError(billing.get_deductible(ds.rs.random_id()), pb.NOT_FOUND, field="stay_id")
        self.assertError(billing.list_deductibles(page_token="nonsense"), pb.INVALID_ARGUMENT,
                         field="page_token")
        self.assertError(billing.list_deductibles(since=hours_ago(1), until=hours_ago(2)),
                         pb.INVALID_ARGUMENT, field="until")

    def test_who_records_and_who_sees(self):
        p = self.community.patient()
        county = self.assertDeductible(self.term("billing").record_stay(
            p, admitted_at=hours_ago(10), discharged_at=hours_ago(9)))
        township = self.assertDeductible(self.term("admin").record_stay(
            p, institution="township-c", admitted_at=hours_ago(5)))
        self.assertEqual(township.recorded_by, "admin-01")
        # Only billing offices and admins record; desks admit through referrals.
        for name in ("clinic", "desk", "monitor"):
            with self.subTest(records=name):
                self.assertError(self.term(name).record_stay(p), pb.PERMISSION_DENIED)
        for name in ("clinic", "desk"):
            with self.subTest(reads=name):
                self.assertError(self.term(name).get_deductible(county.stay_id),
                                 pb.PERMISSION_DENIED)
                self.assertError(self.term(name).list_deductibles(), pb.PERMISSION_DENIED)
        # A billing office sees its own institution's stays, and changes only those.
        billing_c = self.term("billing-c")
        self.assertError(billing_c.get_deductible(county.stay_id), pb.NOT_FOUND, field="stay_id")
        self.assertError(billing_c.reverse_stay(county.stay_id), pb.NOT_FOUND, field="stay_id")
        self.assertError(billing_c.discharge_stay(county.stay_id), pb.NOT_FOUND, field="stay_id")
        mine = billing_c.list_deductibles(patient_id=p)
        self.assertEqual([d.stay_id for d in mine.deductibles.deductibles], [township.stay_id])
        # Monitors and admins see the whole community.
        for name in ("monitor", "admin"):
            seen = self.term(name).list_deductibles(patient_id=p)
            self.assertEqual([d.stay_id for d in seen.deductibles.deductibles],
                             [county.stay_id, township.stay_id])

    def test_pages(self):
        p = self.community.patient()
        admin = self.term("admin")
        stays = [self.assertDeductible(admin.record_stay(
            p, institution="township-c", admitted_at=hours_ago(50 - 5 * i),
            discharged_at=hours_ago(48 - 5 * i))).stay_id for i in range(5)]
        got, token, pages = [], "", 0
        while True:
            resp = admin.list_deductibles(patient_id=p, page_size=2, page_token=token)
            self.assertOk(resp, "deductibles")
            self.assertEqual(resp.deductibles.total_count, 5)
            self.assertEqual(resp.deductibles.total_due_fen, 5 * 20000)
            got += [d.stay_id for d in resp.deductibles.deductibles]
            pages += 1
            token = resp.deductibles.next_page_token
            if not token:
                break
        self.assertEqual((got, pages), (stays, 3))
        # A period: admitted from 42 to 32 hours ago (the second and third).
        resp = admin.list_deductibles(patient_id=p, since=hours_ago(42), until=hours_ago(32))
        self.assertEqual([d.stay_id for d in resp.deductibles.deductibles], stays[2:4])


if __name__ == "__main__":
    unittest.main()
