#!/usr/bin/python3
"""The authorisation rules: docs/security.md's table is the routes[] table
of daemon/dispatch.c; without a Hello only Hello works; every role is
refused every request type it may not make (generated from the table, not
hand-picked); and a terminal of one community cannot read or change another
community's sessions, bookings, referrals or patients, even with their ids."""

import os
import re
import unittest

import harness
from harness import pb
import referrals_support as rs

E = pb.ErrorCode
ROLES = ("clinic", "desk", "billing", "monitor", "admin")


def code_routes():
    """{request name: set of roles, or None for before-authentication}"""
    with open(os.path.join(harness.SOURCE_DIR, "daemon", "dispatch.c")) as f:
        text = f.read()
    routes = {}
    for name, roles in re.findall(r'^\s*R\(\w+, "(\w+)", \w+, ([^)]*)\),', text, re.M):
        roles = roles.strip()
        if roles == "ROLES_HANDSHAKE":
            routes[name] = None
        elif roles == "ROLES_ANY":
            routes[name] = set(ROLES)
        else:
            routes[name] = {r.strip().lower() for r in roles.split("|")}
    return routes


def doc_routes():
    with open(os.path.join(harness.SOURCE_DIR, "docs", "security.md")) as f:
        lines = f.read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("| request | clinic |"))
    routes = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = cells[0].strip("`")
        marks = cells[1:6]
        if all(m == "—" for m in marks):
            routes[name] = None
        else:
            self_check = set(marks) - {"✓", ""}
            assert not self_check, f"{name}: unexpected marks {self_check}"
            routes[name] = {r for r, m in zip(ROLES, marks) if m == "✓"}
    return routes


def empty_request(name):
    """A Request whose body is the named type, with nothing in it."""
    req = pb.Request()
    getattr(req, name).SetInParent()
    return req


class TableTest(unittest.TestCase):
    maxDiff = None

    def test_doc_matches_code(self):
        self.assertEqual(doc_routes(), code_routes())

    def test_every_request_type_has_a_rule(self):
        body = pb.Request.DESCRIPTOR.oneofs_by_name["body"]
        self.assertEqual(sorted(f.name for f in body.fields), sorted(code_routes()))


class RolesTest(harness.DaemonTestCase):

    def test_nothing_but_hello_before_authentication(self):
        c = self.connect()
        for name in sorted(code_routes()):
            if name == "hello":
                continue
            with self.subTest(request=name):
                self.assertError(c.call(empty_request(name)), E.UNAUTHENTICATED)

    def test_each_role_is_refused_what_it_may_not_make(self):
        routes = code_routes()
        refused = 0
        for role in ROLES:
            c = self.authed(role)
            for name, allowed in sorted(routes.items()):
                if allowed is None or role in allowed:
                    continue
                with self.subTest(role=role, request=name):
                    self.assertError(c.call(empty_request(name)), E.PERMISSION_DENIED)
                    refused += 1
            self.assertOk(c.ping(), "ping")
        self.assertGreater(refused, 30)


class OtherCommunityTest(rs.ReferralsTestCase):
    """Community A holds a session, a booking, a patient and a referral;
    the terminals of community B (every role) try each by id."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.other = rs.ReferralCommunity(cls.pg, "authorization-b")
        cls.addClassCleanup(cls.other.close)

    def other_client(self, name):
        c = rs.ReferralClient(self.daemon.port)
        self.addCleanup(c.close)
        self.assertOk(c.hello(self.other[name]), "hello")
        return c

    def test_ids_of_another_community_are_not_found(self):
        session = self.publish_one()
        patient = self.community.patient()
        booking = self.assertBooked(self.authed("clinic").book(session.session_id, patient))
        ref = self.refer_up(patient=self.community.patient())
        before = (self.community.session_row(session.session_id), self.community.referral_row(ref.referral_id),
                  self.community.booking_status(booking.booking_id))
        foreign_patient = self.other.patient()
        sid, rid, bid = session.session_id, ref.referral_id, booking.booking_id
        attempts = {
            "change_capacity": lambda c: c.change_capacity(sid, 20),
            "cancel_session": lambda c: c.cancel_session(sid),
            "book": lambda c: c.book(sid, foreign_patient),
            "book_their_patient": lambda c: c.book(sid, patient),
            "emergency_book": lambda c: c.emergency(sid, foreign_patient),
            "cancel_booking": lambda c: c.cancel(bid),
            "get_referral": lambda c: c.get(rid),
            "history": lambda c: c.history(rid),
            "referral_action": lambda c: c.act(rid, pb.ACTION_CANCEL, reason="x"),
            "refer_up": lambda c: c.refer_up(patient),
            "refer_down": lambda c: c.refer_down(patient),
        }
        for role in ROLES:
            c = self.other_client(role)
            for what, attempt in attempts.items():
                resp = attempt(c)
                with self.subTest(role=role, attempt=what):
                    self.assertTrue(resp.HasField("error"), f"{what} by {role} succeeded: {resp}")
                    self.assertIn(resp.error.code, (E.NOT_FOUND, E.PERMISSION_DENIED), resp)
                    if resp.error.code == E.PERMISSION_DENIED:
                        # Only the role rule may refuse; never a hint that it exists.
                        self.assertEqual(resp.error.field, "", resp)
            # Lists show nothing of A.
            for what, resp, items in (
                    ("list_bookings", c.list_bookings(session_id=sid), "bookings"),
                    ("worklist", c.worklist(patient_id=patient, state="all"), "referrals"),
                    ("search", c.search(page_size=500), "sessions")):
                with self.subTest(role=role, attempt=what):
                    if resp.HasField("error"):
                        self.assertEqual(resp.error.code, E.PERMISSION_DENIED, resp)
                        continue
                    listed = getattr(getattr(resp, items), items)
                    self.assertNotIn(sid, [getattr(x, "session_id", None) for x in listed])
                    self.assertNotIn(rid, [getattr(x, "referral_id", None) for x in listed])
                    self.assertNotIn(bid, [getattr(x, "booking_id", None) for x in listed])
        after = (self.community.session_row(session.session_id), self.community.referral_row(ref.referral_id),
                 self.community.booking_status(booking.booking_id))
        self.assertEqual(before, after, "another community's attempts changed something")

    def test_ids_on_the_wire_are_random(self):
        """Patients, referrals and bookings are named by random UUIDs."""
        rows = self.pg.psql("""SELECT table_name || '.' || column_name || ' ' || data_type || ' ' ||
                                      coalesce(column_default, '')
                                 FROM information_schema.columns
                                WHERE (table_name, column_name) IN (('patients', 'patient_id'),
                                      ('referrals', 'referral_id'), ('bookings', 'booking_id'))
                                ORDER BY 1""").splitlines()
        self.assertEqual(len(rows), 3, rows)
        for row in rows:
            self.assertRegex(row, r" uuid gen_random_uuid\(\)$")
        a, b = self.community.patient(), self.community.patient()
        self.assertNotEqual(a[:8], b[:8], "consecutive patients share a prefix")


if __name__ == "__main__":
    unittest.main()
