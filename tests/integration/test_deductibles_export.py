#!/usr/bin/python3
"""The billing office's export through referralctl: `referralctl deductibles
--since --until --format csv|json` lists the decisions of the stays admitted
in the period that the terminal may see, with every input of each, and the
total waived (reversed stays not counted); plus the stay and
deductible-policy commands."""

import csv
import datetime
import io
import json
import unittest

import deductibles_support as ds
from deductibles_support import hours_ago
import slots_support as ss

COLUMNS = ["stay_id", "patient_id", "institution_id", "level", "scheme", "referral_id",
           "referral_direction", "referral_from", "referral_from_in_network", "admitted_at",
           "discharged_at", "decided_at", "policy_version", "policy", "window_days",
           "previous_stay_id", "gap_days", "chain_id", "chain_position", "chain",
           "chain_paid_fen", "own_deductible_fen", "due_fen", "waived_fen", "rule", "reversed",
           "reversed_at", "reversal_reason", "explanation"]


def epoch(iso):
    return int(datetime.datetime.fromisoformat(iso).timestamp()) if iso else 0


class ExportTest(ds.DeductiblesTestCase):
    community_options = {"policy": "waive", "window_days": 15}
    own_community = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.made = False

    def setUp(self):
        super().setUp()
        if not ExportTest.made:
            ExportTest.made = True
            ExportTest.stays = self.make_stays()

    def make_stays(self):
        """In the period: a waived county stay after a township stay, and a
        county stay recorded then reversed. Before it: an old county stay."""
        p, q, r = (self.community.patient() for _ in range(3))
        township, _ = ds.direct("township-c", 50, 1).make(self, p)
        waived, _ = ds.up("township-c").make(self, p)
        billing = self.term("billing")
        reversed_ = self.assertDeductible(billing.record_stay(q, admitted_at=hours_ago(3))).stay_id
        self.assertDeductible(billing.reverse_stay(reversed_, reason="wrong patient, see ticket 7"))
        old = self.assertDeductible(billing.record_stay(
            r, admitted_at=hours_ago(100), discharged_at=hours_ago(99))).stay_id
        return {"township": township, "waived": waived, "reversed": reversed_, "old": old}

    def export(self, *args, terminal="billing", json_out=False):
        p = ss.referralctl(self.daemon, self.community[terminal], "deductibles",
                           "--since", str(hours_ago(10)), "--until", str(hours_ago(-1)), *args,
                           json_out=json_out)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def test_csv(self):
        rows = list(csv.reader(io.StringIO(self.export("--format", "csv"))))
        self.assertEqual(rows[0], COLUMNS)
        body = [dict(zip(COLUMNS, r)) for r in rows[1:-1]]
        total = dict(zip(COLUMNS, rows[-1]))
        # The billing office of the county hospital: its stays in the period,
        # oldest first; not the township's, not the old one.
        self.assertEqual([b["stay_id"] for b in body],
                         [self.stays["reversed"], self.stays["waived"]])
        back, waived = body
        self.assertEqual((back["reversed"], back["reversal_reason"], back["rule"], back["due_fen"]),
                         ("true", "wrong patient, see ticket 7", "no_referral", "50000"))
        # Every field as the protocol has it.
        d = self.decision(self.stays["waived"])
        self.assertEqual(
            {k: waived[k] for k in ("patient_id", "institution_id", "level", "scheme",
                                    "referral_id", "referral_direction", "referral_from",
                                    "referral_from_in_network", "policy", "rule",
                                    "previous_stay_id", "chain_id", "explanation")},
            {"patient_id": d.patient_id, "institution_id": "county-hospital", "level": "county",
             "scheme": "resident", "referral_id": d.referral_id, "referral_direction": "up",
             "referral_from": "township-c", "referral_from_in_network": "true",
             "policy": "waive", "rule": "waive", "previous_stay_id": self.stays["township"],
             "chain_id": self.stays["township"], "explanation": d.explanation})
        self.assertEqual([int(waived[k]) for k in ("policy_version", "window_days", "gap_days",
                                                   "chain_position", "chain_paid_fen",
                                                   "own_deductible_fen", "due_fen", "waived_fen")],
                         [d.policy_version, 15, d.gap_days, 2, 20000, 50000, 0, 50000])
        self.assertEqual(waived["chain"], f"{self.stays['township']}:township-c:20000")
        self.assertEqual([epoch(waived[k]) for k in ("admitted_at", "discharged_at", "decided_at")],
                         [d.admitted_at, d.discharged_at, d.decided_at])
        # The total row: the reversed stay does not count.
        self.assertEqual((total["stay_id"], total["due_fen"], total["waived_fen"]),
                         ("total", "0", "50000"))
        self.assertEqual(set(total) - {"stay_id", "due_fen", "waived_fen"},
                         {k for k, v in total.items() if v == ""})

    def test_json(self):
        doc = json.loads(self.export("--format", "json"))
        self.assertEqual([r["stay_id"] for r in doc["deductibles"]],
                         [self.stays["reversed"], self.stays["waived"]])
        self.assertEqual((doc["total_count"], doc["total_due_fen"], doc["total_waived_fen"]),
                         (2, 0, 50000))
        waived = doc["deductibles"][1]
        d = self.decision(self.stays["waived"])
        self.assertEqual((waived["due_fen"], waived["waived_fen"], waived["chain_paid_fen"],
                          waived["admitted_at"]), (0, 50000, 20000, d.admitted_at))
        self.assertEqual(waived["chain"], [{
            "stay_id": self.stays["township"], "institution_id": "township-c",
            "level": "township", "admitted_at": d.chain[0].admitted_at,
            "discharged_at": d.chain[0].discharged_at, "due_fen": 20000}])
        # --json means the same.
        self.assertEqual(json.loads(self.export(json_out=True)), doc)
        # An admin sees the township's stay too; --live leaves the reversed out.
        everything = json.loads(self.export("--format", "json", terminal="admin"))
        self.assertEqual(len(everything["deductibles"]), 2)   # the township stay was 50 h ago
        live = json.loads(self.export("--format", "json", "--live"))
        self.assertEqual([r["stay_id"] for r in live["deductibles"]], [self.stays["waived"]])

    def test_text_and_refusals(self):
        out = self.export()
        self.assertIn("total waived 50000 fen", out)
        self.assertIn(self.stays["waived"], out)
        bad = ss.referralctl(self.daemon, self.community["billing"], "deductibles",
                             "--format", "xml", json_out=False)
        self.assertEqual(bad.returncode, 2, bad.stderr)
        refused = ss.referralctl(self.daemon, self.community["clinic"], "deductibles",
                                 json_out=False)
        self.assertEqual(refused.returncode, 1, refused.stderr)
        self.assertIn("PERMISSION_DENIED", refused.stderr)

    def test_stay_and_policy_commands(self):
        patient = self.community.patient()
        term = self.community["billing"]
        admitted = str(hours_ago(20))   # before the period the other tests export
        made = ss.referralctl(self.daemon, term, "stay", "admit", "--patient", patient,
                              "--scheme", "employee", "--admitted", admitted,
                              "--key", "ctl-stay-1")
        self.assertEqual(made.returncode, 0, made.stderr)
        stay = json.loads(made.stdout)
        self.assertEqual((stay["scheme"], stay["due_fen"], stay["rule"], stay["replayed"]),
                         ("employee", 60000, "no_referral", False))
        again = ss.referralctl(self.daemon, term, "stay", "admit", "--patient", patient,
                               "--scheme", "employee", "--admitted", admitted,
                               "--key", "ctl-stay-1")
        self.assertEqual(json.loads(again.stdout)["stay_id"], stay["stay_id"])
        self.assertTrue(json.loads(again.stdout)["replayed"])
        out = ss.referralctl(self.daemon, term, "stay", "discharge", stay["stay_id"])
        self.assertGreater(json.loads(out.stdout)["discharged_at"], 0)
        out = ss.referralctl(self.daemon, term, "stay", "reverse", stay["stay_id"],
                             "--reason", "test admission")
        self.assertTrue(json.loads(out.stdout)["reversed"])
        shown = ss.referralctl(self.daemon, term, "stay", "show", stay["stay_id"])
        self.assertEqual(json.loads(shown.stdout)["reversal_reason"], "test admission")
        # The policy: shown to anyone, set by admins.
        shown = ss.referralctl(self.daemon, term, "deductible-policy", json_out=False)
        self.assertIn("policy waive, window 15 days", shown.stdout)
        self.assertRegex(shown.stdout, r"county\s+50000\s+60000")
        admin = self.community["admin"]
        out = ss.referralctl(self.daemon, admin, "deductible-policy", "set", "--policy", "waive",
                             "--window", "15", "--amount", "village:resident=12000")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.addCleanup(ss.referralctl, self.daemon, admin, "deductible-policy", "set",
                        "--policy", "waive", "--window", "15", "--amount",
                        f"village:resident={ds.AMOUNTS[('village', 'resident')]}")
        policy = json.loads(out.stdout)
        self.assertEqual(policy["set_by"], admin.terminal_id)
        self.assertIn({"level": "village", "scheme": "resident", "amount_fen": 12000},
                      policy["amounts"])
        usage = ss.referralctl(self.daemon, admin, "deductible-policy", "set", "--policy", "waive",
                               "--window", "15", "--amount", "village=1")
        self.assertEqual(usage.returncode, 2, usage.stderr)


if __name__ == "__main__":
    unittest.main()
