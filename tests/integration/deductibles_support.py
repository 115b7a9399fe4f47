"""Helpers of the deductible integration tests (test_deductibles*.py).

On top of referrals_support.py:
  * DeductibleCommunity: a ReferralCommunity with a billing office at the
    township centre, a desk at the hospital outside the network, the
    deductible amounts below and a policy (waive, continuous or none);
  * request builders for the stay and deductible requests, and
    DeductibleClient, a ReferralClient with typed calls for them;
  * stays made the three ways the rule knows (recorded directly by billing,
    admitted through an up-referral, admitted through a down-referral), as
    steps a table of cases can name;
  * audit(): an auditor's recomputation of a decision from its record and
    the policy version it names, and nothing else;
  * DeductiblesTestCase: the unittest base.
"""

import datetime
import time

import harness
from harness import pb, sql_literal
import referrals_support as rs
import slots_support as ss

HOUR = 3600

# Deductibles (起付线) of the test communities, in fen, by level and scheme.
AMOUNTS = {
    ("village", "resident"): 10000, ("village", "employee"): 15000,
    ("township", "resident"): 20000, ("township", "employee"): 30000,
    ("county", "resident"): 50000, ("county", "employee"): 60000,
    ("city", "resident"): 100000, ("city", "employee"): 120000,
}

FULL_RULES = ("no_referral", "outside_network", "no_previous_stay", "gap_exceeds_window")

# Who acts for an institution: its referring clinic, its desk, its billing office.
ACTORS = {
    "village-a": {"clinic": "clinic"},
    "township-c": {"clinic": "clinic-c", "billing": "billing-c"},
    "county-hospital": {"desk": "desk", "billing": "billing"},
    "city-hospital": {"desk": "desk-city"},
    "outside-hospital": {"desk": "desk-out"},
}
# The department a referral goes to (up) or comes from (down), per hospital.
DEPARTMENT = {"county-hospital": "cardiology", "city-hospital": "oncology",
              "outside-hospital": "surgery"}


def hours_ago(h):
    return int(time.time()) - int(h * HOUR)


def local_date(seconds):
    return datetime.datetime.fromtimestamp(seconds, ss.SHANGHAI).date()


# ---- the community --------------------------------------------------------------

class DeductibleCommunity(rs.ReferralCommunity):
    """A ReferralCommunity (see there) plus: terminal "billing-c" (billing at
    township-c), terminal "desk-out" (a desk at outside-hospital, outside the
    referral network), the AMOUNTS, and the deductible policy and window
    given (set in the database, as an operator would)."""

    MORE_TERMINALS = rs.ReferralCommunity.MORE_TERMINALS + [
        ("billing-c", "billing", "township-c", None),
        ("desk-out", "desk", "outside-hospital", None),
    ]

    def __init__(self, pg, label, dbname="referral", policy="waive", window_days=15, **kw):
        # Set when the community is made, so that its first policy version
        # has them: stays recorded after the fact are decided under it.
        def setup(c):
            rows = ",".join(f"({c}, '{lv}', '{sc}', {fen})" for (lv, sc), fen in AMOUNTS.items())
            return f"""
UPDATE communities SET deductible_policy = {sql_literal(policy)},
       chain_window_days = {int(window_days)} WHERE community_id = {c};
INSERT INTO community_deductibles (community_id, level, scheme, amount_fen) VALUES {rows};"""
        super().__init__(pg, label, dbname=dbname, setup_sql=setup, **kw)

    def patient_with(self, scheme):
        """A new patient registered under the insurance scheme."""
        p = self.patient()
        self.psql(f"UPDATE patients SET scheme = {sql_literal(scheme)} WHERE community_id = "
                  f"{sql_literal(self.community_id)} AND patient_id = {sql_literal(p)}")
        return p

    def decision_count(self, patient_id):
        return int(self.psql(
            "SELECT count(*) FROM deductible_decisions d JOIN stays s USING (community_id, stay_id)"
            f" WHERE s.community_id = {sql_literal(self.community_id)}"
            f" AND s.patient_id = {sql_literal(patient_id)}"))


# ---- requests ------------------------------------------------------------------------

def record_stay_request(patient_id, *, institution="", scheme="", admitted_at=0,
                        discharged_at=0, referral="", key=None):
    return pb.Request(record_stay=pb.RecordStay(
        patient_id=patient_id, institution_id=institution, scheme=scheme,
        admitted_at=admitted_at, discharged_at=discharged_at, referral_id=referral,
        idempotency_key=rs.new_key("stay") if key is None else key))


def list_request(**fields):
    return pb.Request(list_deductibles=pb.ListDeductibles(**fields))


def set_policy_request(policy, window_days, amounts=()):
    return pb.Request(set_deductible_policy=pb.SetDeductiblePolicy(
        policy=policy, window_days=window_days,
        amounts=[pb.DeductibleAmount(level=lv, scheme=sc, amount_fen=fen)
                 for (lv, sc), fen in amounts]))


class DeductibleClient(rs.ReferralClient):
    """ReferralClient with typed stay and deductible calls; each returns the Response."""

    def record_stay(self, patient_id, **kw):
        return self.call(record_stay_request(patient_id, **kw))

    def discharge_stay(self, stay_id, at=0):
        return self.call(pb.Request(discharge_stay=pb.DischargeStay(stay_id=stay_id,
                                                                    discharged_at=at)))

    def reverse_stay(self, stay_id, reason="recorded for the wrong patient"):
        return self.call(pb.Request(reverse_stay=pb.ReverseStay(stay_id=stay_id, reason=reason)))

    def get_deductible(self, stay_id):
        return self.call(pb.Request(get_deductible=pb.GetDeductible(stay_id=stay_id)))

    def list_deductibles(self, **fields):
        return self.call(list_request(**fields))

    def set_policy(self, policy, window_days, amounts=()):
        return self.call(set_policy_request(policy, window_days, amounts))

    def get_policy(self, version=0):
        return self.call(pb.Request(get_deductible_policy=pb.GetDeductiblePolicy(version=version)))


# ---- stays, as the steps of a case ---------------------------------------------------

class Direct:
    """A stay recorded directly by the institution's billing office (an admin
    for an institution without one), without a referral, in the past."""

    def __init__(self, institution, admitted_hours_ago, discharged_hours_ago=None):
        self.institution = institution
        self.admitted = admitted_hours_ago
        self.discharged = discharged_hours_ago

    def make(self, t, patient):
        billing = ACTORS[self.institution].get("billing")
        c = t.term(billing or "admin")
        d = t.assertDeductible(c.record_stay(
            patient, institution="" if billing else self.institution,
            admitted_at=hours_ago(self.admitted),
            discharged_at=0 if self.discharged is None else hours_ago(self.discharged)))
        return d.stay_id, (None if self.discharged is not None else
                           lambda: t.assertDeductible(c.discharge_stay(d.stay_id)))


class ThroughReferral:
    """A stay admitted now through a referral from one institution to another:
    up from a clinic (an emergency, accepted without a slot), or down from a
    hospital's desk; the receiving side accepts and admits."""

    def __init__(self, direction, origin, target):
        self.direction = direction
        self.origin = origin
        self.target = target

    def make(self, t, patient):
        if self.direction == "up":
            ref = t.refer_up(t.term(ACTORS[self.origin]["clinic"]), patient=patient, to=self.target,
                             department=DEPARTMENT[self.target], urgency=pb.URGENCY_EMERGENCY)
        else:
            ref = t.refer_down(t.term(ACTORS[self.origin]["desk"]), patient=patient,
                               to=self.target, from_department=DEPARTMENT[self.origin])
        receiver = t.term(ACTORS[self.target].get("desk") or ACTORS[self.target]["clinic"])
        ref = t.move(receiver, ref, pb.ACTION_ACCEPT, "accepted")
        ref = t.move(receiver, ref, pb.ACTION_ADMIT, "admitted")
        d = t.stay_of_referral(ref.referral_id)
        return d.stay_id, lambda: t.move(receiver, ref, pb.ACTION_DISCHARGE, "discharged")


def direct(institution, admitted_hours_ago, discharged_hours_ago=None):
    return Direct(institution, admitted_hours_ago, discharged_hours_ago)


def up(origin, target="county-hospital"):
    return ThroughReferral("up", origin, target)


def down(origin, target):
    return ThroughReferral("down", origin, target)


class Case:
    """One row of a table: what happens to one patient, in plain words, the
    stays in order, and what each stay's decision must be."""

    def __init__(self, words, steps, due, rules, scheme="resident"):
        self.words = words
        self.steps = steps
        self.due = due
        self.rules = rules
        self.scheme = scheme


# ---- the auditor -----------------------------------------------------------------------

def audit(t, d, version):
    """Recomputes decision d by hand, from its own record and the policy
    version it names (a DeductiblePolicy), as docs/deductibles.md tells an
    auditor to: the amount, the gap, the chain, the rule, what is due."""
    where = f"stay {d.stay_id}: {d}"
    t.assertEqual((version.version, version.policy, version.window_days),
                  (d.policy_version, d.policy, d.window_days), where)
    own = {(a.level, a.scheme): a.amount_fen for a in version.amounts}.get((d.level, d.scheme))
    if own is None:
        t.assertEqual((d.amount_configured, d.rule), (False, "not_configured"), where)
        return
    t.assertEqual((d.amount_configured, d.own_deductible_fen), (True, own), where)
    if d.previous_stay_id:
        same_day = d.previous_discharged_at == 0 or d.previous_discharged_at >= d.admitted_at
        gap = 0 if same_day else (local_date(d.admitted_at)
                                  - local_date(d.previous_discharged_at)).days
        t.assertEqual(d.gap_days, gap, where)
    else:
        t.assertEqual(d.gap_days, -1, where)
    paid = sum(link.due_fen for link in d.chain)
    t.assertEqual((d.chain_paid_fen, d.chain_position), (paid, len(d.chain) + 1), where)
    in_chain = (d.referral_id != "" and d.referral_from_in_network and d.previous_stay_id != ""
                and d.gap_days <= d.window_days)
    if not in_chain:
        t.assertEqual((list(d.chain), d.chain_id), ([], d.stay_id), where)
        due = own
        rule = ("no_referral" if not d.referral_id else
                "outside_network" if not d.referral_from_in_network else
                "no_previous_stay" if not d.previous_stay_id else "gap_exceeds_window")
    else:
        t.assertEqual((d.chain[-1].stay_id, d.chain_id), (d.previous_stay_id, d.chain[0].stay_id),
                      where)
        due, rule = {"waive": (0, "waive"), "continuous": (max(0, own - paid), "continuous"),
                     "none": (own, "policy_none")}[d.policy]
    t.assertEqual((d.due_fen, d.waived_fen, d.rule), (due, own - due, rule), where)
    # The words name the amount they are about.
    t.assertIn(f"{own} fen", d.explanation, where)


# ---- the test base -----------------------------------------------------------------------

class DeductiblesTestCase(rs.ReferralsTestCase):
    """A DeductibleCommunity (policy and window from community_options) and
    a daemon; connections per terminal name, opened once per test."""

    community_class = DeductibleCommunity

    def setUp(self):
        self._terms = {}

    def connect(self, daemon=None):
        c = DeductibleClient((daemon or self.daemon).port)
        self.addCleanup(c.close)
        return c

    def term(self, name):
        """The test's authenticated connection as the named terminal."""
        if name not in self._terms:
            self._terms[name] = self.authed(name)
        return self._terms[name]

    def assertDeductible(self, resp, replayed=None):
        self.assertOk(resp, "deductible")
        if replayed is not None:
            self.assertEqual(resp.deductible.replayed, replayed, resp)
        return resp.deductible

    def decision(self, stay_id):
        return self.assertDeductible(self.term("admin").get_deductible(stay_id))

    def stay_of_referral(self, referral_id):
        """The one stay (and decision) recorded for a referral."""
        resp = self.term("admin").list_deductibles(referral_id=referral_id)
        self.assertOk(resp, "deductibles")
        live = [d for d in resp.deductibles.deductibles if not d.reversed]
        self.assertEqual(len(live), 1, resp)
        return live[0]

    def policy(self, version=0):
        resp = self.term("admin").get_policy(version)
        self.assertOk(resp, "deductible_policy")
        return resp.deductible_policy

    def audited(self, stay_id):
        """The stay's decision, after recomputing it by hand."""
        d = self.decision(stay_id)
        audit(self, d, self.policy(d.policy_version))
        return d

    def run_case(self, case):
        """Makes the case's stays for a new patient, each discharged before
        the next is admitted; returns their decisions, each audited."""
        patient = self.community.patient_with(case.scheme)
        stays, close = [], None
        for step in case.steps:
            if close:
                close()
            stay, close = step.make(self, patient)
            stays.append(stay)
        return [self.audited(s) for s in stays]
