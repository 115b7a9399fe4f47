#!/usr/bin/python3
"""A small, deterministic fuzz run over the wire: mutated Requests (flipped,
inserted, deleted and truncated bytes, bogus tags) sent with a correct length
prefix, before and after Hello. Whatever arrives, the daemon answers with
well-formed Responses or closes after MALFORMED, keeps serving others, and
exits cleanly: under ASan/UBSan this is where memory errors in decoding and
in error paths show up."""

import random
import unittest

import harness
from harness import pb

E = pb.ErrorCode
SEED = 20240607
FRAMES_PER_CONNECTION = 100
CONNECTIONS = 30


class FuzzTest(harness.DaemonTestCase):

    def seeds(self):
        t = self.community["monitor"]
        reqs = [harness.hello_request(t, request_id=7), harness.ping_request(b"fuzz" * 8, 8),
                harness.status_request(9),
                pb.Request(request_id=10, hello=pb.Hello(protocol_version=1, client_name="x" * 40))]
        return [r.SerializeToString() for r in reqs]

    @staticmethod
    def mutate(rng, data):
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(6)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[pos % len(data)] ^= 1 << rng.randrange(8)
            elif op == 1:
                data[pos:pos] = bytes([rng.randrange(256)])
            elif op == 2 and len(data) > 1:
                del data[pos % len(data)]
            elif op == 3:
                data = data[:pos] or bytearray(b"\x08")
            elif op == 4:     # a random tag with a plausible payload
                tag = rng.choice([0x08, 0x52, 0x5a, 0x62, 0x92, 0xfa, 0x7a, 0x0b, 0x0c])
                data[pos:pos] = bytes([tag, rng.randrange(8)]) + bytes(rng.randrange(8))
            else:             # a huge varint
                data[pos:pos] = b"\xff" * rng.randint(1, 11) + b"\x01"
        return bytes(data)

    def test_mutated_requests(self):
        rng = random.Random(SEED)
        seeds = self.seeds()
        bystander = self.authed("admin")
        known_codes = set(pb.ErrorCode.values())
        stats = {"answered": 0, "closed": 0}
        for n in range(CONNECTIONS):
            c = self.connect()
            if n % 2:
                self.assertOk(c.hello(self.community["monitor"]), "hello")
            bodies = [self.mutate(rng, rng.choice(seeds)) for _ in range(FRAMES_PER_CONNECTION)]
            try:
                c.send_raw(b"".join(harness.frame(b) for b in bodies))
            except (BrokenPipeError, ConnectionResetError):
                pass   # closed early over a bad frame: checked below
            # Read until the daemon has answered every frame or closed.
            for _ in bodies:
                try:
                    body = c.recv_frame()
                except harness.ConnectionClosed:
                    stats["closed"] += 1
                    break
                resp = pb.Response()
                resp.ParseFromString(body)     # always a well-formed Response
                stats["answered"] += 1
                if resp.HasField("error"):
                    self.assertIn(resp.error.code, known_codes)
                    if resp.error.code in (E.MALFORMED, E.FRAME_TOO_LARGE):
                        self.assertEqual(resp.request_id, 0)
            c.close()
            self.assertOk(bystander.ping(b"%d" % n), "ping")
        # The run did exercise both outcomes.
        self.assertGreater(stats["answered"], CONNECTIONS)
        self.assertGreater(stats["closed"], 0)
        st = bystander.status()
        self.assertOk(st, "status")


if __name__ == "__main__":
    unittest.main()
