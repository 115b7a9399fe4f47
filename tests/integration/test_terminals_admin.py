#!/usr/bin/python3
"""referralctl admin terminal add|list|revoke|rotate: tokens shown once and
stored only as slow salted hashes; a revoked or rotated terminal's live
connections are closed, on this daemon and on another one of the same
database (through NOTIFY), and by the periodic check when the change comes
from elsewhere (plain SQL, no notification)."""

import json
import subprocess
import time
import unittest

import harness
from harness import pb

E = pb.ErrorCode


class TerminalAdminTest(harness.DaemonTestCase):
    daemon_settings = {"credentials_check_ms": "300"}

    def ctl(self, *args, terminal="admin", daemon=None):
        t = self.community[terminal]
        env = harness.binary_env({
            "REFERRAL_HOST": "127.0.0.1", "REFERRAL_PORT": str((daemon or self.daemon).port),
            "REFERRAL_COMMUNITY": t.community_id, "REFERRAL_TERMINAL": t.terminal_id,
            "REFERRAL_TOKEN": t.token})
        return subprocess.run([harness.REFERRALCTL, *args], env=env, capture_output=True,
                              text=True, timeout=30 * harness.SLOW)

    def add(self, name, role="clinic", institution="village-a", practitioner=None):
        args = ["--json", "admin", "terminal", "add", name, "--institution", institution,
                "--role", role]
        if practitioner:
            args += ["--practitioner", practitioner]
        p = self.ctl(*args)
        self.assertEqual(p.returncode, 0, p.stderr)
        info = json.loads(p.stdout)
        return harness.Terminal(self.community.community_id, name, role, institution,
                                practitioner, info["token"]), info

    def stored_hash(self, name):
        return self.community.pg.psql(
            f"SELECT token_hash FROM terminals WHERE community_id = "
            f"{harness.sql_literal(self.community.community_id)} AND terminal_id = {harness.sql_literal(name)}")

    def test_add_shows_the_token_once_and_stores_only_its_hash(self):
        t, info = self.add("new-clinic-01", practitioner="fd-a")
        self.assertEqual((info["terminal_id"], info["role"], info["practitioner_id"]),
                         ("new-clinic-01", "ROLE_CLINIC", "fd-a"))
        self.assertGreaterEqual(len(t.token), 32)
        stored = self.stored_hash("new-clinic-01")
        self.assertTrue(stored.startswith("pbkdf2-sha256$"), stored)
        self.assertNotIn(t.token, stored)
        dump = self.community.pg.psql("SELECT t::text FROM terminals t")
        self.assertNotIn(t.token, dump)
        with self.daemon.client() as c:
            resp = c.hello(t)
            self.assertOk(resp, "hello")
            self.assertEqual(resp.hello.role, pb.ROLE_CLINIC)
        # Listing never shows a token.
        p = self.ctl("--json", "admin", "terminal", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        listed = {x["terminal_id"]: x for x in json.loads(p.stdout)["terminals"]}
        self.assertIn("new-clinic-01", listed)
        self.assertNotIn("revoked-01", listed, "revoked terminals only with --all")
        self.assertEqual(listed["new-clinic-01"].get("token", ""), "")
        p = self.ctl("--json", "admin", "terminal", "list", "--all")
        self.assertIn("revoked-01", p.stdout)

    def test_add_refusals(self):
        c = self.authed("admin")
        def add(**kw):
            return c.call(pb.Request(add_terminal=pb.AddTerminal(**kw)))
        self.assertError(add(terminal_id="desk-01", institution_id="county-hospital",
                             role=pb.ROLE_DESK), E.CONFLICT, field="terminal_id")
        self.assertError(add(terminal_id="x-1", institution_id="nowhere", role=pb.ROLE_DESK),
                         E.NOT_FOUND, field="institution_id")
        self.assertError(add(terminal_id="x-2", institution_id="village-a", role=pb.ROLE_NONE),
                         E.INVALID_ARGUMENT, field="role")
        self.assertError(add(terminal_id="Bad Id", institution_id="village-a", role=pb.ROLE_CLINIC),
                         E.INVALID_ARGUMENT, field="terminal_id")
        self.assertError(add(terminal_id="x-3", institution_id="village-a", role=pb.ROLE_CLINIC,
                             practitioner_id="desk-clerk"), E.NOT_FOUND, field="practitioner_id")
        resp = c.call(pb.Request(revoke_terminal=pb.RevokeTerminal(terminal_id="admin-01")))
        self.assertError(resp, E.FAILED_PRECONDITION, field="terminal_id")
        resp = c.call(pb.Request(revoke_terminal=pb.RevokeTerminal(terminal_id="ghost")))
        self.assertError(resp, E.NOT_FOUND, field="terminal_id")

    def test_revoke_closes_live_connections_here_and_on_another_daemon(self):
        t, _ = self.add("doomed-01")
        other = harness.Daemon(self.community.pg.dsn(), name="terminals-other",
                               settings={"credentials_check_ms": "3600000"})
        self.addCleanup(other.stop)
        other.start()
        here = self.open_client(self.daemon)
        there = self.open_client(other)
        self.assertOk(here.hello(t), "hello")
        self.assertOk(there.hello(t), "hello")
        p = self.ctl("admin", "terminal", "revoke", "doomed-01")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("revoked", p.stdout)
        here.wait_closed(timeout=5)
        # The other daemon checks only hourly: the notification closed it.
        there.wait_closed(timeout=5)
        with self.daemon.client() as c:
            self.assertError(c.hello(t), E.UNAUTHENTICATED, field="hello")
        # Revoking again is harmless, and a revoked terminal has no token to rotate.
        self.assertEqual(self.ctl("admin", "terminal", "revoke", "doomed-01").returncode, 0)
        p = self.ctl("admin", "terminal", "rotate", "doomed-01")
        self.assertEqual(p.returncode, 1)
        self.assertIn("FAILED_PRECONDITION", p.stderr)

    def test_rotate_replaces_the_token_and_closes_old_connections(self):
        t, _ = self.add("rotating-01", role="monitor", institution="county-hospital")
        old = self.open_client(self.daemon)
        self.assertOk(old.hello(t), "hello")
        p = self.ctl("--json", "admin", "terminal", "rotate", "rotating-01")
        self.assertEqual(p.returncode, 0, p.stderr)
        new_token = json.loads(p.stdout)["token"]
        self.assertNotEqual(new_token, t.token)
        old.wait_closed(timeout=5)
        with self.daemon.client() as c:
            self.assertError(c.hello(t), E.UNAUTHENTICATED)
        t.token = new_token
        with self.daemon.client() as c:
            self.assertOk(c.hello(t), "hello")
            time.sleep(0.5 * harness.SLOW)   # later checks leave it alone
            self.assertOk(c.ping(), "ping")

    def test_revocation_in_sql_closes_at_once(self):
        t, _ = self.add("by-hand-01")
        c = self.open_client(self.daemon)
        self.assertOk(c.hello(t), "hello")
        self.community.pg.psql(
            "UPDATE terminals SET revoked_at = now() "
            f"WHERE community_id = {harness.sql_literal(t.community_id)} AND terminal_id = 'by-hand-01'")
        c.wait_closed(timeout=5)

    def test_lost_notification_is_made_up_by_the_check(self):
        t, _ = self.add("quiet-01")
        c = self.open_client(self.daemon)
        self.assertOk(c.hello(t), "hello")
        # The change as the trigger records it, but with the notification
        # lost (triggers off for this session): the periodic check finds it.
        who = f"community_id = {harness.sql_literal(t.community_id)} AND terminal_id = 'quiet-01'"
        self.community.pg.psql(f"""
SET session_replication_role = replica;
UPDATE terminals SET revoked_at = now(), credentials_changed_at = clock_timestamp() WHERE {who};
INSERT INTO terminal_changes (community_id, terminal_id, changed_at)
SELECT community_id, terminal_id, credentials_changed_at FROM terminals WHERE {who};""")
        c.wait_closed(timeout=5)

    def test_another_communitys_terminal_is_out_of_reach(self):
        other = harness.Community(self.community.pg, "terminals-foreign")
        c = self.authed("admin")
        foreign_admin = harness.Client(self.daemon.port)
        self.addCleanup(foreign_admin.close)
        self.assertOk(foreign_admin.hello(other["admin"]), "hello")
        resp = foreign_admin.call(pb.Request(list_terminals=pb.ListTerminals(include_revoked=True)))
        self.assertOk(resp, "terminals")
        self.assertTrue(resp.terminals.terminals)
        live = self.authed("clinic")
        resp = foreign_admin.call(pb.Request(revoke_terminal=pb.RevokeTerminal(terminal_id="quiet-x")))
        self.assertError(resp, E.NOT_FOUND, field="terminal_id")
        # Revoking "their" clinic-01 leaves ours connected.
        resp = foreign_admin.call(pb.Request(revoke_terminal=pb.RevokeTerminal(terminal_id="clinic-01")))
        self.assertOk(resp, "terminal")
        time.sleep(0.5 * harness.SLOW)
        self.assertOk(live.ping(), "ping")
        self.assertOk(c.ping(), "ping")


if __name__ == "__main__":
    unittest.main()
