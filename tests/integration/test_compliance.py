#!/usr/bin/python3
"""referralctl compliance / the Compliance request: sessions and hospitals
measured against the reserve floor, reserved units released unused, and
releases overdue, each finding with the rule it is measured against.

A database of its own with the release timer (nearly) stopped: this test
makes a release overdue and must be the only one to decide when releases
happen."""

import json
import time
import unittest

import harness
from harness import pb
import slots_support as ss
from slots_support import future

E = pb.ErrorCode


def compliance_request(**fields):
    now = int(time.time())
    fields.setdefault("since", now - 86400)
    fields.setdefault("until", now + 10 * 86400)
    return pb.Request(compliance=pb.ComplianceRequest(**fields))


class ComplianceTest(ss.SlotsTestCase):
    private_database = True
    # The timer runs once at start, then not for an hour.
    daemon_settings = {"release_interval_ms": "3600000", "figures_metrics_interval_ms": "0"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        c = cls.community
        desk, desk_tcm, clinic = (ss.SlotClient(cls.daemon.port) for _ in range(3))
        for client, name in ((desk, "desk"), (desk_tcm, "desk-tcm"), (clinic, "clinic")):
            assert client.hello(c[name]).WhichOneof("body") == "hello"

        def publish(client, **kw):
            resp = client.publish(**kw)
            assert resp.WhichOneof("body") == "publish", resp
            return resp.publish.sessions[0].session_id

        # Published under the Henan floor (40%): SX at it, SY and SZ at 50%.
        cls.sx = publish(desk, capacity=10, start=future(days=3, hour=1))
        cls.sy = publish(desk, capacity=10, reserved_pct=50, start=future(days=4, hour=1))
        cls.sz = publish(desk, capacity=12, reserved_slots=6, start=future(days=5, hour=1))
        cls.st = publish(desk_tcm, department="acupuncture", resource="dr-zhao", capacity=10,
                         reserved_slots=5, start=future(days=3, hour=1))
        resp = clinic.book(cls.sx, c.patient())
        assert resp.WhichOneof("body") == "booking", resp
        for client in (desk, desk_tcm, clinic):
            client.close()
        # The county raises its floor to 50%: SX falls short of it.
        c.psql(f"UPDATE communities SET reserve_floor_pct = 50 "
               f"WHERE community_id = {harness.sql_literal(c.community_id)}")
        # SX is released with 3 of its 4 reserved units unbooked (what the
        # timer would do); ST's release time passes without a release.
        c.set_release_at([cls.sx], "now() - interval '1 minute'")
        c.psql("SELECT count(*) FROM release_due(500)")
        c.set_release_at([cls.st], "now() - interval '20 minutes'")

    def compliance(self, terminal="monitor", **fields):
        return self.authed(terminal).call(compliance_request(**fields))

    def test_findings_with_their_rules(self):
        resp = self.compliance()
        self.assertOk(resp, "compliance")
        r = resp.compliance
        rules = {x.rule: x for x in r.rules}
        self.assertEqual(sorted(rules), ["release_overdue", "reserve_floor", "reserved_unused"])
        self.assertIn("at least 50%", rules["reserve_floor"].description)
        self.assertIn("40%", rules["reserve_floor"].source)   # Henan's clause
        self.assertIn("15 minutes after", rules["release_overdue"].description)

        hospitals = [(h.institution_id, h.sessions, h.published_units, h.reserved_published,
                      h.floor_pct, h.sessions_below_floor, h.released_pool, h.unused_units,
                      h.sessions_release_overdue, h.stranded_units, list(h.rules))
                     for h in r.hospitals]
        self.assertEqual(hospitals, [
            # SX 4 + SY 5 + SZ 6 reserved of 32; SX released 3 of its 4.
            ("county-hospital", 3, 32, 15, 50, 1, 4, 3, 0, 0, ["reserve_floor", "reserved_unused"]),
            ("tcm-hospital", 1, 10, 5, 50, 0, 0, 0, 1, 5, ["release_overdue"]),
        ])
        self.assertAlmostEqual(r.hospitals[0].reserved_share, 15 / 32)
        self.assertAlmostEqual(r.hospitals[0].unused_share, 3 / 4)

        sessions = [(x.rule, x.session_id, x.institution_id, x.capacity_published,
                     x.reserved_published, x.reserved_required, x.reserved_booked, x.unused_units)
                    for x in r.sessions]
        self.assertEqual(sessions, [
            ("reserve_floor", self.sx, "county-hospital", 10, 4, 5, 1, 0),
            ("release_overdue", self.st, "tcm-hospital", 10, 5, 5, 0, 5),
            ("reserved_unused", self.sx, "county-hospital", 10, 4, 5, 1, 3),
        ])
        self.assertEqual(r.sessions_found, 3)

    def test_limit_and_scope(self):
        resp = self.compliance(limit=2)
        self.assertOk(resp, "compliance")
        self.assertEqual([x.rule for x in resp.compliance.sessions],
                         ["reserve_floor", "release_overdue"])
        self.assertEqual(resp.compliance.sessions_found, 3)
        # A desk sees its own hospital.
        resp = self.compliance("desk-tcm")
        self.assertOk(resp, "compliance")
        self.assertEqual([h.institution_id for h in resp.compliance.hospitals], ["tcm-hospital"])
        self.assertEqual([x.session_id for x in resp.compliance.sessions], [self.st])
        self.assertError(self.compliance("desk", institution_id="tcm-hospital"),
                         E.PERMISSION_DENIED, field="institution_id")
        self.assertError(self.compliance("clinic"), E.PERMISSION_DENIED)
        # A window without the sessions: the rules, and nothing measured.
        now = int(time.time())
        resp = self.compliance(since=now - 20 * 86400, until=now - 10 * 86400)
        self.assertOk(resp, "compliance")
        self.assertEqual((len(resp.compliance.rules), len(resp.compliance.hospitals),
                          resp.compliance.sessions_found), (3, 0, 0))

    def test_referralctl_compliance(self):
        p = ss.referralctl(self.daemon, self.community["monitor"], "compliance", "--limit", "5")
        self.assertEqual(p.returncode, 0, p.stderr)
        got = json.loads(p.stdout)
        self.assertEqual([(h["institution_id"], h["rules"]) for h in got["hospitals"]],
                         [("county-hospital", ["reserve_floor", "reserved_unused"]),
                          ("tcm-hospital", ["release_overdue"])])
        self.assertEqual(got["sessions_found"], 3)
        p = ss.referralctl(self.daemon, self.community["monitor"], "compliance", json_out=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        county = next(line for line in p.stdout.splitlines() if line.startswith("county-hospital"))
        self.assertEqual(county.split()[1:], ["3", "46.9%", "50%", "1", "3", "(75.0%)", "0",
                                              "reserve_floor,", "reserved_unused"], p.stdout)
        self.assertIn("sessions, the most serious first (3 of 3)", p.stdout)


if __name__ == "__main__":
    unittest.main()
