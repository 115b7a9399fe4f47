#!/usr/bin/python3
"""Ping and status: answers, figures, and who may ask."""

import unittest

import harness
from harness import pb

E = pb.ErrorCode


class HealthTest(harness.DaemonTestCase):
    daemon_settings = {"db_pool_size": "3"}

    def test_ping_echoes_payload_for_every_role(self):
        payloads = [b"", b"hello", bytes(range(256)), b"\x00" * 1000]
        for name in ("clinic", "desk", "billing", "monitor", "admin"):
            with self.subTest(terminal=name):
                c = self.authed(name)
                for p in payloads:
                    resp = c.ping(p)
                    self.assertOk(resp, "ping")
                    self.assertEqual(resp.ping.payload, p)

    def test_status_fields(self):
        c = self.authed("monitor")
        st = self.wait_db_up(c)
        hello_version = self.connect().hello(self.community["admin"]).hello.server_version
        schema = int(self.pg.psql("SELECT max(version) FROM schema_migrations"))
        self.assertEqual(st.server_version, hello_version)
        self.assertEqual(st.protocol_version, 1)
        self.assertLess(st.uptime_seconds, 600)
        self.assertEqual(st.database_state, "up")
        self.assertEqual(st.db_connections_total, 3)
        self.assertEqual(st.db_connections_up, 3)
        self.assertEqual(st.db_queue_length, 0)
        self.assertEqual(st.database_error, "")
        self.assertEqual(st.schema_version, schema)
        # The status request itself is the one in flight.
        self.assertEqual(st.requests_in_flight, 1)

    def test_status_counts_connections_and_requests(self):
        # Only this test's connections exist on this daemon while it runs
        # (unittest runs the tests of a module one after another).
        mon = self.authed("monitor")
        self.wait_db_up(mon)
        # Connections of earlier tests are closed; wait until they are reaped.
        harness.wait_for(lambda: mon.status().status.connections == 1, 5,
                         what="connections of earlier tests to be reaped")
        base = mon.status().status
        others = [self.connect() for _ in range(3)]   # not even authenticated
        self.authed("clinic")
        st = mon.status().status
        self.assertEqual(st.connections, base.connections + 4)
        # base was answered after it was read: +1, then 1 Hello, then this one
        # is read before it counts itself.
        self.assertEqual(st.requests_total, base.requests_total + 2)
        for _ in range(5):
            self.assertOk(mon.ping(), "ping")
        after = mon.status().status
        self.assertEqual(after.requests_total, st.requests_total + 6)
        for o in others:
            o.close()
        harness.wait_for(lambda: mon.status().status.connections == base.connections + 1, 5,
                         what="closed connections to be counted out")
        self.assertGreaterEqual(after.uptime_seconds, base.uptime_seconds)

    def test_status_denied_to_other_roles(self):
        for name in ("clinic", "desk", "billing"):
            with self.subTest(terminal=name):
                c = self.authed(name)
                resp = c.status()
                self.assertError(resp, E.PERMISSION_DENIED, request_id=resp.request_id)
                self.assertIn("status", resp.error.message)
                # Denied, not disconnected.
                self.assertOk(c.ping(), "ping")

    def test_status_allowed_to_monitor_and_admin(self):
        for name in ("monitor", "admin"):
            with self.subTest(terminal=name):
                self.assertOk(self.authed(name).status(), "status")

    def test_unauthenticated_before_hello(self):
        c = self.connect()
        for req in (harness.status_request(), harness.ping_request(b"p")):
            resp = c.call(req)
            self.assertError(resp, E.UNAUTHENTICATED, request_id=req.request_id)
        self.assertOk(c.hello(self.community["monitor"]), "hello")
        self.assertOk(c.status(), "status")

    def test_request_without_body(self):
        c = self.authed("admin")
        resp = c.call(pb.Request(request_id=77))
        self.assertError(resp, E.INVALID_ARGUMENT, field="body", request_id=77)
        self.assertOk(c.ping(), "ping")

    def test_request_id_zero_and_max_are_echoed(self):
        c = self.authed("admin")
        big = 2**64 - 1
        c.send_frame(harness.ping_request(request_id=big).SerializeToString())
        self.assertEqual(c.recv().request_id, big)
        # id 0 is the client's choice too; it is echoed like any other.
        c.send_frame(pb.Request(ping=pb.Ping(payload=b"z")).SerializeToString())
        resp = c.recv()
        self.assertOk(resp, "ping")
        self.assertEqual(resp.request_id, 0)


if __name__ == "__main__":
    unittest.main()
