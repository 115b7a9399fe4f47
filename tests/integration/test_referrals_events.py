#!/usr/bin/python3
"""Live referral events (Subscribe): the Subscribed answer, events pushed
with the Subscribe's request_id in strictly increasing order, one per move
with its kind; a clinic sees its own institution's referrals only, a
monitor or admin the whole community; resuming after a disconnection gives
exactly the events missed, no gap and no duplicate; events made through one
daemon reach subscribers of another daemon on the same database."""

import unittest

import harness
from harness import pb, sql_literal
import referrals_support as rs
import slots_support as ss


class EventsTest(rs.ReferralsTestCase):
    own_community = True

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def db_events(self, after_seq, institution=None):
        """(seq, kind, referral_id, state, from, to) of the community's events."""
        c = self.community
        where = f"community_id = {sql_literal(c.community_id)} AND seq > {int(after_seq)}"
        if institution:
            where += (f" AND {sql_literal(institution)} IN "
                      "(coalesce(from_institution, ''), coalesce(to_institution, ''))")
        out = c.psql("SELECT seq, kind, referral_id, coalesce(state, ''), "
                     "coalesce(from_institution, ''), coalesce(to_institution, '') "
                     f"FROM events WHERE {where} ORDER BY seq")
        return [(int(f[0]),) + tuple(f[1:]) for f in
                (line.split("|") for line in out.splitlines())]

    @staticmethod
    def as_rows(events):
        return [(e.seq, e.kind, e.referral_id, e.state, e.from_institution, e.to_institution)
                for e in events]

    def test_subscribe_and_receive(self):
        start = self.community.last_event_seq()
        streams = {name: self.stream(name, after_seq=start)
                   for name in ("monitor", "admin", "clinic", "clinic-b", "desk-tcm", "desk")}
        for s in streams.values():
            self.assertEqual(s.last_seq, start)
        s1 = self.publish_one(self.desk, capacity=4)
        # village-a -> county-hospital: create, accept, arrive.
        a = self.refer_up(self.clinic, session_id=s1.session_id)
        a = self.move(self.desk, a, pb.ACTION_ACCEPT, "accepted")
        self.move(self.desk, a, pb.ACTION_ARRIVE, "arrived")
        # A slot lost under a pending referral.
        b = self.refer_up(self.clinic, session_id=s1.session_id)
        self.assertOk(self.clinic.cancel(b.booking_id, "moved"), "booking")
        # village-b -> tcm-hospital, rejected.
        c = self.refer_up(self.authed("clinic-b"), to="tcm-hospital", department="acupuncture")
        self.move(self.authed("desk-tcm"), c, pb.ACTION_REJECT, "rejected", reason="no")
        # Another community's referrals are made meanwhile: none of ours sees them.
        other = rs.ReferralCommunity(self.pg, "referrals-events-other", dbname=self.dbname)
        self.addCleanup(other.close)
        oc = rs.ReferralClient(self.daemon.port)
        self.addCleanup(oc.close)
        self.assertOk(oc.hello(other["clinic"]), "hello")
        self.assertReferral(oc.refer_up(other.patient()), "pending")
        # village-a -> county-hospital, redirected to tcm-hospital.
        d = self.refer_up(self.clinic)
        d = self.move(self.desk, d, pb.ACTION_REDIRECT, "redirected", reason="acupuncture",
                      to_institution="tcm-hospital", to_department="acupuncture")
        everything = self.db_events(start)
        self.assertEqual([(e[1], e[2]) for e in everything],
                         [("referral.create", a.referral_id), ("referral.accept", a.referral_id),
                          ("referral.arrive", a.referral_id), ("referral.create", b.referral_id),
                          ("referral.slot_lost", b.referral_id),
                          ("referral.create", c.referral_id), ("referral.reject", c.referral_id),
                          ("referral.create", d.referral_id),
                          ("referral.create", d.redirected_to),
                          ("referral.redirect", d.referral_id)])
        self.assertEqual([e[0] for e in everything], list(range(start + 1, start + 11)))
        for name, institution in (("monitor", None), ("admin", None), ("clinic", "village-a"),
                                  ("clinic-b", "village-b"), ("desk-tcm", "tcm-hospital"),
                                  ("desk", "county-hospital")):
            with self.subTest(subscriber=name):
                want = self.db_events(start, institution)
                got = streams[name].take(len(want))
                self.assertEqual(self.as_rows(got), want)
                streams[name].quiet(0.3)
        # What an event says.
        [ev] = [e for e in streams["monitor"].seen
                if e.event.kind == "referral.accept"]
        self.assertEqual(ev.request_id, streams["monitor"].request_id)
        self.assertEqual((ev.event.referral_id, ev.event.booking_id, ev.event.from_institution,
                          ev.event.to_institution, ev.event.state),
                         (a.referral_id, a.booking_id, "village-a", "county-hospital", "accepted"))
        self.assertGreater(ev.event.at, 0)
        self.assertFalse(ev.HasField("error"))

    def test_requests_on_a_subscribed_connection(self):
        """A subscribed connection still answers requests, each under its
        own request_id, between the pushes."""
        mon = self.stream("monitor")
        ref = self.refer_up(self.clinic)
        [ev] = mon.take(1)
        self.assertEqual(ev.referral_id, ref.referral_id)
        mon.client.send(rs.get_request(ref.referral_id, request_id=500))
        self.move(self.desk, ref, pb.ACTION_NO_SLOT, "waiting_slot")
        got, events = None, []
        while got is None or not events:
            resp = mon.next()
            if resp.request_id == 500:
                got = self.assertReferral(resp)
            else:
                self.assertEqual(resp.request_id, mon.request_id, resp)
                events.append(resp.event)
        self.assertEqual(got.referral_id, ref.referral_id)
        self.assertEqual([e.kind for e in events], ["referral.no_slot"])
        mon.quiet(0.3)

    def test_many_events_in_order(self):
        """Events by the thousand (made straight in SQL, as the referral
        functions make them), in big and small transactions: every
        subscriber gets each of its events once, in order; a resume from
        the middle gets exactly the rest."""
        a = self.refer_up(self.clinic)
        b = self.refer_up(self.authed("clinic-b"), to="tcm-hospital", department="acupuncture")
        start = self.community.last_event_seq()
        mon = self.stream("monitor", after_seq=start)
        cli = self.stream("clinic", after_seq=start)
        c = harness.sql_literal(self.community.community_id)

        def emit(i_expr):
            # Even numbers: a's (village-a -> county-hospital); odd: b's.
            return (f"SELECT emit_event({c}, 'referral.bulk', "
                    f"CASE WHEN ({i_expr}) % 2 = 0 THEN 'village-a' ELSE 'village-b' END, "
                    f"CASE WHEN ({i_expr}) % 2 = 0 THEN 'county-hospital' ELSE 'tcm-hospital' END, "
                    f"CASE WHEN ({i_expr}) % 2 = 0 THEN '{a.referral_id}'::uuid "
                    f"ELSE '{b.referral_id}'::uuid END, NULL, 'pending', 'n' || ({i_expr}))")

        # 1200 in one transaction, then 150 in transactions of their own.
        self.community.psql(emit("i") + " FROM generate_series(0, 1199) AS g(i)")
        self.community.psql(";\n".join(emit(str(i)) for i in range(1200, 1350)))
        total = 1350
        self.assertEqual(self.community.last_event_seq(), start + total)
        got = mon.take(total, timeout=20)
        self.assertEqual([e.seq for e in got], list(range(start + 1, start + total + 1)))
        self.assertEqual([e.detail for e in got], [f"n{i}" for i in range(total)])
        mine = cli.take(total // 2, timeout=20)
        self.assertEqual([e.seq for e in mine], list(range(start + 1, start + total + 1, 2)))
        self.assertTrue(all(e.from_institution == "village-a" for e in mine))
        for s in (mon, cli):
            s.quiet(0.3)
        # A resume from the middle of the big transaction.
        again = self.stream("monitor", after_seq=start + 700)
        self.assertEqual(again.last_seq, start + total)
        rest = again.take(total - 700, timeout=20)
        self.assertEqual([e.seq for e in rest], list(range(start + 701, start + total + 1)))
        again.quiet(0.3)

    def test_resume_without_gap_or_duplicate(self):
        start = self.community.last_event_seq()
        mon = self.stream("monitor", after_seq=start)
        cli = self.stream("clinic", after_seq=start)
        ref = self.refer_up(self.clinic, urgency=pb.URGENCY_EMERGENCY)
        seen = mon.take(1)
        self.assertEqual(cli.take(1), seen)
        last = seen[-1].seq
        mon.close()
        cli.close()
        # While nobody listens: four events, one of them elsewhere.
        ref = self.move(self.desk, ref, pb.ACTION_ACCEPT, "accepted")
        elsewhere = self.refer_up(self.authed("clinic-b"), to="tcm-hospital",
                                  department="acupuncture")
        ref = self.move(self.desk, ref, pb.ACTION_ADMIT, "admitted")
        ref = self.move(self.desk, ref, pb.ACTION_DISCHARGE, "discharged")
        newest = self.community.last_event_seq()
        self.assertEqual(newest, last + 4)
        mon = self.stream("monitor", after_seq=last)
        cli = self.stream("clinic", after_seq=last)
        self.assertEqual((mon.last_seq, cli.last_seq), (newest, newest))
        missed = mon.take(4)
        self.assertEqual([(e.seq, e.kind) for e in missed],
                         [(last + 1, "referral.accept"), (last + 2, "referral.create"),
                          (last + 3, "referral.admit"), (last + 4, "referral.discharge")])
        self.assertEqual(missed[1].referral_id, elsewhere.referral_id)
        self.assertEqual([(e.seq, e.kind) for e in cli.take(3)],
                         [(last + 1, "referral.accept"), (last + 3, "referral.admit"),
                          (last + 4, "referral.discharge")])
        # Live again, after the replay: the next one, once.
        self.move(self.desk, ref, pb.ACTION_COMPLETE, "completed")
        for s in (mon, cli):
            [ev] = s.take(1)
            self.assertEqual((ev.seq, ev.kind), (newest + 1, "referral.complete"))
            s.quiet(0.3)
        # Subscribing at the newest number replays nothing.
        quiet = self.stream("monitor")
        self.assertEqual(quiet.last_seq, newest + 1)
        quiet.quiet(0.3)


class SubscriptionTest(rs.ReferralsTestCase):
    """The subscription itself: replay from the first event, from_now, one
    subscription per connection, never closed as idle, and events found by
    the poll when no notification comes."""
    own_community = True
    # Short, but not so short that a loaded machine idles out a connection
    # between two steps of a test.
    daemon_settings = {"idle_timeout_ms": "2000", "events_poll_ms": "300"}

    def test_replay_from_the_first_and_from_now(self):
        # (Fresh connections throughout: the idle timeout is short here.)
        clinic = self.authed("clinic")
        made = [self.refer_up(clinic) for _ in range(3)]
        # Every event of the community so far (other tests of the class add theirs).
        events = self.community.events()
        self.assertEqual(events[0][0], 1)
        # after_seq 0: the community's events from the first.
        full = self.stream("monitor", after_seq=0)
        self.assertEqual(full.last_seq, events[-1][0])
        got = full.take(len(events))
        self.assertEqual([(e.seq, e.kind, e.referral_id) for e in got],
                         [(seq, kind, rid) for seq, kind, rid, _ in events])
        self.assertEqual([e.referral_id for e in got[-3:]], [r.referral_id for r in made])
        full.quiet(0.2)
        # from_now: nothing of the past, then what comes.
        now = EventStreamFromNow(self.daemon.port, self.community["clinic"])
        self.addCleanup(now.close)
        self.assertOk(now.subscribed, "subscribed")
        self.assertEqual(now.last_seq, events[-1][0])
        now.quiet(0.3)
        ref = self.refer_up(self.authed("clinic"))
        for s in (full, now):
            [ev] = s.take(1)
            self.assertEqual((ev.seq, ev.referral_id), (events[-1][0] + 1, ref.referral_id))

    def test_one_subscription_per_connection_never_idle(self):
        sub = self.stream("desk")
        plain = self.authed("desk")
        resp = sub.client.call(rs.subscribe_request(0, request_id=91))
        self.assertError(resp, pb.FAILED_PRECONDITION, request_id=91)
        # Well past the idle timeout: the plain connection is closed, the
        # subscribed one still gets its events.
        plain.wait_closed(timeout=5)
        ref = self.refer_up(self.authed("clinic"))
        [ev] = sub.take(1)
        self.assertEqual(ev.referral_id, ref.referral_id)

    def test_events_without_notification(self):
        """An event committed without NOTIFY (as when a notification is
        lost) arrives by the poll, within events_poll_ms."""
        mon = self.stream("monitor")
        ref = self.refer_up(self.authed("clinic"))
        [ev] = mon.take(1)
        c = harness.sql_literal(self.community.community_id)
        self.community.psql(f"""
BEGIN;
UPDATE event_counters SET last_seq = last_seq + 1 WHERE community_id = {c};
INSERT INTO events (community_id, seq, kind, from_institution, to_institution, referral_id,
                    state, detail)
SELECT {c}, last_seq, 'referral.quiet', 'village-a', 'county-hospital',
       '{ref.referral_id}'::uuid, 'pending', 'no notify'
  FROM event_counters WHERE community_id = {c};
COMMIT;""")
        [quiet] = mon.take(1, timeout=5)
        self.assertEqual((quiet.seq, quiet.kind, quiet.detail),
                         (ev.seq + 1, "referral.quiet", "no notify"))


class BigBacklogTest(rs.ReferralsTestCase):
    """A subscriber resuming after more events than max_output_bytes holds
    at once must still catch up, by number, however many resumes it takes."""
    own_community = True
    daemon_settings = {"max_output_bytes": "65536"}

    def test_resume_after_a_big_backlog(self):
        ref = self.refer_up(self.authed("clinic"))
        start = self.community.last_event_seq()
        total = 1000
        # Events of ordinary size (a reason of a hundred characters: about
        # 250 bytes on the wire each), made while the subscriber was away.
        c = harness.sql_literal(self.community.community_id)
        note = "BP 150/95 despite amlodipine 5 mg; ankle oedema; refer for " \
               "echocardiography and a medication review"
        self.community.psql(
            f"SELECT emit_event({c}, 'referral.follow_up', 'county-hospital', 'village-a', "
            f"'{ref.referral_id}'::uuid, NULL, 'followed_up', i || ': {note}') "
            f"FROM generate_series(1, {total}) AS g(i)")
        got, attempts = [], 0
        while len(got) < total and attempts < 20:
            attempts += 1
            try:
                s = rs.EventStream(self.daemon.port, self.community["monitor"],
                                   start + len(got))
                self.addCleanup(s.close)
                while len(got) < total:
                    got += s.take(1)
            except harness.ConnectionClosed:
                continue
        self.assertEqual(len(got), total, f"{len(got)} events after {attempts} subscriptions")
        self.assertEqual([e.seq for e in got], list(range(start + 1, start + total + 1)))


class EventStreamFromNow(rs.EventStream):
    """An EventStream subscribed with from_now (and after_seq 0)."""

    def __init__(self, port, terminal, request_id=78):
        self.client = rs.ReferralClient(port)
        hello = self.client.hello(terminal)
        if hello.WhichOneof("body") != "hello":
            raise AssertionError(f"hello failed: {hello}")
        self.request_id = request_id
        self.client.send(pb.Request(request_id=request_id,
                                    subscribe=pb.Subscribe(after_seq=0, from_now=True)))
        self.subscribed = self.client.recv(timeout=10)
        self.seen = []


class TwoDaemonsTest(rs.ReferralsTestCase):
    own_community = True

    def test_events_cross_daemons(self):
        second = ss.start_daemon(self.pg, self.dbname, name="referrals_events_2")
        self.addCleanup(second.stop)
        start = self.community.last_event_seq()
        on_first = self.stream("monitor", after_seq=start)
        on_second = self.stream("clinic", after_seq=start, daemon=second)
        # Made through the first daemon, seen on the second ...
        ref = self.refer_up(self.authed("clinic"))
        [ev] = on_second.take(1)
        self.assertEqual((ev.seq, ev.kind, ev.referral_id),
                         (start + 1, "referral.create", ref.referral_id))
        # ... and the other way round.
        self.move(self.authed("desk", daemon=second), ref, pb.ACTION_NO_SLOT, "waiting_slot")
        self.assertEqual([(e.seq, e.kind) for e in on_first.take(2)],
                         [(start + 1, "referral.create"), (start + 2, "referral.no_slot")])
        [ev] = on_second.take(1)
        self.assertEqual((ev.seq, ev.kind), (start + 2, "referral.no_slot"))
        for s in (on_first, on_second):
            s.quiet(0.3)


if __name__ == "__main__":
    unittest.main()
