#!/usr/bin/python3
"""Who sees which referral, and the worklist: roles of the referral
requests; clinics, desks and billing see referrals from or to their own
institution, monitors and admins the whole community, nobody another
community's (a second community in the same database); the worklist's order
(most urgent, then newest first), its state filter (open states by default,
"all", one state), its other filters and its pages."""

import unittest

import harness
from harness import pb
import referrals_support as rs


def ids(referrals):
    return [r.referral_id for r in referrals]


class RolesTest(rs.ReferralsTestCase):

    def test_who_may_do_what(self):
        ref = self.refer_up()            # village-a -> county-hospital
        for name in rs.READ_ROLES:
            with self.subTest(read=name):
                c = self.authed(name)
                self.assertReferral(c.get(ref.referral_id), "pending")
                self.assertOk(c.history(ref.referral_id), "history")
                self.assertOk(c.worklist(), "referrals")
                self.stream(name)
        p = self.community.patient()
        for name in ("desk", "billing", "monitor", "admin"):
            with self.subTest(refer_up=name):
                self.assertError(self.authed(name).refer_up(p), pb.PERMISSION_DENIED)
        for name in ("billing", "monitor"):
            with self.subTest(act=name):
                self.assertError(self.authed(name).act(ref.referral_id, pb.ACTION_NO_SLOT),
                                 pb.PERMISSION_DENIED)
        self.assertEqual(self.community.patient_referrals(p), [])
        self.assertEqual(self.community.referral_row(ref.referral_id)["version"], 1)


class VisibilityTest(rs.ReferralsTestCase):
    own_community = True

    def test_institutions_community_and_other_communities(self):
        c = self.community
        a = self.refer_up(self.authed("clinic"))                                  # A
        b = self.refer_up(self.authed("clinic-b"), to="tcm-hospital",
                          department="acupuncture")                               # B
        d = self.refer_down(self.authed("desk"), to="village-b")                 # C
        e = self.refer_up(self.authed("clinic-c"), to="city-hospital",
                          department="oncology")                                  # D
        everything = {a.referral_id, b.referral_id, d.referral_id, e.referral_id}
        expected = {
            "clinic": {a.referral_id},
            "clinic-b": {b.referral_id, d.referral_id},
            "clinic-c": {e.referral_id},
            "desk": {a.referral_id, d.referral_id},
            "billing": {a.referral_id, d.referral_id},
            "desk-tcm": {b.referral_id},
            "desk-city": {e.referral_id},
            "monitor": everything,
            "admin": everything,
        }
        # Another community in the same database, with referrals of its own.
        other = rs.ReferralCommunity(self.pg, "referrals-scope-other", dbname=self.dbname)
        oc = rs.ReferralClient(self.daemon.port)
        self.addCleanup(oc.close)
        self.assertOk(oc.hello(other["clinic"]), "hello")
        foreign = self.assertReferral(oc.refer_up(other.patient()), "pending")
        for name, visible in expected.items():
            with self.subTest(terminal=name):
                cl = self.authed(name)
                listed = [r.referral_id for page in cl.worklist_all(state="all")
                          for r in page]
                self.assertEqual(len(listed), len(set(listed)))
                self.assertEqual(set(listed), visible)
                for rid in everything:
                    if rid in visible:
                        self.assertOk(cl.get(rid), "referral")
                        self.assertOk(cl.history(rid), "history")
                    else:
                        self.assertError(cl.get(rid), pb.NOT_FOUND, field="referral_id")
                        self.assertError(cl.history(rid), pb.NOT_FOUND, field="referral_id")
                # The other community's referral is nowhere.
                self.assertError(cl.get(foreign.referral_id), pb.NOT_FOUND, field="referral_id")
                self.assertError(cl.history(foreign.referral_id), pb.NOT_FOUND,
                                 field="referral_id")
        for name in ("admin", "desk"):
            with self.subTest(act_foreign=name):
                self.assertError(self.authed(name).act(foreign.referral_id, pb.ACTION_NO_SLOT),
                                 pb.NOT_FOUND, field="referral_id")
        self.assertEqual(other.referral_row(foreign.referral_id)["version"], 1)
        # And the other way round: its monitor sees its own only.
        om = rs.ReferralClient(self.daemon.port)
        self.addCleanup(om.close)
        self.assertOk(om.hello(other["monitor"]), "hello")
        listed = [r.referral_id for page in om.worklist_all(state="all") for r in page]
        self.assertEqual(listed, [foreign.referral_id])
        self.assertError(om.get(a.referral_id), pb.NOT_FOUND, field="referral_id")
        # Booking with another community's referral is no better than a random id.
        s = self.publish_one(self.authed("desk"), capacity=4)
        resp = self.authed("clinic").book(s.session_id, c.patient(),
                                          referral=foreign.referral_id)
        self.assertError(resp, pb.FAILED_PRECONDITION, field="referral_id")


class WorklistTest(rs.ReferralsTestCase):
    own_community = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.made = False

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")
        if not WorklistTest.made:
            self.make()
            WorklistTest.made = True

    def make(self):
        """Referrals between village-a and county-hospital, created minutes
        apart (backdated), in various states."""
        cls = WorklistTest
        c = self.community

        ages = {}

        def up(minutes_ago, urgency=pb.URGENCY_ROUTINE, department="cardiology", patient=None):
            ref = self.refer_up(self.clinic, urgency=urgency, department=department,
                                patient=patient)
            ages[ref.referral_id] = minutes_ago
            return ref

        cls.px = c.patient()
        cls.r1 = up(50)
        cls.r2 = up(40, pb.URGENCY_URGENT, department="internal")
        cls.r3 = up(30, pb.URGENCY_EMERGENCY)
        self.move(self.desk, cls.r3, pb.ACTION_ACCEPT, "accepted")
        cls.r4 = up(20)
        self.move(self.desk, cls.r4, pb.ACTION_REJECT, "rejected", reason="not indicated")
        cls.r5 = up(10)
        self.move(self.desk, cls.r5, pb.ACTION_NO_SLOT, "waiting_slot")
        cls.r6 = up(5, pb.URGENCY_URGENT, patient=cls.px)
        cls.d1 = self.refer_down(self.desk, to="village-a")
        ages[cls.d1.referral_id] = 15
        cls.r7 = up(0)
        self.move(self.clinic, cls.r7, pb.ACTION_CANCEL, "cancelled")
        # Backdated once every move is made: the emergency one must not be
        # escalated by a timer while it is pending and looks old.
        for rid, minutes in ages.items():
            c.backdate(rid, minutes)
        # Escalated by hand here (the timer's own work is in test_referrals_timers).
        c.psql(f"UPDATE referrals SET escalated_at = now() WHERE {c.where(cls.r2.referral_id)}")

    def listed(self, client=None, **fields):
        pages = (client or self.desk).worklist_all(**fields)
        return [r.referral_id for page in pages for r in page]

    def test_order_and_state_filter(self):
        W = WorklistTest
        open_order = [W.r3, W.r6, W.r2, W.r5, W.d1, W.r1]
        all_order = [W.r3, W.r6, W.r2, W.r7, W.r5, W.d1, W.r4, W.r1]
        for client in (self.desk, self.clinic, self.authed("monitor")):
            self.assertEqual(self.listed(client), ids(open_order))
            self.assertEqual(self.listed(client, state="all"), ids(all_order))
        pages = self.desk.worklist_all()
        self.assertTrue(all(r.state in rs.OPEN_STATES for p in pages for r in p))
        self.assertEqual(self.listed(state="pending"), ids([W.r6, W.r2, W.d1, W.r1]))
        self.assertEqual(self.listed(state="rejected"), ids([W.r4]))
        self.assertEqual(self.listed(state="waiting_slot"), ids([W.r5]))
        self.assertEqual(self.listed(state="completed"), [])
        # What a listed referral says.
        page = self.desk.worklist(state="accepted")
        self.assertOk(page, "referrals")
        [r3] = page.referrals.referrals
        self.assertEqual((r3.referral_id, r3.state, r3.urgency, r3.version, r3.patient_id),
                         (W.r3.referral_id, "accepted", pb.URGENCY_EMERGENCY, 2,
                          W.r3.patient_id))
        self.assertEqual(page.referrals.next_page_token, "")
        self.assertError(self.desk.worklist(state="lost"), pb.INVALID_ARGUMENT, field="state")

    def test_filters(self):
        W = WorklistTest
        self.assertEqual(self.listed(direction=pb.DIRECTION_UP),
                         ids([W.r3, W.r6, W.r2, W.r5, W.r1]))
        self.assertEqual(self.listed(direction=pb.DIRECTION_DOWN), ids([W.d1]))
        self.assertEqual(self.listed(department_id="internal"), ids([W.r2]))
        self.assertEqual(self.listed(department_id="cardiology"),
                         ids([W.r3, W.r6, W.r5, W.r1]))
        self.assertEqual(self.listed(min_age_minutes=25), ids([W.r3, W.r2, W.r1]))
        self.assertEqual(self.listed(min_age_minutes=25, state="all"),
                         ids([W.r3, W.r2, W.r1]))
        self.assertEqual(self.listed(min_age_minutes=12, state="all"),
                         ids([W.r3, W.r2, W.d1, W.r4, W.r1]))
        self.assertEqual(self.listed(escalated_only=True), ids([W.r2]))
        resp = self.desk.worklist(escalated_only=True)
        self.assertTrue(resp.referrals.referrals[0].escalated, resp)
        self.assertEqual(self.listed(patient_id=W.px), ids([W.r6]))
        self.assertEqual(self.listed(patient_id=W.r4.patient_id, state="all"), ids([W.r4]))
        self.assertEqual(self.listed(patient_id=rs.random_id()), [])
        self.assertEqual(self.listed(direction=pb.DIRECTION_UP, min_age_minutes=35,
                                     department_id="cardiology"), ids([W.r1]))
        self.assertError(self.desk.worklist(patient_id="p-1"), pb.INVALID_ARGUMENT,
                         field="patient_id")

    def test_pages(self):
        W = WorklistTest
        all_order = ids([W.r3, W.r6, W.r2, W.r7, W.r5, W.d1, W.r4, W.r1])
        for size in (1, 3, 8, 50):
            with self.subTest(page_size=size):
                pages = self.desk.worklist_all(state="all", page_size=size)
                self.assertTrue(all(len(p) <= size for p in pages), [len(p) for p in pages])
                self.assertEqual([r.referral_id for p in pages for r in p], all_order)
                if size == 3:
                    self.assertEqual([len(p) for p in pages], [3, 3, 2])
        self.assertError(self.desk.worklist(page_token="garbage"), pb.INVALID_ARGUMENT,
                         field="page_token")


class PagesWithTiesTest(rs.ReferralsTestCase):
    """Referrals made in the same microsecond (bulk imports, one
    transaction): pages still list each exactly once, in one order."""
    own_community = True

    def test_ties(self):
        clinic = self.authed("clinic")
        made = [self.refer_up(clinic, urgency=pb.URGENCY_URGENT if i % 3 == 0
                              else pb.URGENCY_ROUTINE) for i in range(9)]
        c = self.community
        c.psql("UPDATE referrals SET created_at = now() - interval '1 hour' "
               f"WHERE community_id = {harness.sql_literal(c.community_id)}")
        desk = self.authed("desk")
        whole = [r.referral_id for p in desk.worklist_all() for r in p]
        self.assertEqual(set(whole), {r.referral_id for r in made})
        self.assertEqual(len(whole), 9)
        urgent = {r.referral_id for i, r in enumerate(made) if i % 3 == 0}
        self.assertEqual(set(whole[:3]), urgent, "urgent first")
        for size in (1, 2, 4):
            with self.subTest(page_size=size):
                paged = [r.referral_id for p in desk.worklist_all(page_size=size) for r in p]
                self.assertEqual(paged, whole)


if __name__ == "__main__":
    unittest.main()
