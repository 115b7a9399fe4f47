#!/usr/bin/python3
"""Writes the seed corpus of fuzz_dispatch into tests/fuzz/corpus/: one file
per seed, a mode byte (identity, see fuzz_dispatch.c) then framed Requests.
Run after a build, from the source tree:

    python3 tests/fuzz/make_corpus.py build/tests/integration/python
"""

import os
import struct
import sys

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "build/tests/integration/python")
import referral_pb2 as pb  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
UUID = "00000000-0000-4000-8000-000000000002"
CLINIC, DESK, BILLING, MONITOR, ADMIN, CERT = 1, 2, 3, 4, 5, 8


def frame(req):
    body = req.SerializeToString()
    return struct.pack(">I", len(body)) + body


def seed(mode, *reqs, raw=b""):
    data = bytes([mode])
    for i, r in enumerate(reqs, 1):
        r.request_id = i
        data += frame(r)
    return data + raw


def R(**kw):
    return pb.Request(**kw)


seeds = {
    "hello": seed(0, R(hello=pb.Hello(protocol_version=1, community_id="fuzz-county",
                                      terminal_id="clinic-01", token="t" * 32)), R(ping=pb.Ping())),
    "hello_cert": seed(CERT, R(hello=pb.Hello(protocol_version=1))),
    "hello_version": seed(0, R(hello=pb.Hello(protocol_version=2))),
    "before_hello": seed(0, R(status=pb.StatusRequest()), R(ping=pb.Ping(payload=b"x"))),
    "ping": seed(MONITOR, R(ping=pb.Ping(payload=b"payload")), R(status=pb.StatusRequest())),
    "publish": seed(DESK, R(publish=pb.PublishSessions(
        department_id="cardiology", kind=pb.KIND_EXPERT, resource_id="dr-wang", capacity=10,
        times=[pb.SessionTime(starts_at=2000000000, ends_at=2000003600)]))),
    "publish_weekly": seed(ADMIN, R(publish=pb.PublishSessions(
        institution_id="county-hospital", department_id="cardiology", kind=pb.KIND_EXAM,
        resource_id="ct-1", capacity=5, reserved_pct=40,
        weekly=pb.WeeklyPattern(first_date="2026-12-07", weeks=2, weekdays=[1, 4],
                                start_time="08:00", end_time="12:00")))),
    "capacity": seed(DESK, R(change_capacity=pb.ChangeCapacity(session_id=7, capacity=3)),
                     R(cancel_session=pb.CancelSession(session_id=7, reason="x"))),
    "search": seed(CLINIC, R(search=pb.SearchSessions(kind=pb.KIND_EXPERT, page_size=10,
                                                      page_token="abc", only_available=True))),
    "book": seed(CLINIC, R(book=pb.Book(session_id=1, patient_id=UUID, pool=pb.POOL_RESERVED,
                                        idempotency_key="k1", referral_id=UUID))),
    "bookings": seed(DESK, R(list_bookings=pb.ListBookings(session_id=1, patient_id=UUID)),
                     R(cancel_booking=pb.CancelBooking(booking_id=UUID, reason="r")),
                     R(emergency_book=pb.EmergencyBook(session_id=1, patient_id=UUID,
                                                       referral_id=UUID, reason="r"))),
    "refer_up": seed(CLINIC, R(refer_up=pb.ReferUp(
        patient_id=UUID, to_institution="county-hospital", to_department="cardiology",
        diagnosis="I21.0", reason="chest pain", urgency=pb.URGENCY_URGENT, session_id=3,
        idempotency_key="k2"))),
    "refer_down": seed(DESK, R(refer_down=pb.ReferDown(
        patient_id=UUID, to_institution="village-a", diagnosis="I10", reason="r",
        care_plan="p", follow_up_due="2026-12-01", idempotency_key="k3"))),
    "referral": seed(DESK, R(referral_action=pb.ReferralAction(
        referral_id=UUID, action=pb.ACTION_REDIRECT, reason="full", to_institution="x")),
        R(get_referral=pb.GetReferral(referral_id=UUID)),
        R(history=pb.GetHistory(referral_id=UUID)),
        R(worklist=pb.Worklist(state="pending", direction=pb.DIRECTION_UP, page_size=5))),
    "subscribe": seed(BILLING, R(subscribe=pb.Subscribe(after_seq=3))),
    "terminals": seed(ADMIN, R(add_terminal=pb.AddTerminal(
        terminal_id="new-01", institution_id="village-a", role=pb.ROLE_CLINIC)),
        R(list_terminals=pb.ListTerminals(include_revoked=True)),
        R(revoke_terminal=pb.RevokeTerminal(terminal_id="clinic-01")),
        R(rotate_terminal=pb.RotateTerminal(terminal_id="clinic-01"))),
    "patient": seed(CLINIC, R(resolve_patient=pb.ResolvePatient(
        resident_id="11010519491231002X", register=True, name="张三丰"))),
    "unknown_field": seed(MONITOR, raw=bytes.fromhex("0000000808015a040a02") + b"\x00\x00\x00\x04\x5a\x02\xf8\x06"),
    "empty_frame": seed(MONITOR, raw=b"\x00\x00\x00\x00"),
    "huge_prefix": seed(MONITOR, raw=b"\xff\xff\xff\xff"),
    "bad_utf8": seed(CLINIC, raw=b"\x00\x00\x00\x06\x9a\x01\x03\x0a\x01\xff"),
}

out = os.path.join(HERE, "corpus")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {out}")
