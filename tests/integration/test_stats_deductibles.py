#!/usr/bin/python3
"""The deductible figures of referralctl stats (issue 6): the decisions of the
stays admitted in the window and the fen they waived, per institution and for
the community, against a scenario with a known waived amount, made through
the protocol under the waive policy:

  * patient A: a township stay ended yesterday, then an up-referral from the
    township to the county hospital, admitted: the county stay is waived
    (50,000 fen, the county's resident deductible);
  * patient B: a county stay recorded without a referral: full, nothing waived;
  * patient C: like A, but the county stay is reversed afterwards: it counts
    nowhere."""

import unittest

import deductibles_support as ds
from harness import pb


class DeductibleFiguresTest(ds.DeductiblesTestCase):
    own_community = True
    community_options = {"policy": "waive", "window_days": 15}

    def chain(self, patient):
        """A township stay ended a day ago, then the county stay through an
        up-referral; returns the county stay's decision."""
        ds.direct("township-c", 72, 24).make(self, patient)
        stay_id, _ = ds.up("township-c").make(self, patient)
        return self.decision(stay_id)

    def test_decisions_and_fen_waived(self):
        waived = self.chain(self.community.patient())
        self.assertEqual((waived.due_fen, waived.waived_fen), (0, ds.AMOUNTS[("county", "resident")]))
        ds.direct("county-hospital", 30, 20).make(self, self.community.patient())
        reversed_one = self.chain(self.community.patient())
        self.assertDeductible(self.term("admin").reverse_stay(reversed_one.stay_id))

        resp = self.term("monitor").call(pb.Request(stats=pb.StatsRequest(
            since=ds.hours_ago(24 * 7), until=ds.hours_ago(-1))))
        self.assertOk(resp, "stats")
        by_id = {f.institution_id: f for f in resp.stats.institutions}
        got = {i: (f.deductible_decisions, f.deductible_fen_waived) for i, f in by_id.items()
               if f.deductible_decisions}
        county = ds.AMOUNTS[("county", "resident")]
        # Two township stays (A's and C's), full; A's county stay waived and
        # B's full; C's county stay reversed.
        self.assertEqual(got, {"township-c": (2, 0), "county-hospital": (2, county)})
        community = resp.stats.community
        self.assertEqual((community.deductible_decisions, community.deductible_fen_waived),
                         (4, county))


if __name__ == "__main__":
    unittest.main()
