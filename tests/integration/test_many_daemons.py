#!/usr/bin/python3
"""Three daemons, one database (docs/scaling.md): referrald keeps nothing
that another instance needs, so any number of them can serve one database
behind a plain TCP load balancer. Here three run side by side and

  * the overbooking race is run across all three at once, each daemon
    coalescing its own bookings into batches that race each other's:
    exactly capacity bookings, every other request FULL, counters equal to
    the bookings;
  * due releases are made by whichever daemon's timer gets there first,
    each exactly once;
  * an event made through one daemon reaches subscribers on the other two,
    once each, in order."""

import collections
import time
import unittest

import harness
from harness import pb
import referrals_support as rs
import slots_support as ss

DAEMONS = 3
CONNECTIONS = 150
CAPACITY = 40
RESERVED = 16
RELEASED_SESSIONS = 12
BOOKERS = ("clinic", "clinic-b", "desk", "admin")


class ManyDaemonsTest(rs.ReferralsTestCase):
    private_database = True
    # Hundreds of handshakes at once (cheap tokens, but still a database
    # lookup each): a long wait for a connection rather than UNAVAILABLE.
    daemon_settings = {"release_interval_ms": "100", "handshake_timeout_ms": "120000",
                       "max_connections": "1000", "db_pool_size": "4", "log_level": "info",
                       "db_queue_timeout_ms": "60000"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.community.cheap_tokens(BOOKERS)
        cls.daemons = [cls.daemon]
        for i in range(1, DAEMONS):
            d = ss.start_daemon(cls.pg, cls.dbname, cls.daemon_settings,
                                name=f"many_daemons_{i}")
            cls.addClassCleanup(d.stop)
            cls.daemons.append(d)

    def test_overbooking_race_across_daemons(self):
        desk = self.authed("desk", daemon=self.daemons[1])
        resp = desk.publish(capacity=CAPACITY, reserved_slots=RESERVED, start=ss.future(days=5))
        self.assertOk(resp, "publish")
        s = resp.publish.sessions[0].session_id
        names = [BOOKERS[i % len(BOOKERS)] for i in range(CONNECTIONS)]
        swarm = ss.Swarm([(self.daemons[i % DAEMONS].port, self.community[n])
                          for i, n in enumerate(names)], timeout=60)
        self.addCleanup(swarm.close)
        swarm.hello_all()
        patients = self.community.patients(CONNECTIONS)
        requests = [ss.book_request(s, p, fallback=True, request_id=10 + i)
                    for i, p in enumerate(patients)]
        answers = swarm.exchange(requests)
        pools, full = collections.Counter(), 0
        acked = {}
        for req, got in zip(requests, answers):
            self.assertEqual(len(got), 1, got)
            if got[0].HasField("error"):
                self.assertEqual(pb.ErrorCode.Name(got[0].error.code), "FULL", got[0])
                full += 1
                continue
            b = got[0].booking
            pools[pb.Pool.Name(b.pool)] += 1
            acked[b.booking_id] = pb.Pool.Name(b.pool)[5:].lower()
        self.assertEqual(dict(pools), {"POOL_RESERVED": RESERVED,
                                       "POOL_PUBLIC": CAPACITY - RESERVED})
        self.assertEqual(full, CONNECTIONS - CAPACITY)
        rows = self.community.bookings(s)
        self.assertEqual({bid: pool for bid, (pool, _) in rows.items()}, acked)
        self.assertEqual(self.community.invariant_violations(), [])

    def test_each_due_release_happens_once(self):
        desk = self.authed("desk", daemon=self.daemons[2])
        base = ss.future(days=4, hour=1)
        times = [(base + i * 60, base + i * 60 + 1800) for i in range(RELEASED_SESSIONS)]
        resp = desk.publish(kind=pb.KIND_EXAM, department="radiology", resource="ct-1",
                            capacity=10, reserved_slots=4, times=times)
        self.assertOk(resp, "publish")
        sessions = [x.session_id for x in resp.publish.sessions]
        self.community.set_release_at(sessions, "now() + interval '300 milliseconds'")
        c = harness.sql_literal(self.community.community_id)
        ids = ",".join(str(x) for x in sessions)
        count_sql = (f"SELECT count(*) FROM sessions WHERE community_id = {c} "
                     f"AND session_id IN ({ids}) AND released_at IS NOT NULL")
        harness.wait_for(lambda: int(self.community.psql(count_sql)) == RELEASED_SESSIONS, 30,
                         interval=0.1, what="every session released")
        time.sleep(0.5)     # more ticks of every daemon: none releases again
        rows = [r for r in self.community.releases() if r[0] in set(sessions)]
        self.assertEqual(sorted(rows), sorted((x, 4) for x in sessions))
        for d in self.daemons:
            self.assertNotRegex(d.log(), r"release: \w+:", f"a release failed in {d.log_path}")

    def test_events_reach_subscribers_of_every_daemon(self):
        start = self.community.last_event_seq()
        streams = [self.stream("monitor", after_seq=start, daemon=d) for d in self.daemons[1:]]
        clinic = self.authed("clinic", daemon=self.daemons[0])
        ref = self.refer_up(clinic=clinic)
        desk = self.authed("desk", daemon=self.daemons[1])
        self.move(desk, ref, pb.ACTION_NO_SLOT, "waiting_slot")
        for st in streams:
            events = st.take(2)
            self.assertEqual([(e.kind, e.referral_id) for e in events],
                             [("referral.create", ref.referral_id),
                              ("referral.no_slot", ref.referral_id)])
            self.assertEqual(events[1].seq, events[0].seq + 1)
            st.quiet(0.3)


if __name__ == "__main__":
    unittest.main()
