#!/usr/bin/python3
"""Malformed input on one connection: the typed answer, whether that
connection closes, and that a connection opened before it is unharmed."""

import socket
import time
import unittest

import harness
from harness import pb, field_bytes, field_varint, frame

E = pb.ErrorCode

MAX_FRAME = 4096


class FramingTest(harness.DaemonTestCase):
    daemon_settings = {"max_frame_bytes": str(MAX_FRAME)}

    def setUp(self):
        # Opened (and authenticated) before the misbehaving connection.
        self.bystander = self.authed("monitor")

    def tearDown(self):
        # Whatever the other connection did, this one still works.
        resp = self.bystander.ping(b"still here")
        self.assertOk(resp, "ping")
        self.assertEqual(resp.ping.payload, b"still here")
        self.assertTrue(self.daemon.running())

    def assertErrorThenClose(self, c, code):
        resp = c.recv()
        self.assertError(resp, code, request_id=0)
        c.wait_closed()
        return resp

    # -- connection-level errors: answered with id 0, then closed

    def test_zero_length(self):
        c = self.connect()
        c.send_raw(b"\x00\x00\x00\x00")
        self.assertErrorThenClose(c, E.MALFORMED)

    def test_zero_length_after_hello(self):
        c = self.authed("clinic")
        c.send_raw(b"\x00\x00\x00\x00")
        self.assertErrorThenClose(c, E.MALFORMED)

    def test_huge_length_is_refused_from_the_header(self):
        """0xFFFFFFF0 announced and no body sent: the answer comes from the
        header alone (nothing is buffered or allocated for the body)."""
        c = self.connect()
        c.send_raw(b"\xff\xff\xff\xf0")
        resp = self.assertErrorThenClose(c, E.FRAME_TOO_LARGE)
        self.assertIn(str(0xFFFFFFF0), resp.error.message)

    def test_one_byte_over_the_limit(self):
        c = self.authed("clinic")
        c.send_raw((MAX_FRAME + 1).to_bytes(4, "big"))
        self.assertErrorThenClose(c, E.FRAME_TOO_LARGE)

    def test_exactly_the_limit_is_accepted(self):
        c = self.authed("clinic")
        req = harness.ping_request(request_id=9)
        # Pad the payload so that the encoded Request is exactly MAX_FRAME.
        req.ping.payload = b"p" * (MAX_FRAME - 8)
        while req.ByteSize() > MAX_FRAME:
            req.ping.payload = req.ping.payload[:-1]
        self.assertEqual(req.ByteSize(), MAX_FRAME)
        resp = c.call(req)
        self.assertOk(resp, "ping")
        self.assertEqual(resp.ping.payload, req.ping.payload)

    def test_garbage_bodies(self):
        bodies = {
            "truncated varint": b"\x08\xff\xff",
            "length past the end": field_varint(1, 3)[:2] + b"\x52\x10abc",
            "invalid wire type": b"\x0f\x01",
            "field number 0": b"\x00\x01",
            "bytes where a varint belongs": b"\x0a\x02ab",
            "random": bytes([0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        }
        for what, body in bodies.items():
            with self.subTest(body=what):
                with self.daemon.client() as c:
                    c.send_frame(body)
                    self.assertErrorThenClose(c, E.MALFORMED)

    def test_garbage_after_good_requests(self):
        """Replies already due are still delivered before the close."""
        c = self.authed("clinic")
        good = [harness.ping_request(b"%d" % i, request_id=i) for i in (1, 2, 3)]
        c.send_raw(b"".join(frame(r.SerializeToString()) for r in good)
                   + frame(b"\x0f\x01") + frame(harness.ping_request(request_id=4).SerializeToString()))
        for r in good:
            resp = c.recv()
            self.assertOk(resp, "ping")
            self.assertEqual(resp.request_id, r.request_id)
        # Request 4, behind the garbage, is not answered.
        self.assertErrorThenClose(c, E.MALFORMED)

    def test_truncated_frame_then_close(self):
        """A peer that announces 100 bytes, sends 10 and closes: no answer,
        and the daemon forgets the connection."""
        before = self.bystander.status().status.connections
        c = self.connect()
        harness.wait_for(lambda: self.bystander.status().status.connections == before + 1, 5,
                         what="the connection to be counted")
        c.send_raw((100).to_bytes(4, "big") + b"\x08\x01" + b"\x00" * 8)
        c.sock.shutdown(socket.SHUT_WR)
        c.wait_closed()
        harness.wait_for(lambda: self.bystander.status().status.connections == before, 5,
                         what="the closed connection to be counted out")

    def test_truncated_header_then_close(self):
        c = self.connect()
        c.send_raw(b"\x00\x00")
        c.sock.shutdown(socket.SHUT_WR)
        c.wait_closed()

    def test_frame_split_into_single_bytes(self):
        """A frame may arrive one byte per segment."""
        c = self.authed("clinic")
        data = frame(harness.ping_request(b"slowly", request_id=5).SerializeToString())
        for b in data:
            c.send_raw(bytes([b]))
            time.sleep(0.002)
        resp = c.recv()
        self.assertOk(resp, "ping")
        self.assertEqual((resp.request_id, resp.ping.payload), (5, b"slowly"))

    # -- request-level errors: answered with the request's id, connection stays

    def test_unknown_field_in_hello(self):
        c = self.connect()
        hello = harness.hello_request(self.community["monitor"]).hello.SerializeToString()
        body = field_varint(1, 41) + field_bytes(10, hello + field_varint(99, 1))
        c.send_frame(body)
        self.assertError(c.recv(), E.INVALID_ARGUMENT, field="hello.#99", request_id=41)
        # Still open, still able to say Hello.
        self.assertOk(c.hello(self.community["monitor"]), "hello")

    def test_unknown_field_in_ping(self):
        c = self.authed("clinic")
        body = field_varint(1, 42) + field_bytes(11, field_bytes(1, b"x") + field_bytes(7, b"?"))
        c.send_frame(body)
        self.assertError(c.recv(), E.INVALID_ARGUMENT, field="ping.#7", request_id=42)
        self.assertOk(c.ping(), "ping")

    def test_unknown_field_in_request(self):
        c = self.authed("clinic")
        body = field_varint(1, 43) + field_bytes(11, b"") + field_varint(5, 1)
        c.send_frame(body)
        self.assertError(c.recv(), E.INVALID_ARGUMENT, field="#5", request_id=43)
        self.assertOk(c.ping(), "ping")

    def test_unknown_request_type(self):
        """A oneof member this server does not know (field 90): a newer
        client's request. UNIMPLEMENTED, and the connection stays."""
        for authed in (False, True):
            with self.subTest(authenticated=authed):
                c = self.authed("clinic") if authed else self.connect()
                c.send_frame(field_varint(1, 44) + field_bytes(90, field_varint(1, 7)))
                self.assertError(c.recv(), E.UNIMPLEMENTED, field="#90", request_id=44)
                self.assertOk(c.ping() if authed else c.hello(self.community["clinic"]),
                              "ping" if authed else "hello")

    def test_many_bad_requests_do_not_close(self):
        c = self.authed("clinic")
        for i in range(1, 51):
            c.send_frame(field_varint(1, i) + field_bytes(1000 + i, b""))
        for i in range(1, 51):
            self.assertError(c.recv(), E.UNIMPLEMENTED, request_id=i)
        self.assertOk(c.ping(), "ping")


def raw_hello(community_id, terminal_id, token, request_id=1):
    """Hello encoded by hand, so that its strings may be any bytes."""
    hello = (field_varint(1, 1) + field_bytes(3, community_id) + field_bytes(4, terminal_id)
             + field_bytes(5, token))
    return field_varint(1, request_id) + field_bytes(10, hello)


class StringFieldTest(harness.DaemonTestCase):
    """Protobuf strings are UTF-8 and may hold NUL; C strings may not."""

    def test_invalid_utf8_is_invalid_argument(self):
        t = self.community["clinic"]
        c = self.connect()
        c.send_frame(raw_hello(b"\xff\xfe", t.terminal_id.encode(), t.token.encode()))
        resp = c.recv()
        self.assertEqual(resp.request_id, 1)
        self.assertError(resp, E.INVALID_ARGUMENT, field="hello.community_id")

    def test_token_with_nul_does_not_authenticate(self):
        """"<token>\\0junk" is not the terminal's token."""
        t = self.community["clinic"]
        c = self.connect()
        c.send_frame(raw_hello(t.community_id.encode(), t.terminal_id.encode(),
                               t.token.encode() + b"\x00junk"))
        resp = c.recv()
        self.assertEqual(resp.request_id, 1)
        self.assertTrue(resp.HasField("error"), f"authenticated with another token: {resp}")
        self.assertError(resp, E.INVALID_ARGUMENT, field="hello.token")

    def test_nul_free_strings_still_work(self):
        t = self.community["clinic"]
        c = self.connect()
        c.send_frame(raw_hello(t.community_id.encode(), t.terminal_id.encode(), t.token.encode()))
        self.assertOk(c.recv(), "hello")


if __name__ == "__main__":
    unittest.main()
