#!/usr/bin/python3
"""referralctl ping and status against a real daemon: human and JSON output,
and every documented exit code (0 ok, 1 server error, 2 usage,
3 unreachable, 4 refused credentials)."""

import json
import os
import re
import subprocess
import unittest

import harness

OK, SERVER_ERROR, USAGE, UNREACHABLE, REFUSED = 0, 1, 2, 3, 4


class ReferralctlTest(harness.DaemonTestCase):

    def ctl(self, *args, terminal="monitor", token=None, port=None, env=None):
        """Runs referralctl with the terminal's credentials in the environment
        (as an operator would, keeping the token off the command line)."""
        t = self.community[terminal]
        e = {k: v for k, v in os.environ.items() if not k.startswith("REFERRAL_")}
        e.update(REFERRAL_HOST="127.0.0.1", REFERRAL_PORT=str(port or self.daemon.port),
                 REFERRAL_COMMUNITY=t.community_id, REFERRAL_TERMINAL=t.terminal_id,
                 REFERRAL_TOKEN=token if token is not None else t.token)
        e.update(env or {})
        return subprocess.run([harness.REFERRALCTL, *args], env=harness.binary_env(e),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=30)

    def assertExit(self, p, code):
        self.assertEqual(p.returncode, code, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")

    def test_ping_human(self):
        p = self.ctl("ping", terminal="clinic")
        self.assertExit(p, OK)
        t = self.community["clinic"]
        self.assertRegex(p.stdout, rf"^pong from 127\.0\.0\.1:{self.daemon.port} "
                                   rf"\(referrald \d+\.\d+\.\d+\) as "
                                   rf"{re.escape(t.community_id)}/{t.terminal_id}, role clinic$")

    def test_ping_json(self):
        p = self.ctl("--json", "ping", terminal="desk")
        self.assertExit(p, OK)
        out = json.loads(p.stdout)
        self.assertEqual(out["ok"], True)
        self.assertEqual(out["server"], f"127.0.0.1:{self.daemon.port}")
        self.assertEqual(out["terminal"], self.community["desk"].terminal_id)
        self.assertEqual(out["role"], "desk")

    def test_status_human(self):
        self.wait_db_up()
        p = self.ctl("status")
        self.assertExit(p, OK)
        fields = dict(re.findall(r"^(\w+): (.*)$", p.stdout, re.M))
        self.assertEqual(fields["database_state"], "up")
        self.assertEqual(fields["protocol_version"], "1")
        self.assertEqual(fields["db_connections_up"], "2")
        self.assertRegex(fields["server_version"], r"^\d+\.\d+\.\d+$")
        self.assertGreaterEqual(int(fields["connections"]), 1)

    def test_status_json(self):
        self.wait_db_up()
        p = self.ctl("--json", "status", terminal="admin")
        self.assertExit(p, OK)
        st = json.loads(p.stdout)
        self.assertEqual(st["database_state"], "up")
        self.assertEqual(st["protocol_version"], 1)
        self.assertEqual(st["db_connections_total"], 2)
        self.assertEqual(st["db_connections_up"], 2)
        self.assertIsInstance(st["uptime_seconds"], int)
        self.assertIsInstance(st["requests_total"], int)
        self.assertGreaterEqual(st["connections"], 1)
        self.assertEqual(st["requests_in_flight"], 1)
        schema = int(self.pg.psql("SELECT max(version) FROM schema_migrations"))
        self.assertEqual(st["schema_version"], schema)

    def test_server_error_exit_1(self):
        p = self.ctl("status", terminal="clinic")
        self.assertExit(p, SERVER_ERROR)
        self.assertIn("PERMISSION_DENIED", p.stderr)
        self.assertEqual(p.stdout, "")
        j = self.ctl("--json", "status", terminal="billing")
        self.assertExit(j, SERVER_ERROR)
        err = json.loads(j.stdout)["error"]
        self.assertEqual(err["code"], "PERMISSION_DENIED")
        self.assertNotEqual(err["message"], "")

    def test_usage_exit_2(self):
        self.assertExit(self.ctl(), USAGE)
        self.assertExit(self.ctl("no-such-command"), USAGE)
        self.assertExit(self.ctl("--no-such-option", "ping"), USAGE)
        p = self.ctl("ping", env={"REFERRAL_TOKEN": ""})
        self.assertExit(p, USAGE)
        self.assertIn("credentials missing", p.stderr)

    def test_unreachable_exit_3(self):
        p = self.ctl("ping", port=harness.free_port())
        self.assertExit(p, UNREACHABLE)
        self.assertIn("connect", p.stderr)
        self.assertExit(self.ctl("--json", "status", port=harness.free_port()), UNREACHABLE)

    def test_refused_credentials_exit_4(self):
        p = self.ctl("ping", token="wrong-token")
        self.assertExit(p, REFUSED)
        self.assertIn("UNAUTHENTICATED", p.stderr)
        self.assertExit(self.ctl("status", terminal="revoked"), REFUSED)
        j = self.ctl("--json", "status", token="wrong-token")
        self.assertExit(j, REFUSED)
        self.assertEqual(json.loads(j.stdout)["error"]["code"], "UNAUTHENTICATED")

    def test_options_override_environment(self):
        t = self.community["admin"]
        p = self.ctl("-p", str(self.daemon.port), "-C", t.community_id, "-t", t.terminal_id,
                     "-k", t.token, "--json", "ping",
                     env={"REFERRAL_PORT": str(harness.free_port()), "REFERRAL_TOKEN": "bad"})
        self.assertExit(p, OK)
        self.assertEqual(json.loads(p.stdout)["role"], "admin")


if __name__ == "__main__":
    unittest.main()
