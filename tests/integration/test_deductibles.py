#!/usr/bin/python3
"""The second insurance deductible, case by case: each row of the tables
below is one patient's course through the community in plain words, the
stays it makes (recorded directly by a billing office, or admitted through
an up- or down-referral), and the deductible each stay must be decided
(in fen) under the community's policy. Every decision is also recomputed by
hand from its own record and the policy version it names (audit()).

Amounts (fen): village 10000 / 15000, township 20000 / 30000, county
50000 / 60000, city 100000 / 120000 (resident / employee). Window: 15 days.
"""

import unittest

import deductibles_support as ds
from deductibles_support import Case, direct, down, up

WAIVE_CASES = [
    Case("Fujian waive on an up-referral transfer: a township inpatient sent up to the county "
         "hospital on the day of discharge pays no second deductible",
         [direct("township-c", 120, 1), up("township-c")],
         due=[20000, 0], rules=["no_referral", "waive"]),
    Case("An outpatient referred up by the village clinic had no stay there: the county stay "
         "is the first of its chain and pays in full",
         [up("village-a")],
         due=[50000], rules=["no_previous_stay"]),
    Case("A gap longer than the window: the township stay ended 20 days before the county "
         "admission (window 15), so a new chain starts and pays in full",
         [direct("township-c", 600, 480), up("township-c")],
         due=[20000, 50000], rules=["no_referral", "gap_exceeds_window"]),
    Case("A referral from outside the community: the provincial hospital (not in the network) "
         "sends the patient down to the county hospital the day it discharges him; full deductible",
         [direct("outside-hospital", 72, 1), down("outside-hospital", "county-hospital")],
         due=[100000, 50000], rules=["no_referral", "outside_network"]),
    Case("Admitted without a referral: a county stay the day after a township stay is not "
         "reached by a referral and pays in full",
         [direct("township-c", 48, 24), direct("county-hospital", 1)],
         due=[20000, 50000], rules=["no_referral", "no_referral"]),
    Case("A down-referral into township rehabilitation beds continues the county stay's chain: "
         "no second deductible",
         [direct("county-hospital", 72, 1), down("county-hospital", "township-c")],
         due=[50000, 0], rules=["no_referral", "waive"]),
    Case("A chain of three stays, up and down: township, county hospital, back to the "
         "township's rehabilitation beds; only the first pays",
         [direct("township-c", 120, 2), up("township-c"), down("county-hospital", "township-c")],
         due=[20000, 0, 0], rules=["no_referral", "waive", "waive"]),
    Case("The employee scheme: the employee amounts apply, and the second deductible is waived "
         "the same way",
         [direct("township-c", 96, 1), up("township-c")],
         due=[30000, 0], rules=["no_referral", "waive"], scheme="employee"),
    Case("Two levels up: a township inpatient sent straight to the city hospital pays nothing more",
         [direct("township-c", 30, 1), up("township-c", "city-hospital")],
         due=[20000, 0], rules=["no_referral", "waive"]),
]

CONTINUOUS_CASES = [
    Case("Yunnan continuous where the higher level costs more: the county stay after a township "
         "stay pays the difference, 50000 - 20000",
         [direct("township-c", 120, 1), up("township-c")],
         due=[20000, 30000], rules=["no_referral", "continuous"]),
    Case("Yunnan continuous where the lower level costs less: the township rehabilitation stay "
         "after the county stay pays nothing, max(0, 20000 - 50000)",
         [direct("county-hospital", 72, 1), down("county-hospital", "township-c")],
         due=[50000, 0], rules=["no_referral", "continuous"]),
    Case("Yunnan continuous along a chain of three, up and down: township 20000, county the "
         "30000 still missing, the township again nothing (50000 already paid)",
         [direct("township-c", 120, 2), up("township-c"), down("county-hospital", "township-c")],
         due=[20000, 30000, 0], rules=["no_referral", "continuous", "continuous"]),
    Case("Yunnan continuous, employee scheme: 60000 at the county less the 30000 paid at the "
         "township",
         [direct("township-c", 96, 1), up("township-c")],
         due=[30000, 30000], rules=["no_referral", "continuous"], scheme="employee"),
    Case("Yunnan continuous, up to the city: 100000 less the 20000 paid at the township",
         [direct("township-c", 30, 1), up("township-c", "city-hospital")],
         due=[20000, 80000], rules=["no_referral", "continuous"]),
    Case("Yunnan continuous, a gap longer than the window: nothing carries over",
         [direct("township-c", 600, 480), up("township-c")],
         due=[20000, 50000], rules=["no_referral", "gap_exceeds_window"]),
]


class RuleTable:
    """Runs a table: each case on a patient of its own."""

    cases = []

    def test_every_case(self):
        self.assertGreater(len(self.cases), 0)
        for case in self.cases:
            with self.subTest(case=case.words):
                decisions = self.run_case(case)
                self.assertEqual([d.due_fen for d in decisions], case.due)
                self.assertEqual([d.rule for d in decisions], case.rules)
                self.assertEqual([d.policy for d in decisions], [self.policy_name] * len(decisions))
                # One chain position after another while the chain lasts.
                for before, d in zip(decisions, decisions[1:]):
                    if d.rule in ("waive", "continuous"):
                        self.assertEqual((d.chain_position, d.previous_stay_id),
                                         (before.chain_position + 1, before.stay_id))


class WaiveTest(RuleTable, ds.DeductiblesTestCase):
    """Fujian and the XX-county plan: the second deductible is cancelled."""
    community_options = {"policy": "waive", "window_days": 15}
    policy_name = "waive"
    cases = WAIVE_CASES


class ContinuousTest(RuleTable, ds.DeductiblesTestCase):
    """Yunnan: the deductible is counted continuously along the chain."""
    community_options = {"policy": "continuous", "window_days": 15}
    policy_name = "continuous"
    cases = CONTINUOUS_CASES


if __name__ == "__main__":
    unittest.main()
