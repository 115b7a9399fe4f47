#!/usr/bin/python3
"""The daemon's timer over referrals: an accepted referral whose booked
session ended more than the grace period ago becomes a no-show (recorded as
the system's move; the desk may reverse it, with a reason); pending
referrals older than their urgency's limit are escalated, once, with an
event; down-referrals whose follow-up date passed without a follow-up are
flagged overdue, once, with an event.

A database of its own: every daemon on a database runs the timer over all
of it, and this test must know which daemon does the work."""

import datetime
import time
import unittest

import harness
from harness import pb
import referrals_support as rs
import slots_support as ss
from referrals_support import future

TICK_S = 0.2


class TimerTest(rs.ReferralsTestCase):
    private_database = True
    daemon_settings = {"release_interval_ms": str(int(TICK_S * 1000))}
    community_options = {"escalate_emergency_min": 1, "escalate_urgent_min": 5,
                         "escalate_routine_min": 60, "no_show_grace_min": 5}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # A second daemon runs the same timer over the same database: the
        # work is still done once.
        cls.second = ss.start_daemon(cls.pg, cls.dbname, cls.daemon_settings,
                                     name="referrals_timers_2")
        cls.addClassCleanup(cls.second.stop)

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def wait_row(self, ref, what, **expected):
        def ok():
            row = self.community.referral_row(ref.referral_id)
            return all(row[k] == v for k, v in expected.items())
        harness.wait_for(ok, 10, interval=0.05, what=what)

    def some_ticks(self):
        time.sleep(5 * TICK_S)

    def kinds(self, ref):
        return [e[1] for e in self.community.events(ref.referral_id)]

    def test_no_show_and_its_reversal(self):
        s1 = self.publish_one(self.desk, capacity=6, start=future(days=3, hour=2))
        s2 = self.publish_one(self.desk, capacity=6, start=future(days=3, hour=8))
        p = self.community.patients(4)

        def accepted(patient, session):
            ref = self.refer_up(self.clinic, patient=patient, session_id=session.session_id)
            return self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted")

        gone = accepted(p[0], s1)                   # session over, grace over: no-show
        arrived = self.move(self.desk, accepted(p[1], s1), pb.ACTION_ARRIVE, "arrived")
        pending = self.refer_up(self.clinic, patient=p[2], session_id=s1.session_id)
        in_grace = accepted(p[3], s2)               # over 2 minutes ago, grace is 5
        self.community.move_session_to_past(s1.session_id, ended_minutes_ago=10)
        self.community.move_session_to_past(s2.session_id, ended_minutes_ago=2)
        self.wait_row(gone, "the no-show", state="no_show")
        self.some_ticks()
        got = self.assertReferral(self.desk.get(gone.referral_id), "no_show")
        self.assertEqual(got.version, 3)
        hist = self.community.history_rows(gone.referral_id)
        self.assertEqual([h[1:6] for h in hist],
                         [("create", "", "pending", "clinic-01", "clinic"),
                          ("accept", "pending", "accepted", "desk-01", "desk"),
                          ("no_show", "accepted", "no_show", "", "system")])
        resp = self.desk.history(gone.referral_id)
        self.assertOk(resp, "history")
        last = resp.history.entries[-1]
        self.assertEqual((last.action, last.terminal_id, last.role), ("no_show", "", "system"))
        self.assertEqual(self.kinds(gone).count("referral.no_show"), 1)
        # The others are as they were.
        for ref, state, version in ((arrived, "arrived", 3), (pending, "pending", 1),
                                    (in_grace, "accepted", 2)):
            row = self.community.referral_row(ref.referral_id)
            self.assertEqual((row["state"], row["version"]), (state, version), ref.referral_id)
        # The patient did come after all: the desk says so, with a reason.
        self.assertRefused(self.desk, got, pb.ACTION_REVERSE_NO_SHOW, pb.INVALID_ARGUMENT,
                           "reason")
        self.assertRefused(self.clinic, got, pb.ACTION_REVERSE_NO_SHOW, pb.PERMISSION_DENIED,
                           "action", reason="he came")
        back = self.move(self.desk, got, pb.ACTION_REVERSE_NO_SHOW, "arrived",
                         reason="arrived late, registered on paper")
        self.some_ticks()
        self.assertEqual(self.community.referral_row(gone.referral_id)["state"], "arrived")
        self.move(self.desk, back, pb.ACTION_COMPLETE, "completed")
        # Once the grace is over for the second session too, it goes the same way.
        self.community.move_session_to_past(s2.session_id, ended_minutes_ago=6)
        self.wait_row(in_grace, "the second no-show", state="no_show")
        self.assertEqual(self.community.history_actions(in_grace.referral_id),
                         ["create", "accept", "no_show"])

    def test_escalation(self):
        refs = {}
        refs["emergency"] = self.refer_up(self.clinic, urgency=pb.URGENCY_EMERGENCY)
        refs["urgent"] = self.refer_up(self.clinic, urgency=pb.URGENCY_URGENT)
        refs["routine"] = self.refer_up(self.clinic)
        refs["waiting"] = self.move(self.desk, self.refer_up(self.clinic,
                                                             urgency=pb.URGENCY_EMERGENCY),
                                    pb.ACTION_NO_SLOT, "waiting_slot")
        refs["accepted"] = self.move(self.desk, self.refer_up(self.clinic,
                                                              urgency=pb.URGENCY_EMERGENCY),
                                     pb.ACTION_ACCEPT, "accepted")
        # Not old enough (urgent: 5 minutes).
        refs["fresh"] = self.refer_up(self.clinic, urgency=pb.URGENCY_URGENT)
        mon = self.stream("monitor")
        for name in ("emergency", "urgent", "routine", "waiting", "accepted"):
            self.community.backdate(refs[name].referral_id, 3)
        for name in ("emergency", "waiting"):
            self.wait_row(refs[name], f"escalation of {name}", escalated=True)
        self.some_ticks()
        events = mon.take(2)
        self.assertEqual(sorted((e.kind, e.referral_id) for e in events),
                         sorted(("referral.escalated", refs[n].referral_id)
                                for n in ("emergency", "waiting")))
        mon.quiet(3 * TICK_S)
        for name in ("urgent", "routine", "accepted", "fresh"):
            self.assertFalse(self.community.referral_row(refs[name].referral_id)["escalated"],
                             name)
        # What clients see: the flag, and the escalated-only worklist.
        for name in ("emergency", "waiting"):
            got = self.assertReferral(self.desk.get(refs[name].referral_id))
            self.assertTrue(got.escalated, got)
            self.assertEqual(self.kinds(refs[name]).count("referral.escalated"), 1)
        self.assertFalse(self.assertReferral(self.desk.get(refs["urgent"].referral_id)).escalated)
        listed = {r.referral_id for page in self.desk.worklist_all(escalated_only=True)
                  for r in page}
        self.assertEqual(listed, {refs["emergency"].referral_id, refs["waiting"].referral_id})
        # The urgent one passes its limit: escalated too, once.
        self.community.backdate(refs["urgent"].referral_id, 3)
        self.wait_row(refs["urgent"], "escalation of the urgent referral", escalated=True)
        [ev] = mon.take(1)
        self.assertEqual((ev.kind, ev.referral_id),
                         ("referral.escalated", refs["urgent"].referral_id))
        self.some_ticks()
        mon.quiet(TICK_S)
        self.assertEqual(self.kinds(refs["urgent"]).count("referral.escalated"), 1)
        # Closed, the rest can no longer escalate during the other tests.
        for name in ("emergency", "urgent", "routine", "waiting", "fresh"):
            ref = self.assertReferral(self.clinic.get(refs[name].referral_id))
            self.move(self.clinic, ref, pb.ACTION_CANCEL, "cancelled")

    def test_follow_up_overdue(self):
        pending = self.refer_down(self.desk)
        accepted = self.move(self.clinic, self.refer_down(self.desk), pb.ACTION_ACCEPT,
                             "accepted")
        seen = self.move(self.clinic, self.move(self.clinic, self.refer_down(self.desk),
                                                pb.ACTION_ACCEPT, "accepted"),
                         pb.ACTION_FOLLOW_UP, "followed_up", reason="seen at home")
        not_due = self.refer_down(self.desk)
        mon = self.stream("monitor")
        yesterday = (self.community.today() - datetime.timedelta(days=1)).isoformat()
        for ref in (pending, accepted, seen):
            self.community.psql(f"UPDATE referrals SET follow_up_due = '{yesterday}' "
                                f"WHERE {self.community.where(ref.referral_id)}")
        for ref in (pending, accepted):
            self.wait_row(ref, "follow-up overdue", follow_up_overdue=True)
        events = mon.take(2)
        self.assertEqual(sorted((e.kind, e.referral_id) for e in events),
                         sorted(("referral.follow_up_overdue", r.referral_id)
                                for r in (pending, accepted)))
        self.some_ticks()
        mon.quiet(TICK_S)
        for ref in (seen, not_due):
            self.assertFalse(self.community.referral_row(ref.referral_id)["follow_up_overdue"])
        got = self.assertReferral(self.clinic.get(accepted.referral_id), "accepted")
        self.assertTrue(got.follow_up_overdue)
        self.assertEqual(got.follow_up_due, yesterday)
        for ref in (pending, accepted):
            self.assertEqual(self.kinds(ref).count("referral.follow_up_overdue"), 1)
        # A follow-up, late, clears the flag.
        done = self.move(self.clinic, got, pb.ACTION_FOLLOW_UP, "followed_up",
                         reason="seen, a week late")
        self.assertFalse(done.follow_up_overdue)


if __name__ == "__main__":
    unittest.main()
