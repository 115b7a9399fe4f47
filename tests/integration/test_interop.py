#!/usr/bin/python3
"""Interoperability: interop_client.py, a client written only with the
official Python protobuf runtime and protoc's generated code (no harness, no
C), does the handshake and reads the status from the C daemon."""

import json
import os
import subprocess
import sys
import unittest

import harness

CLIENT = os.path.join(harness.HERE, "interop_client.py")


class InteropTest(harness.DaemonTestCase):

    def run_client(self, *args, token_env=None):
        env = {k: v for k, v in os.environ.items() if k != "REFERRAL_TOKEN"}
        # Only the generated code is on the path: not the harness.
        env["PYTHONPATH"] = harness.PY_DIR
        if token_env is not None:
            env["REFERRAL_TOKEN"] = token_env
        return subprocess.run([sys.executable, "-B", CLIENT, *map(str, args)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=30, cwd="/")

    def args(self, name):
        t = self.community[name]
        return ("127.0.0.1", self.daemon.port, t.community_id, t.terminal_id)

    def test_handshake_and_status(self):
        self.wait_db_up()
        t = self.community["monitor"]
        p = self.run_client(*self.args("monitor"), t.token)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        ident, st = out["identity"], out["status"]
        self.assertEqual(ident["protocol_version"], 1)
        self.assertEqual(ident["community_id"], t.community_id)
        self.assertEqual(ident["terminal_id"], t.terminal_id)
        self.assertEqual(ident["institution_id"], "county-hospital")
        self.assertEqual(ident["role"], "ROLE_MONITOR")
        self.assertEqual(ident["practitioner_id"], "")
        self.assertEqual(st["server_version"], ident["server_version"])
        self.assertEqual(st["protocol_version"], 1)
        self.assertEqual(st["database_state"], "up")
        self.assertEqual(st["db_connections_up"], st["db_connections_total"])
        self.assertEqual(st["requests_in_flight"], 1)
        self.assertGreaterEqual(st["connections"], 1)
        self.assertGreaterEqual(st["requests_total"], 1)   # its own Hello at least

    def test_token_from_environment(self):
        p = self.run_client(*self.args("admin"), token_env=self.community["admin"].token)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["identity"]["role"], "ROLE_ADMIN")

    def test_refusals(self):
        p = self.run_client(*self.args("monitor"), "wrong-token")
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn("UNAUTHENTICATED", p.stderr)
        p = self.run_client(*self.args("clinic"), self.community["clinic"].token)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("PERMISSION_DENIED", p.stderr)

    def test_unreachable_and_usage(self):
        p = self.run_client("127.0.0.1", harness.free_port(), "c", "t", "x")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertEqual(self.run_client("127.0.0.1").returncode, 2)


if __name__ == "__main__":
    unittest.main()
