#!/usr/bin/python3
"""Resident ID numbers: a terminal resolves one to the patient id the other
requests use (registering the patient on request); the number is checked,
never echoed, stored only as a keyed hash and a masked form, and scoped to
the community. After a scenario that uses numbers, names and tokens, none of
them is in the database or in the daemon's log. The key file must be the
service's alone."""

import os
import subprocess
import unittest

import harness
from harness import pb
import referrals_support as rs

E = pb.ErrorCode
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def resident_id(serial, birth="19800101", region="410102"):
    """A well-formed resident ID number with the right check character."""
    base = f"{region}{birth}{serial:03d}"
    return base + "10X98765432"[sum(int(d) * w for d, w in zip(base, WEIGHTS)) % 11]


def resolve(c, number, register=False, name=""):
    return c.call(pb.Request(resolve_patient=pb.ResolvePatient(
        resident_id=number, register=register, name=name)))


class PatientIdentityTest(rs.ReferralsTestCase):

    def test_register_then_resolve(self):
        number = resident_id(101)
        c = self.authed("clinic")
        self.assertError(resolve(c, number), E.NOT_FOUND, field="resident_id")
        resp = resolve(c, number, register=True, name="张三丰")
        self.assertOk(resp, "patient")
        p = resp.patient
        self.assertTrue(p.created)
        self.assertEqual(p.id_masked, number[:4] + "*" * 10 + number[-4:])
        self.assertEqual(p.display_name, "张**")
        self.assertRegex(p.patient_id, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-")
        # The same person, from another terminal of the community: same id.
        for name in ("desk", "billing", "admin"):
            again = resolve(self.authed(name), number.lower())
            self.assertOk(again, "patient")
            self.assertEqual((again.patient.patient_id, again.patient.created), (p.patient_id, False))
        # Registering twice finds the first registration.
        twice = resolve(c, number, register=True, name="张三丰")
        self.assertEqual((twice.patient.patient_id, twice.patient.created), (p.patient_id, False))
        row = self.community.psql(
            f"SELECT family_doctor_id || ' ' || id_masked FROM patients WHERE patient_id = '{p.patient_id}'")
        self.assertEqual(row, f"fd-a {p.id_masked}")

    def test_refusals(self):
        c = self.authed("clinic")
        good = resident_id(102)
        bad_check = good[:-1] + ("0" if good[-1] != "0" else "1")
        for number, why in ((good[:17], "18 characters"), (bad_check, "check character"),
                            (resident_id(103, birth="19810229"), "not a date")):
            resp = resolve(c, number, register=True, name="李四")
            self.assertError(resp, E.INVALID_ARGUMENT, field="resident_id")
            self.assertIn(why, resp.error.message)
            self.assertNotIn(number[:10], resp.error.message, "the number is never echoed")
        self.assertError(resolve(c, good, register=True), E.INVALID_ARGUMENT, field="name")
        self.assertError(resolve(self.authed("billing"), good, register=True, name="李四"),
                         E.PERMISSION_DENIED, field="register")
        self.assertError(resolve(self.authed("monitor"), good), E.PERMISSION_DENIED)

    def test_another_community_cannot_resolve(self):
        number = resident_id(104)
        self.assertOk(resolve(self.authed("clinic"), number, register=True, name="王五"), "patient")
        other = rs.ReferralCommunity(self.pg, "patients-other")
        self.addCleanup(other.close)
        c = rs.ReferralClient(self.daemon.port)
        self.addCleanup(c.close)
        self.assertOk(c.hello(other["admin"]), "hello")
        self.assertError(resolve(c, number), E.NOT_FOUND, field="resident_id")

    def test_numbers_names_and_tokens_are_nowhere(self):
        numbers = [resident_id(200 + i, birth=f"19{60 + i}0315") for i in range(3)]
        names = ["赵钱孙", "周吴郑", "冯陈褚"]
        clinic, desk = self.authed("clinic"), self.authed("desk")
        session = self.publish_one()
        for number, name in zip(numbers, names):
            p = resolve(clinic, number, register=True, name=name).patient
            self.assertBooked(clinic.book(session.session_id, p.patient_id))
            ref = self.assertReferral(clinic.refer_up(p.patient_id), "pending")
            self.assertEqual(ref.patient_display, name[0] + "**")
            self.assertOk(desk.get(ref.referral_id), "referral")
            # Wrong inputs too: the refusals must not log them either.
            resolve(clinic, number[:-1] + "Z")
        dump = subprocess.run(
            [os.path.join(self.pg.bin_dir, "pg_dump"), "--data-only", "-h", self.pg.env["PGHOST"],
             "-p", self.pg.env["PGPORT"], "-U", "postgres", "referral"],
            capture_output=True, text=True, check=True).stdout
        log = self.daemon.log()
        tokens = [t.token for t in self.community.terminals.values()]
        for where, text in (("database", dump), ("log", log)):
            for secret in numbers + [n[:-1] + "Z" for n in numbers] + names:
                self.assertNotIn(secret, text, f"{secret!r} found in the {where}")
            for token in tokens:
                self.assertNotIn(token, text, f"a terminal token found in the {where}")
        self.assertIn("resolve_patient", log, "the log covers the scenario at all")


class KeyFileTest(harness.IntegrationCase):

    def test_key_file_must_be_private(self):
        pg = harness.Postgres.shared()
        d = harness.Daemon(pg.dsn(), name="patient-key")
        self.addCleanup(d.kill)
        key = os.path.join(d.dir, "open.key")
        with open(key, "w") as f:
            f.write("x" * 40 + "\n")
        os.chmod(key, 0o644)
        d.settings["patient_id_key_file"] = key
        d.spawn()
        self.assertEqual(d.wait_exit(20), 1, d.log_tail())
        self.assertIn("is readable by others (mode 644)", d.log())


if __name__ == "__main__":
    unittest.main()
