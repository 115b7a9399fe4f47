#!/usr/bin/python3
"""Hello: credentials, protocol version, required fields, and what the
connection does after each outcome."""

import unittest

import harness
from harness import pb

E = pb.ErrorCode


class HandshakeTest(harness.DaemonTestCase):
    daemon_settings = {"max_frame_bytes": "65536"}

    def test_ok_reply_describes_the_terminal(self):
        c = self.connect()
        t = self.community["clinic"]
        resp = c.hello(t)
        self.assertOk(resp, "hello")
        h = resp.hello
        self.assertEqual(h.protocol_version, 1)
        self.assertRegex(h.server_version, r"^\d+\.\d+\.\d+")
        self.assertEqual(h.community_id, t.community_id)
        self.assertEqual(h.terminal_id, t.terminal_id)
        self.assertEqual(h.institution_id, "village-a")
        self.assertEqual(h.role, pb.ROLE_CLINIC)
        self.assertEqual(h.practitioner_id, "fd-a")
        self.assertEqual(h.max_frame_bytes, 65536)
        # And the connection is now usable.
        self.assertOk(c.ping(b"x"), "ping")

    def test_every_role_is_reported(self):
        for name in ("clinic", "desk", "billing", "monitor", "admin"):
            with self.subTest(terminal=name):
                t = self.community[name]
                with self.daemon.client() as c:
                    resp = c.hello(t)
                    self.assertOk(resp, "hello")
                    self.assertEqual(resp.hello.role, t.role_enum)
                    self.assertEqual(resp.hello.institution_id, t.institution_id)
                    self.assertEqual(resp.hello.practitioner_id, t.practitioner_id or "")

    def assertRefusedAndClosed(self, resp, c, code, field):
        self.assertError(resp, code, field=field, request_id=1)
        c.wait_closed()

    def test_wrong_token(self):
        c = self.connect()
        resp = c.hello(self.community["monitor"], token="not-the-token")
        self.assertRefusedAndClosed(resp, c, E.UNAUTHENTICATED, "hello")

    def test_frames_behind_a_refused_hello_are_not_processed(self):
        """One try per connection: requests pipelined behind a refused Hello
        get no answer (not even UNAUTHENTICATED); the connection closes."""
        c = self.connect()
        hid = c.send(harness.hello_request(self.community["monitor"], token="wrong"))
        c.send(harness.hello_request(self.community["monitor"]))
        c.send(harness.ping_request(b"behind"))
        self.assertError(c.recv(), E.UNAUTHENTICATED, field="hello", request_id=hid)
        c.wait_closed()

    def test_token_of_another_terminal(self):
        c = self.connect()
        resp = c.hello(self.community["admin"], token=self.community["clinic"].token)
        self.assertRefusedAndClosed(resp, c, E.UNAUTHENTICATED, "hello")

    def test_unknown_terminal(self):
        c = self.connect()
        resp = c.hello(self.community["monitor"], terminal_id="no-such-terminal")
        self.assertRefusedAndClosed(resp, c, E.UNAUTHENTICATED, "hello")

    def test_unknown_community(self):
        c = self.connect()
        resp = c.hello(self.community["monitor"], community_id="no-such-community")
        self.assertRefusedAndClosed(resp, c, E.UNAUTHENTICATED, "hello")

    def test_revoked_terminal(self):
        c = self.connect()
        resp = c.hello(self.community["revoked"])
        self.assertRefusedAndClosed(resp, c, E.UNAUTHENTICATED, "hello")

    def test_refusals_look_alike(self):
        """Unknown, revoked and wrong token give the same answer: nothing to
        tell a guesser which terminals exist."""
        answers = set()
        for kw in ({"token": "wrong"}, {"terminal_id": "ghost"}, {}):
            t = self.community["revoked"] if not kw else self.community["desk"]
            with self.daemon.client() as c:
                e = c.hello(t, **kw).error
                answers.add((e.code, e.message, e.field))
        self.assertEqual(len(answers), 1, answers)

    def test_version_mismatch(self):
        for version in (0, 2, 1000):
            with self.subTest(version=version):
                with self.daemon.client() as c:
                    resp = c.hello(self.community["monitor"], protocol_version=version)
                    self.assertRefusedAndClosed(resp, c, E.VERSION_MISMATCH,
                                                "hello.protocol_version")

    def test_missing_fields_keep_the_connection(self):
        """A Hello missing a field is a client bug, not a guess: the answer
        names the field and the connection may try again."""
        t = self.community["monitor"]
        c = self.connect()
        for field in ("community_id", "terminal_id", "token"):
            with self.subTest(field=field):
                resp = c.call(harness.hello_request(t, **{field: ""}))
                self.assertError(resp, E.INVALID_ARGUMENT, field=f"hello.{field}")
        too_long = "a" * 64
        resp = c.call(harness.hello_request(t, terminal_id=too_long))
        self.assertError(resp, E.INVALID_ARGUMENT, field="hello.terminal_id")
        # Same connection, now right.
        self.assertOk(c.hello(t), "hello")
        self.assertOk(c.status(), "status")

    def test_second_hello_refused(self):
        c = self.authed("monitor")
        resp = c.hello(self.community["admin"])
        self.assertError(resp, E.FAILED_PRECONDITION)
        # Still the first identity, still open.
        self.assertOk(c.status(), "status")

    def test_requests_before_hello(self):
        c = self.connect()
        for req in (harness.ping_request(), harness.status_request()):
            with self.subTest(request=req.WhichOneof("body")):
                self.assertError(c.call(req), E.UNAUTHENTICATED, request_id=req.request_id)
        # The connection stays open and Hello still works.
        self.assertOk(c.hello(self.community["monitor"]), "hello")
        self.assertOk(c.ping(), "ping")

    def test_frames_behind_hello_wait_for_it(self):
        """Requests pipelined right behind Hello are handled after it, as the
        authenticated terminal, not refused as unauthenticated."""
        c = self.connect()
        hid = c.send(harness.hello_request(self.community["monitor"]))
        pid = c.send(harness.ping_request(b"after-hello"))
        sid = c.send(harness.status_request())
        first, second, third = c.recv(), c.recv(), c.recv()
        self.assertEqual([first.request_id, second.request_id, third.request_id], [hid, pid, sid])
        self.assertOk(first, "hello")
        self.assertOk(second, "ping")
        self.assertEqual(second.ping.payload, b"after-hello")
        self.assertOk(third, "status")


if __name__ == "__main__":
    unittest.main()
