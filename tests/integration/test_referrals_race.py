#!/usr/bin/python3
"""Races on one referral, over many real connections at once: the same move
(or competing moves) sent by clerks who all saw version 1 — exactly one
wins, every other is told the referral moved (CONFLICT on if_version), one
history entry is added; without if_version the losers are told the state
no longer allows the move. And races in making referrals: retries of one
idempotency key make one referral; referrals competing for the last
reserved units of a session get exactly those units, and the refused ones
leave no referral behind."""

import collections
import unittest

from harness import pb
import referrals_support as rs
import slots_support as ss

CONNECTIONS = 24
HOSPITAL_SIDE = ("desk", "admin")
CLINICS = ("clinic", "clinic-b")


class RaceTest(rs.ReferralsTestCase):
    own_community = True
    daemon_settings = {"db_pool_size": "8", "handshake_timeout_ms": "60000",
                       "db_queue_timeout_ms": "60000"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Many handshakes: cheap hashes keep them from being what is measured.
        cls.community.cheap_tokens(HOSPITAL_SIDE + CLINICS)

    def swarm(self, names):
        swarm = ss.Swarm([(self.daemon.port, self.community[n]) for n in names], timeout=60)
        self.addCleanup(swarm.close)
        swarm.hello_all()
        return swarm

    @staticmethod
    def outcome(resp):
        if resp.HasField("error"):
            return pb.ErrorCode.Name(resp.error.code)
        return resp.WhichOneof("body")

    def test_one_move_wins(self):
        desk = self.authed("desk")
        s = self.publish_one(desk, capacity=10)
        names = [HOSPITAL_SIDE[i % 2] for i in range(CONNECTIONS)]
        swarm = self.swarm(names)
        for round_ in range(3):
            with self.subTest(round=round_):
                ref = self.refer_up(self.authed("clinic"), session_id=s.session_id)
                # Half accept, half reject, all having seen version 1.
                reqs = [rs.action_request(ref.referral_id, pb.ACTION_ACCEPT, if_version=1,
                                          request_id=100 + i) if i % 2 == 0 else
                        rs.action_request(ref.referral_id, pb.ACTION_REJECT, if_version=1,
                                          reason=f"clerk {i} says no", request_id=100 + i)
                        for i in range(len(swarm))]
                answers = [a for [a] in swarm.exchange(reqs)]
                for i, a in enumerate(answers):
                    self.assertEqual(a.request_id, 100 + i)
                outcomes = collections.Counter(self.outcome(a) for a in answers)
                self.assertEqual(outcomes, {"referral": 1, "CONFLICT": len(swarm) - 1},
                                 answers)
                [won] = [i for i, a in enumerate(answers) if a.HasField("referral")]
                for a in answers:
                    if a.HasField("error"):
                        self.assertError(a, pb.CONFLICT, field="if_version")
                action, state = (("accept", "accepted") if won % 2 == 0
                                 else ("reject", "rejected"))
                got = answers[won].referral
                self.assertEqual((got.state, got.version), (state, 2))
                row = self.community.referral_row(ref.referral_id)
                self.assertEqual((row["state"], row["version"]), (state, 2))
                hist = self.community.history_rows(ref.referral_id)
                self.assertEqual([h[1:4] for h in hist],
                                 [("create", "", "pending"), (action, "pending", state)])
                self.assertEqual(hist[1][4], self.community[names[won]].terminal_id)
                self.assertEqual(self.community.booking_status(ref.booking_id),
                                 "booked" if state == "accepted" else "cancelled")
                self.assertEqual(len([e for e in self.community.events(ref.referral_id)]), 2)
        self.assertConsistent()

    def test_same_move_without_if_version(self):
        ref = self.refer_up(self.authed("clinic"), urgency=pb.URGENCY_EMERGENCY)
        swarm = self.swarm([HOSPITAL_SIDE[i % 2] for i in range(CONNECTIONS)])
        answers = [a for [a] in swarm.exchange(
            [rs.action_request(ref.referral_id, pb.ACTION_ACCEPT, request_id=7)
             for _ in range(len(swarm))])]
        outcomes = collections.Counter(self.outcome(a) for a in answers)
        self.assertEqual(outcomes, {"referral": 1, "FAILED_PRECONDITION": len(swarm) - 1},
                         answers)
        for a in answers:
            if a.HasField("error"):
                self.assertError(a, pb.FAILED_PRECONDITION, field="action")
                self.assertIn("accepted", a.error.message)
        self.assertEqual(self.community.history_actions(ref.referral_id), ["create", "accept"])
        self.assertEqual(self.community.referral_row(ref.referral_id)["version"], 2)

    def test_events_of_a_burst(self):
        """Referrals made at once on many connections: a subscriber gets
        every create event once, numbered without gaps, in order."""
        start = self.community.last_event_seq()
        mon = self.stream("monitor", after_seq=start)
        swarm = self.swarm([CLINICS[i % 2] for i in range(CONNECTIONS)])
        patients = self.community.patients(len(swarm))
        answers = [a for [a] in swarm.exchange(
            [rs.refer_up_request(patients[i], request_id=13) for i in range(len(swarm))])]
        made = {self.assertReferral(a, "pending").referral_id for a in answers}
        got = mon.take(len(swarm))
        self.assertEqual([e.seq for e in got], list(range(start + 1, start + len(swarm) + 1)))
        self.assertEqual({e.referral_id for e in got}, made)
        self.assertEqual({e.kind for e in got}, {"referral.create"})
        mon.quiet(0.3)

    def test_cancel_booking_against_closing_moves(self):
        """The clinic cancels a referral's booking while the desk rejects
        (or the clinic cancels) the referral, on many referrals at once:
        both requests succeed, in one order or the other, and the referral
        ends closed with its booking cancelled, the unit back in its pool."""
        desk = self.authed("desk")
        s = self.publish_one(desk, capacity=40, reserved_slots=40)
        n = CONNECTIONS // 2
        refs = [self.refer_up(self.authed("clinic"), session_id=s.session_id) for _ in range(n)]
        self.assertCounters(s.session_id, reserved_booked=n)
        names, reqs = [], []
        for i, ref in enumerate(refs):
            names.append("clinic")
            reqs.append(ss.cancel_request(ref.booking_id, "patient called", request_id=21))
            if i % 2 == 0:
                names.append("desk")
                reqs.append(rs.action_request(ref.referral_id, pb.ACTION_REJECT,
                                              reason="not indicated", request_id=22))
            else:
                names.append("clinic")
                reqs.append(rs.action_request(ref.referral_id, pb.ACTION_CANCEL,
                                              reason="withdrawn", request_id=22))
        swarm = self.swarm(names)
        answers = [a for [a] in swarm.exchange(reqs)]
        errors = [a for a in answers if a.HasField("error")]
        # Whatever happened (both requests of a pair may even fail, see
        # below), the referral and its booking agree, and so do the counters.
        for i, ref in enumerate(refs):
            state = self.community.referral_row(ref.referral_id)["state"]
            self.assertIn(state, ("pending", "rejected", "cancelled", "waiting_slot"))
            self.assertEqual(self.community.booking_status(ref.booking_id),
                             "booked" if state == "pending" else "cancelled",
                             (answers[2 * i], answers[2 * i + 1]))
        self.assertConsistent()
        self.assertEqual(errors, [], "every request succeeds, in one order or the other")
        self.assertCounters(s.session_id, reserved_booked=0)
        for i, ref in enumerate(refs):
            closed, move = ("rejected", "reject") if i % 2 == 0 else ("cancelled", "cancel")
            self.assertEqual(self.community.referral_row(ref.referral_id)["state"], closed)
            self.assertIn(self.community.history_actions(ref.referral_id),
                          (["create", move], ["create", "slot_lost", move]))

    def test_retries_of_one_key(self):
        desk = self.authed("desk")
        s = self.publish_one(desk, capacity=10)
        p = self.community.patient()
        key = rs.new_key()
        swarm = self.swarm(["clinic"] * 12)
        answers = [a for [a] in swarm.exchange(
            [rs.refer_up_request(p, session_id=s.session_id, key=key, request_id=9)
             for _ in range(len(swarm))])]
        refs = [self.assertReferral(a, "pending") for a in answers]
        self.assertEqual(len({r.referral_id for r in refs}), 1, answers)
        self.assertEqual(sum(not r.replayed for r in refs), 1)
        self.assertEqual(self.community.patient_referrals(p), [refs[0].referral_id])
        self.assertEqual(len(self.community.patient_bookings(p)), 1)
        self.assertCounters(s.session_id, reserved_booked=1)

    def test_last_reserved_units(self):
        desk = self.authed("desk")
        s = self.publish_one(desk, capacity=5)            # reserved 2, public 3
        names = [CLINICS[i % 2] for i in range(CONNECTIONS)]
        swarm = self.swarm(names)
        patients = self.community.patients(len(swarm))
        reqs = [rs.refer_up_request(patients[i], session_id=s.session_id, request_id=11)
                for i in range(len(swarm))]
        answers = [a for [a] in swarm.exchange(reqs)]
        outcomes = collections.Counter(self.outcome(a) for a in answers)
        self.assertEqual(outcomes, {"referral": 2, "FULL": len(swarm) - 2}, answers)
        made = 0
        for i, a in enumerate(answers):
            has = self.community.patient_referrals(patients[i])
            if a.HasField("referral"):
                self.assertEqual(has, [a.referral.referral_id])
                self.assertEqual(len(self.community.patient_bookings(patients[i])), 1)
                made += 1
            else:
                self.assertError(a, pb.FULL, field="session_id")
                self.assertEqual(has, [], "a refused booking leaves no referral")
                self.assertEqual(self.community.patient_bookings(patients[i]), [])
        self.assertEqual(made, 2)
        self.assertCounters(s.session_id, reserved_booked=2, public_booked=0)
        self.assertConsistent()


if __name__ == "__main__":
    unittest.main()
