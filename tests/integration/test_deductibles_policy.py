#!/usr/bin/python3
"""The community's deductible policy and its history: SetDeductiblePolicy
(admins) and GetDeductiblePolicy, every change kept as a numbered version
(through the request or by SQL), a change applying only to admissions after
it while decisions already made keep their version, the policy "none", and
a level and scheme without an amount."""

import time
import unittest

import deductibles_support as ds
from harness import pb, sql_literal


class PolicyTest(ds.DeductiblesTestCase):
    community_options = {"policy": "waive", "window_days": 15}
    own_community = True

    def chain_for_new_patient(self):
        """A township stay ended an hour ago, then the county hospital
        admits the patient through an up-referral: the county decision."""
        p = self.community.patient()
        ds.direct("township-c", 48, 1).make(self, p)
        stay, _ = ds.up("township-c").make(self, p)
        return self.audited(stay)

    def test_a_change_applies_to_later_admissions_only(self):
        admin = self.term("admin")
        # Back to waive and the usual amounts for the other tests, whatever happens.
        self.addCleanup(lambda: self.assertOk(admin.set_policy(
            "waive", 15, [(("county", "resident"), ds.AMOUNTS[("county", "resident")])]),
            "deductible_policy"))
        first = self.policy()
        v = first.version
        self.assertEqual((first.policy, first.window_days, first.latest_version), ("waive", 15, v))
        self.assertEqual({(a.level, a.scheme): a.amount_fen for a in first.amounts}, ds.AMOUNTS)
        before = self.chain_for_new_patient()
        self.assertEqual((before.policy_version, before.rule, before.due_fen), (v, "waive", 0))
        # The county raises the county deductible and counts continuously now.
        resp = admin.set_policy("continuous", 10, [(("county", "resident"), 70000)])
        self.assertOk(resp, "deductible_policy")
        second = resp.deductible_policy
        self.assertEqual((second.version, second.latest_version, second.policy,
                          second.window_days, second.set_by),
                         (v + 1, v + 1, "continuous", 10, "admin-01"))
        self.assertGreaterEqual(second.effective_from, first.effective_from)
        amounts = {(a.level, a.scheme): a.amount_fen for a in second.amounts}
        self.assertEqual(amounts, {**ds.AMOUNTS, ("county", "resident"): 70000})
        after = self.chain_for_new_patient()
        self.assertEqual((after.policy_version, after.rule, after.own_deductible_fen,
                          after.due_fen, after.window_days),
                         (v + 1, "continuous", 70000, 50000, 10))
        # The earlier decision keeps the policy it was made under.
        self.assertEqual(self.audited(before.stay_id), before)
        # The old version is still there to read, unchanged.
        old = self.policy(v)
        self.assertEqual(old.latest_version, v + 1)
        old.latest_version = v
        self.assertEqual(old, first)
        # Setting the same again makes no new version.
        again = admin.set_policy("continuous", 10)
        self.assertEqual(again.deductible_policy.version, v + 1)
        # A change made in the database by hand is a version too.
        self.community.set(chain_window_days=3)
        third = self.policy()
        self.assertEqual((third.version, third.window_days, third.set_by), (v + 2, 3, ""))
        # Versions are never changed.
        with self.assertRaisesRegex(AssertionError, "append-only"):
            self.community.psql("UPDATE deductible_policy_versions SET window_days = 30 "
                                f"WHERE community_id = {sql_literal(self.community.community_id)}")
        with self.assertRaisesRegex(AssertionError, "append-only"):
            self.community.psql("DELETE FROM deductible_decisions "
                                f"WHERE community_id = {sql_literal(self.community.community_id)}")

    def test_a_stay_recorded_late_takes_the_policy_of_its_admission(self):
        """A stay admitted before a change but recorded after it is decided
        under the version in force when the patient was admitted."""
        admin = self.term("admin")
        resp = admin.set_policy("none", 15)
        self.assertOk(resp, "deductible_policy")
        then = resp.deductible_policy.version
        # Whole seconds on the wire: an admission a second after that change,
        # and the next change a second after the admission.
        time.sleep(1.1)
        admitted = int(time.time())
        time.sleep(1.1)
        self.assertOk(admin.set_policy("waive", 15), "deductible_policy")
        late = self.assertDeductible(self.term("billing").record_stay(
            self.community.patient(), admitted_at=admitted))
        self.assertEqual((late.policy_version, late.policy), (then, "none"))
        self.assertEqual(self.policy().policy, "waive")

    def test_policy_none(self):
        """Policy none: the chain is still found and recorded, but every stay
        pays its full deductible."""
        admin = self.term("admin")
        self.assertOk(admin.set_policy("none", 15), "deductible_policy")
        try:
            d = self.chain_for_new_patient()
            self.assertEqual((d.policy, d.rule, d.chain_position, d.due_fen),
                             ("none", "policy_none", 2, 50000))
        finally:
            self.assertOk(admin.set_policy("waive", 15), "deductible_policy")

    def test_no_amount_for_a_level_and_scheme(self):
        """A community that has no amount for a level and scheme decides
        nothing for such a stay, and says so; the stay is still recorded."""
        c = sql_literal(self.community.community_id)
        self.community.psql(f"DELETE FROM community_deductibles WHERE community_id = {c}"
                            " AND level = 'city' AND scheme = 'employee'")
        try:
            p = self.community.patient_with("employee")
            d = self.audited(self.assertDeductible(self.term("admin").record_stay(
                p, institution="city-hospital")).stay_id)
            self.assertEqual((d.amount_configured, d.rule, d.due_fen), (False, "not_configured", 0))
            self.assertIn("no deductible", d.explanation)
        finally:
            self.community.psql("INSERT INTO community_deductibles VALUES "
                                f"({c}, 'city', 'employee', {ds.AMOUNTS[('city', 'employee')]})")

    def test_who_may_set_and_arguments(self):
        for name in ("billing", "desk", "clinic", "monitor"):
            with self.subTest(sets=name):
                self.assertError(self.term(name).set_policy("waive", 15), pb.PERMISSION_DENIED)
            with self.subTest(reads=name):
                self.assertOk(self.term(name).get_policy(), "deductible_policy")
        admin = self.term("admin")
        latest = self.policy().version
        cases = [
            ("unknown policy", ("halve", 15, []), "policy"),
            ("window over a year", ("waive", 367, []), "window_days"),
            ("unknown level", ("waive", 15, [(("province", "resident"), 1)]), "amounts"),
            ("unknown scheme", ("waive", 15, [(("county", "private"), 1)]), "amounts"),
            ("negative amount", ("waive", 15, [(("county", "resident"), -1)]), "amounts"),
            ("the same pair twice", ("waive", 15, [(("county", "resident"), 1),
                                                   (("county", "resident"), 2)]), "amounts"),
        ]
        for words, args, field in cases:
            with self.subTest(words):
                self.assertError(admin.set_policy(*args), pb.INVALID_ARGUMENT, field=field)
        self.assertEqual(self.policy().version, latest)
        self.assertError(admin.get_policy(latest + 5), pb.NOT_FOUND, field="version")


if __name__ == "__main__":
    unittest.main()
