#!/usr/bin/python3
"""A complete referrald client in ~100 lines of Python, written only with the
official protobuf runtime and the code protoc generates from
proto/referral.proto. It is also the example to follow when writing a client
in another language: nothing here depends on the daemon's C code.

    protoc --python_out=OUT -Iproto proto/referral.proto
    PYTHONPATH=OUT interop_client.py HOST PORT COMMUNITY TERMINAL [TOKEN]

The token may also come from the REFERRAL_TOKEN environment variable (better:
it stays out of the process list). The client performs the handshake, asks
for the server's status and prints it as JSON. Exit codes follow referralctl:
0 ok, 1 the server answered with an error, 2 usage, 3 unreachable or the
connection failed, 4 refused credentials.

The protocol in four rules:
  1. Every message is framed: a 4-byte big-endian length N, then N bytes of
     one protobuf message. Clients send Request, the server sends Response.
  2. Each Request carries a request_id of the client's choice; the Response
     to it carries the same id. Requests may be pipelined, and the responses
     matched by id. An error not tied to a request (a bad frame) has id 0.
  3. The first request must be Hello (protocol_version 1 and the terminal's
     credentials). Refused credentials or versions close the connection.
  4. A Response either has `error` set (with a typed ErrorCode) or carries
     the body matching the request.
"""

import json
import os
import socket
import struct
import sys

import referral_pb2 as pb

PROTOCOL_VERSION = 1
MAX_RESPONSE_BYTES = 16 * 1024 * 1024   # refuse absurd length prefixes


class ProtocolError(Exception):
    pass


class ReferralClient:
    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1

    def _read_exactly(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ProtocolError("server closed the connection")
            data += chunk
        return data

    def send(self, request):
        """Frames and sends a Request; returns the request_id it was given."""
        request.request_id = self.next_id
        self.next_id += 1
        body = request.SerializeToString()
        self.sock.sendall(struct.pack(">I", len(body)) + body)
        return request.request_id

    def receive(self):
        """Reads one framed Response."""
        (length,) = struct.unpack(">I", self._read_exactly(4))
        if length > MAX_RESPONSE_BYTES:
            raise ProtocolError(f"response length {length} exceeds {MAX_RESPONSE_BYTES}")
        response = pb.Response()
        response.ParseFromString(self._read_exactly(length))
        return response

    def call(self, request):
        """Sends a request and waits for the response with the same id."""
        request_id = self.send(request)
        while True:
            response = self.receive()
            if response.request_id == request_id:
                return response
            if response.request_id == 0 and response.HasField("error"):
                return response   # a connection-level error ends the exchange

    def hello(self, community_id, terminal_id, token):
        request = pb.Request(hello=pb.Hello(protocol_version=PROTOCOL_VERSION,
                                            client_name="interop_client.py",
                                            community_id=community_id,
                                            terminal_id=terminal_id, token=token))
        return self.call(request)

    def status(self):
        request = pb.Request()
        request.status.SetInParent()   # StatusRequest has no fields: select it explicitly
        return self.call(request)

    def close(self):
        self.sock.close()


def to_dict(message):
    """Every field of a flat message, defaults included, enums by name."""
    out = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.enum_type is not None:
            value = field.enum_type.values_by_number[value].name
        elif isinstance(value, bytes):
            value = value.hex()
        out[field.name] = value
    return out


def describe_error(error):
    text = f"{pb.ErrorCode.Name(error.code)}: {error.message}"
    return text + (f" (field {error.field})" if error.field else "")


def main(argv):
    if len(argv) not in (5, 6):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    host, port, community_id, terminal_id = argv[1:5]
    token = argv[5] if len(argv) == 6 else os.environ.get("REFERRAL_TOKEN", "")
    try:
        client = ReferralClient(host, port)
    except OSError as e:
        print(f"cannot connect to {host}:{port}: {e}", file=sys.stderr)
        return 3
    try:
        hello = client.hello(community_id, terminal_id, token)
        if hello.HasField("error"):
            print("handshake refused: " + describe_error(hello.error), file=sys.stderr)
            refused = (pb.UNAUTHENTICATED, pb.VERSION_MISMATCH)
            return 4 if hello.error.code in refused else 1
        status = client.status()
        if status.HasField("error"):
            print("status refused: " + describe_error(status.error), file=sys.stderr)
            return 1
        out = {"identity": to_dict(hello.hello), "status": to_dict(status.status)}
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    except (OSError, ProtocolError) as e:
        print(f"connection failed: {e}", file=sys.stderr)
        return 3
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
