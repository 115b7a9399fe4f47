#!/usr/bin/python3
"""The figures of a community checked against a scenario with known counts:
so many sessions, bookings (by pool, one cancelled), releases, emergency
bookings, up-referrals accepted, rejected, redirected, no-show, escalated,
down-referrals with an overdue follow-up. The same figures are read three
ways: the Stats reply of the protocol, `referralctl stats --json`, and the
community gauges of /metrics parsed as Prometheus text.

A community of its own, on the shared database: the figures are the
community's and nothing else adds to them."""

import json
import time
import unittest

import harness
from metrics_support import scrape
from harness import pb
import referrals_support as rs
import slots_support as ss
from referrals_support import future

E = pb.ErrorCode
DAY = 86400


def stats_request(**fields):
    return pb.Request(stats=pb.StatsRequest(**fields))


def gauge(families, family, **labels):
    """The value of the one sample of the family with these labels, or None."""
    for s in families[family].samples if family in families else []:
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


class Scenario:
    """What setUpClass does, and what it must show. Counts by institution:
    county-hospital publishes SA (capacity 10, 4 reserved), SB (5, 2) and
    SC (4, 2); tcm-hospital SD (10, 5 reserved)."""

    def __init__(self, daemon, community):
        self.community = c = community
        self.clients = []
        clinic, desk, desk_tcm = (self.client(daemon, n) for n in ("clinic", "desk", "desk-tcm"))
        p = c.patients(16)
        sa = self.publish(desk, capacity=10, start=future(days=3, hour=1))
        sb = self.publish(desk, capacity=5, start=future(days=4, hour=1))
        sc = self.publish(desk, capacity=4, start=future(days=5, hour=1))
        sd = self.publish(desk_tcm, department="acupuncture", resource="dr-zhao", capacity=10,
                          reserved_slots=5, start=future(days=3, hour=1))
        # SA: two reserved bookings of the family doctor, two public ones of
        # the desk, one of them cancelled.
        for patient in p[0:2]:
            self.booked(clinic.book(sa, patient), pb.POOL_RESERVED)
        self.booked(desk.book(sa, p[2]), pb.POOL_PUBLIC)
        cancelled = self.booked(desk.book(sa, p[3]), pb.POOL_PUBLIC)
        self.ok(desk.cancel(cancelled.booking_id, "patient called"), "booking")
        # SD: one reserved, two public.
        self.booked(clinic.book(sd, p[4]), pb.POOL_RESERVED)
        for patient in p[5:7]:
            self.booked(desk_tcm.book(sd, patient), pb.POOL_PUBLIC)

        # Up-referrals to county-hospital: R1 with a slot in SA, accepted;
        # R2 rejected; R3 redirected to tcm-hospital (a new referral there);
        # RE urgent, waiting long enough to be escalated, with an emergency
        # booking in SA; RN with a slot in SC, accepted, no-show.
        r1 = self.referral(clinic.refer_up(p[7], session_id=sa))
        self.referral(desk.act(r1, pb.ACTION_ACCEPT))
        r2 = self.referral(clinic.refer_up(p[8]))
        self.referral(desk.act(r2, pb.ACTION_REJECT, reason="not for cardiology"))
        r3 = self.referral(clinic.refer_up(p[9]))
        self.referral(desk.act(r3, pb.ACTION_REDIRECT, reason="acupuncture first",
                               to_institution="tcm-hospital", to_department="acupuncture"))
        re = self.referral(clinic.refer_up(p[10], urgency=pb.URGENCY_URGENT))
        self.booked(desk.emergency(sa, p[10], referral=re), pb.POOL_EMERGENCY)
        c.backdate(re, 200)               # beyond escalate_urgent_min (120)
        rn = self.referral(clinic.refer_up(p[11], session_id=sc))
        self.referral(desk.act(rn, pb.ACTION_ACCEPT))
        c.move_session_to_past(sc, ended_minutes_ago=200)   # beyond no_show_grace_min
        # Down-referrals from county-hospital: D1 pending, D2 overdue.
        self.referral(desk.refer_down(p[12]))
        self.d2 = self.referral(desk.refer_down(p[13]))
        c.psql(f"UPDATE referrals SET follow_up_due = current_date - 2 WHERE {c.where(self.d2)}")
        # SB is released with nothing booked; SC (now past) releases its
        # unbooked reserved unit too.
        c.set_release_at([sb], "now() - interval '1 minute'")
        self.accepted = (r1, rn)
        self.wait_for_the_timer(c, sb, sc, re, rn)
        for client in self.clients:
            client.close()

    def client(self, daemon, name):
        c = rs.ReferralClient(daemon.port)
        self.clients.append(c)
        self.ok(c.hello(self.community[name]), "hello")
        return c

    @staticmethod
    def ok(resp, body):
        if resp.HasField("error") or resp.WhichOneof("body") != body:
            raise AssertionError(f"scenario step failed: expected {body}, got {resp}")
        return getattr(resp, body)

    def publish(self, desk, **kw):
        return self.ok(desk.publish(**kw), "publish").sessions[0].session_id

    def booked(self, resp, pool):
        b = self.ok(resp, "booking")
        if b.pool != pool:
            raise AssertionError(f"booked in {pb.Pool.Name(b.pool)}, not {pb.Pool.Name(pool)}")
        return b

    def referral(self, resp):
        return self.ok(resp, "referral").referral_id

    def wait_for_the_timer(self, c, sb, sc, re, rn):
        def done():
            return (len(c.releases()) == 2
                    and c.referral_row(re)["escalated"]
                    and c.referral_row(rn)["state"] == "no_show"
                    and c.referral_row(self.d2)["follow_up_overdue"])
        harness.wait_for(done, 20, interval=0.1, what="releases, no-show, escalation, overdue")

    # The figures the scenario makes, by institution.
    COUNTY = {
        "sessions_published": 3, "sessions_cancelled": 0, "capacity_units": 19,
        "published_units": 19, "reserved_published": 8, "floor_pct": 40,
        "sessions_below_floor": 0,
        # SA 4 in the pool; SB released 2; SC holds its 1 booked and released 1.
        "reserved_pool": 8, "reserved_booked": 4, "public_pool": 14, "public_booked": 1,
        "released_units": 3, "sessions_released": 2, "emergency_bookings": 1,
        "up_referrals": 5, "down_referrals": 2, "up_accepted": 2, "up_rejected": 1,
        "up_redirected": 1, "up_no_show": 1,
        # RE pending; D1 and D2 pending at the clinic.
        "waiting_now": 3, "escalated_waiting_now": 1, "follow_ups_overdue_now": 1,
    }
    TCM = {
        "sessions_published": 1, "sessions_cancelled": 0, "capacity_units": 10,
        "published_units": 10, "reserved_published": 5, "floor_pct": 40,
        "sessions_below_floor": 0, "reserved_pool": 5, "reserved_booked": 1, "public_pool": 5,
        "public_booked": 2, "released_units": 0, "sessions_released": 0,
        "emergency_bookings": 0, "up_referrals": 1, "down_referrals": 0, "up_accepted": 0,
        "up_rejected": 0, "up_redirected": 0, "up_no_show": 0, "waiting_now": 1,
        "escalated_waiting_now": 0, "follow_ups_overdue_now": 0,
    }

    @classmethod
    def total(cls):
        return {k: (cls.COUNTY[k] if k == "floor_pct" else cls.COUNTY[k] + cls.TCM[k])
                for k in cls.COUNTY}


class StatsTest(rs.ReferralsTestCase):
    own_community = True
    daemon_settings = {"figures_metrics_interval_ms": "300"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.scenario = Scenario(cls.daemon, cls.community)
        cls.done_at = time.time()
        cls.window = {"since": int(time.time()) - DAY, "until": int(time.time()) + 10 * DAY}

    # -- checks
    def assertFigures(self, got, expected, where):
        """got: a Figures message or its JSON; counts exact, rates from them."""
        get = (lambda k: got[k]) if isinstance(got, dict) else (lambda k: getattr(got, k))
        self.assertEqual({k: get(k) for k in expected}, expected, where)

        def ratio(a, b):
            return expected[a] / expected[b] if expected[b] else 0.0

        rates = {"reserved_share": ratio("reserved_published", "published_units"),
                 "reserved_utilisation": ratio("reserved_booked", "reserved_pool"),
                 "public_utilisation": ratio("public_booked", "public_pool"),
                 "down_up_ratio": ratio("down_referrals", "up_referrals"),
                 "acceptance_rate": ratio("up_accepted", "up_referrals"),
                 "rejection_rate": ratio("up_rejected", "up_referrals"),
                 "redirect_rate": ratio("up_redirected", "up_referrals"),
                 "no_show_rate": ratio("up_no_show", "up_accepted")}
        for k, v in rates.items():
            self.assertAlmostEqual(get(k), v, places=9, msg=f"{where}: {k}")

    def accept_seconds(self):
        """Each accepted referral's time to its first acceptance, from the
        history the daemon keeps."""
        ids = ",".join(harness.sql_literal(r) for r in self.scenario.accepted)
        out = self.community.psql(f"""
SELECT extract(epoch FROM min(h.at) - min(r.created_at))
  FROM referrals r JOIN referral_history h USING (community_id, referral_id)
 WHERE r.community_id = {harness.sql_literal(self.community.community_id)}
   AND r.referral_id IN ({ids}) AND h.action = 'accept' GROUP BY r.referral_id ORDER BY 1""")
        return [float(x) for x in out.split()]

    def stats(self, terminal="monitor", **fields):
        fields.setdefault("since", self.window["since"])
        fields.setdefault("until", self.window["until"])
        return self.authed(terminal).call(stats_request(**fields))

    def test_protocol_figures_per_hospital_and_community(self):
        resp = self.stats()
        self.assertOk(resp, "stats")
        s = resp.stats
        self.assertEqual((s.community_id, s.since, s.until),
                         (self.community.community_id, self.window["since"], self.window["until"]))
        by_id = {f.institution_id: f for f in s.institutions}
        self.assertEqual(sorted(by_id), ["county-hospital", "tcm-hospital"])
        self.assertFigures(by_id["county-hospital"], Scenario.COUNTY, "county-hospital")
        self.assertFigures(by_id["tcm-hospital"], Scenario.TCM, "tcm-hospital")
        self.assertEqual(s.community.institution_id, "")
        self.assertFigures(s.community, Scenario.total(), "community")
        # Time to acceptance: the median and 90th percentile of the two.
        a, b = self.accept_seconds()
        for f in (by_id["county-hospital"], s.community):
            self.assertAlmostEqual(f.accept_median_seconds, (a + b) / 2, places=3)
            self.assertAlmostEqual(f.accept_p90_seconds, a + 0.9 * (b - a), places=3)
        self.assertEqual(by_id["tcm-hospital"].accept_median_seconds, 0)

    def test_referralctl_stats_json(self):
        p = ss.referralctl(self.daemon, self.community["monitor"], "stats",
                           "--since", str(self.window["since"]), "--until", str(self.window["until"]))
        self.assertEqual(p.returncode, 0, p.stderr)
        got = json.loads(p.stdout)
        self.assertFigures(got["community"], Scenario.total(), "referralctl community")
        by_id = {f["institution_id"]: f for f in got["institutions"]}
        self.assertFigures(by_id["county-hospital"], Scenario.COUNTY, "referralctl county")
        self.assertFigures(by_id["tcm-hospital"], Scenario.TCM, "referralctl tcm")
        # The same as a table for people: one column per group.
        p = ss.referralctl(self.daemon, self.community["monitor"], "stats", "--since",
                           str(self.window["since"]), "--until", str(self.window["until"]),
                           json_out=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        row = next(line for line in p.stdout.splitlines() if "up-referrals" in line).split()
        self.assertEqual(row[1:], ["6", "5", "1"], p.stdout)

    def test_desk_sees_its_own_hospital_only(self):
        resp = self.stats("desk")
        self.assertOk(resp, "stats")
        self.assertFalse(resp.stats.HasField("community"), "no community total for a desk")
        self.assertEqual([f.institution_id for f in resp.stats.institutions], ["county-hospital"])
        self.assertFigures(resp.stats.institutions[0], Scenario.COUNTY, "desk")
        self.assertError(self.stats("desk", institution_id="tcm-hospital"), E.PERMISSION_DENIED,
                         field="institution_id")
        self.assertError(self.stats("clinic"), E.PERMISSION_DENIED)
        self.assertError(self.stats("billing"), E.PERMISSION_DENIED)
        # A monitor may pick one institution; then there is no total either.
        resp = self.stats(institution_id="tcm-hospital")
        self.assertOk(resp, "stats")
        self.assertFalse(resp.stats.HasField("community"))
        self.assertFigures(resp.stats.institutions[0], Scenario.TCM, "monitor, one institution")

    def test_window_and_community_are_checked(self):
        self.assertError(self.stats(community_id="elsewhere"), E.PERMISSION_DENIED,
                         field="community_id")
        self.assertOk(self.stats(community_id=self.community.community_id), "stats")
        now = int(time.time())
        self.assertError(self.stats(since=now, until=now - 1), E.INVALID_ARGUMENT, field="until")
        self.assertError(self.stats(since=now - 400 * DAY, until=now), E.INVALID_ARGUMENT,
                         field="since")
        # A window before the scenario: nothing in it but the referrals
        # waiting now.
        resp = self.stats(since=now - 20 * DAY, until=now - 10 * DAY)
        self.assertOk(resp, "stats")
        self.assertEqual((resp.stats.community.sessions_published,
                          resp.stats.community.up_referrals,
                          resp.stats.community.waiting_now), (0, 0, 4))
        # The default window takes in the scenario: 30 days either side.
        resp = self.authed("monitor").call(stats_request())
        self.assertOk(resp, "stats")
        self.assertEqual(resp.stats.until - resp.stats.since, 60 * DAY)
        self.assertFigures(resp.stats.community, Scenario.total(), "default window")

    def test_metrics_community_gauges(self):
        def fresh():
            fams = scrape(self.daemon)
            at = gauge(fams, "referrald_figures_refreshed_timestamp_seconds")
            # Refreshed at least two seconds after the scenario: computed on
            # a snapshot that has it all (a refresh takes milliseconds).
            return fams if at and at > self.done_at + 2 else None

        fams = harness.wait_for(fresh, 15, interval=0.2, what="a refresh after the scenario")
        c = self.community.community_id
        total = Scenario.total()
        expect = {
            ("referrald_community_sessions", "status", "open"): total["sessions_published"],
            ("referrald_community_sessions", "status", "cancelled"): 0,
            ("referrald_community_bookings", "pool", "reserved"): total["reserved_booked"],
            ("referrald_community_bookings", "pool", "public"): total["public_booked"],
            ("referrald_community_bookings", "pool", "emergency"): total["emergency_bookings"],
        }
        for (family, label, value), want in expect.items():
            self.assertEqual(gauge(fams, family, community=c, **{label: value}), want,
                             f"{family}{{{label}={value}}}")
        for family, key in (("referrald_community_released_units", "released_units"),
                            ("referrald_community_sessions_released", "sessions_released"),
                            ("referrald_community_capacity_units", "capacity_units"),
                            ("referrald_community_reserved_published_units", "reserved_published"),
                            ("referrald_community_referrals_waiting", "waiting_now"),
                            ("referrald_community_referrals_escalated", "escalated_waiting_now"),
                            ("referrald_community_follow_ups_overdue", "follow_ups_overdue_now")):
            self.assertEqual(gauge(fams, family, community=c), total[key], family)
            self.assertEqual(fams[family].type, "gauge")
        # Referrals by direction and the state they are in.
        states = {(s.labels["direction"], s.labels["state"]): s.value
                  for s in fams["referrald_community_referrals"].samples
                  if s.labels["community"] == c}
        self.assertEqual(states, {("up", "accepted"): 1, ("up", "rejected"): 1,
                                  ("up", "redirected"): 1, ("up", "pending"): 2,
                                  ("up", "no_show"): 1, ("down", "pending"): 2})
        # The parser names a counter's family without _total.
        self.assertEqual(gauge(fams, "referrald_figures_refresh_failures"), 0)

    def test_the_scenario_is_in_the_tables(self):
        """The scenario did what it says: the figures' inputs as the tables
        hold them (so a wrong figure is the figures' fault)."""
        c = self.community.community_id
        out = self.community.psql(f"""
SELECT (SELECT count(*) FROM bookings WHERE community_id = {harness.sql_literal(c)} AND status = 'booked'),
       (SELECT count(*) FROM bookings WHERE community_id = {harness.sql_literal(c)} AND status = 'cancelled'),
       (SELECT coalesce(sum(released_count), 0) FROM releases WHERE community_id = {harness.sql_literal(c)}),
       (SELECT count(*) FROM referrals WHERE community_id = {harness.sql_literal(c)} AND state = 'rejected')""")
        total = Scenario.total()
        live = total["reserved_booked"] + total["public_booked"] + total["emergency_bookings"]
        self.assertEqual(out.split("|"), [str(live), "1", str(total["released_units"]),
                                          str(total["up_rejected"])])


if __name__ == "__main__":
    unittest.main()
