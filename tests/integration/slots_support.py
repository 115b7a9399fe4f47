"""Helpers of the slot-pool integration tests (test_slots_*.py).

On top of harness.py:
  * SlotCommunity: harness.Community plus what the slot logic needs: a
    province preset, departments, experts, a second hospital with its own
    desk, a second clinic, and patients signed with the family doctor;
  * request builders for the slot requests, and SlotClient, a harness.Client
    with typed calls;
  * SlotsTestCase: a unittest base with a SlotCommunity and a daemon;
  * Swarm: many raw connections driven by one selector loop, to fire a
    request on each of them at the same moment (or on a schedule);
  * SQL checks of the invariants: counters against live bookings.
"""

import datetime
import secrets
import selectors
import socket
import struct
import subprocess
import time
import unittest
import uuid
import zoneinfo

import harness
from harness import pb, sql_literal

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
HOUR = 3600
DAY = 86400

# Province presets: floor percent and whether reserved units need a referral.
PROVINCES = {
    "henan": (40, False),
    "yunnan": (20, True),
    "fujian": (20, False),
}


def future(days=3, hour=9, minute=0, offset_s=0):
    """Unix seconds of a whole minute `days` from now (UTC hour), comfortably
    past the default release lead (1440 minutes) so that no release timer of
    any daemon on the cluster touches the session early."""
    d = datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=days)
    t = datetime.datetime(d.year, d.month, d.day, hour, minute, tzinfo=datetime.timezone.utc)
    return int(t.timestamp()) + offset_s


def new_key(prefix="k"):
    return f"{prefix}-{secrets.token_hex(8)}"


# ---- the community -------------------------------------------------------------

_extra_token = []


def extra_token():
    """One token (and its hash) for the terminals SlotCommunity adds: hashing
    takes a run of the daemon binary, slow under the sanitizers."""
    if not _extra_token:
        token = secrets.token_urlsafe(24)
        _extra_token.append((token, harness.hash_token(token)))
    return _extra_token[0]


class SlotCommunity:
    """A community ready for slot pools.

    From harness.Community: institutions county-hospital (desk, billing,
    monitor, admin terminals) and village-a (clinic terminal bound to the
    family doctor fd-a). Added here:
      * institution tcm-hospital (county level) with terminal "desk-tcm";
      * institution village-b with family doctor fd-b and terminal "clinic-b";
      * departments cardiology, radiology, internal at county-hospital and
        acupuncture at tcm-hospital;
      * experts dr-wang (cardiology), dr-li (internal) at county-hospital and
        dr-zhao (acupuncture) at tcm-hospital;
      * patients on demand (patients()), signed with fd-a.
    """

    EXTRA_TERMINALS = [
        # name, role, institution, practitioner
        ("desk-tcm", "desk", "tcm-hospital", None),
        ("clinic-b", "clinic", "village-b", "fd-b"),
    ]

    def __init__(self, pg, label, dbname="referral", province="henan", floor_pct=None,
                 requires_referral=None, lead_expert_min=None, lead_exam_min=None,
                 lead_bed_min=None, setup_sql=None):
        self.pg = pg
        self.dbname = dbname
        self.base = harness.Community(pg, label, dbname=dbname, setup_sql=setup_sql)
        self.community_id = self.base.community_id
        self.terminals = dict(self.base.terminals)
        default_floor, default_ref = PROVINCES.get(province, (30, False))
        self.province = province
        self.floor_pct = default_floor if floor_pct is None else floor_pct
        self.requires_referral = default_ref if requires_referral is None else requires_referral
        c = sql_literal(self.community_id)
        sets = [f"province = {sql_literal(province)}",
                f"reserve_floor_pct = {self.floor_pct}",
                f"reserved_requires_referral = {'true' if self.requires_referral else 'false'}"]
        for col, v in (("release_lead_expert_min", lead_expert_min),
                       ("release_lead_exam_min", lead_exam_min),
                       ("release_lead_bed_min", lead_bed_min)):
            if v is not None:
                sets.append(f"{col} = {int(v)}")
        rows = []
        token, token_hash = extra_token()
        for name, role, inst, prac in self.EXTRA_TERMINALS:
            t = harness.Terminal(self.community_id, f"{name}-01", role, inst, prac, token)
            self.terminals[name] = t
            rows.append("({}, {}, {}, {}, {}, {})".format(
                c, sql_literal(t.terminal_id), sql_literal(inst), sql_literal(role),
                sql_literal(prac), sql_literal(token_hash)))
        self.psql(f"""
BEGIN;
UPDATE communities SET {", ".join(sets)} WHERE community_id = {c};
INSERT INTO institutions (community_id, institution_id, name, level) VALUES
    ({c}, 'tcm-hospital', 'County TCM Hospital', 'county'),
    ({c}, 'village-b', 'Village B Clinic', 'village');
INSERT INTO departments (community_id, institution_id, department_id, name) VALUES
    ({c}, 'county-hospital', 'cardiology', 'Cardiology'),
    ({c}, 'county-hospital', 'radiology', 'Radiology'),
    ({c}, 'county-hospital', 'internal', 'Internal Medicine'),
    ({c}, 'tcm-hospital', 'acupuncture', 'Acupuncture');
INSERT INTO practitioners (community_id, practitioner_id, institution_id, department_id,
                           name, kind) VALUES
    ({c}, 'dr-wang', 'county-hospital', 'cardiology', 'Dr Wang', 'expert'),
    ({c}, 'dr-li', 'county-hospital', 'internal', 'Dr Li', 'expert'),
    ({c}, 'dr-zhao', 'tcm-hospital', 'acupuncture', 'Dr Zhao', 'expert'),
    ({c}, 'fd-b', 'village-b', NULL, 'Family Doctor B', 'family_doctor');
INSERT INTO terminals (community_id, terminal_id, institution_id, role, practitioner_id,
                       token_hash) VALUES
    {",".join(rows)};
COMMIT;
""")

    def __getitem__(self, name):
        return self.terminals[name]

    def cheap_tokens(self, names):
        """Re-hashes the named terminals' tokens with the fewest PBKDF2
        iterations allowed: for tests that open hundreds of connections,
        where the handshake is not what is under test."""
        for name in names:
            t = self.terminals[name]
            p = subprocess.run([harness.REFERRALD, "-s", "pbkdf2_iterations=1000", "--hash-token"],
                               input=t.token + "\n", env=harness.binary_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if p.returncode != 0 or not p.stdout.startswith("pbkdf2-sha256$"):
                raise AssertionError(f"referrald --hash-token failed ({p.returncode}): {p.stderr}")
            self.psql(f"UPDATE terminals SET token_hash = {sql_literal(p.stdout.strip())} "
                      f"WHERE community_id = {sql_literal(self.community_id)} "
                      f"AND terminal_id = {sql_literal(t.terminal_id)}")

    def psql(self, sql):
        return self.pg.psql(sql, dbname=self.dbname)

    def close(self):
        """Nothing held open here (subclasses may keep a session)."""

    def patients(self, n, family_doctor="fd-a"):
        """Creates n patients; returns their ids (strings)."""
        c = sql_literal(self.community_id)
        tag = secrets.token_hex(6)
        out = self.psql(f"""
INSERT INTO patients (community_id, id_hash, display_name, family_doctor_id)
SELECT {c}, sha256(convert_to({c} || ':{tag}:' || i, 'UTF8')), 'Patient ' || i,
       {sql_literal(family_doctor)}
  FROM generate_series(1, {int(n)}) AS g(i)
RETURNING patient_id;""")
        ids = out.split()
        assert len(ids) == n, out
        return ids

    def patient(self):
        return self.patients(1)[0]

    def foreign_patient(self):
        """A patient of another community (a bare one, made for this)."""
        other = f"{self.community_id[:40]}-x{secrets.token_hex(3)}"
        return self.psql(f"""
INSERT INTO communities (community_id, name, province, reserve_floor_pct,
                         reserved_requires_referral, deductible_policy)
VALUES ({sql_literal(other)}, 'Another community', 'henan', 40, false, 'waive');
INSERT INTO patients (community_id, id_hash, display_name)
VALUES ({sql_literal(other)}, sha256(convert_to({sql_literal(other)}, 'UTF8')), 'Elsewhere')
RETURNING patient_id;""").split()[-1]

    # -- reading state straight from the database
    def session_row(self, session_id):
        """The session's counters as a dict of ints (and flags)."""
        out = self.psql(f"""
SELECT capacity, reserved_initial, reserved_capacity, reserved_booked, public_booked,
       emergency_booked, released_at IS NOT NULL, released_count, status
  FROM sessions WHERE community_id = {sql_literal(self.community_id)}
   AND session_id = {int(session_id)}""")
        f = out.split("|")
        keys = ["capacity", "reserved_initial", "reserved_capacity", "reserved_booked",
                "public_booked", "emergency_booked"]
        row = {k: int(v) for k, v in zip(keys, f[:6])}
        row["released"] = f[6] == "t"
        row["released_count"] = int(f[7])
        row["status"] = f[8]
        return row

    def live_counts(self, session_id):
        """pool -> number of bookings with status 'booked'."""
        out = self.psql(f"""
SELECT pool, count(*) FROM bookings WHERE community_id = {sql_literal(self.community_id)}
   AND session_id = {int(session_id)} AND status = 'booked' GROUP BY pool""")
        counts = {"reserved": 0, "public": 0, "emergency": 0}
        for line in out.splitlines():
            pool, n = line.split("|")
            counts[pool] = int(n)
        return counts

    def bookings(self, session_id):
        """booking_id -> (pool, status) for every booking of the session."""
        out = self.psql(f"""
SELECT booking_id, pool, status FROM bookings
 WHERE community_id = {sql_literal(self.community_id)} AND session_id = {int(session_id)}""")
        rows = {}
        for line in out.splitlines():
            bid, pool, status = line.split("|")
            rows[bid] = (pool, status)
        return rows

    def releases(self, session_id=None):
        """(session_id, released_count) rows of table releases."""
        where = f"community_id = {sql_literal(self.community_id)}"
        if session_id is not None:
            where += f" AND session_id = {int(session_id)}"
        out = self.psql(f"SELECT session_id, released_count FROM releases WHERE {where} "
                        "ORDER BY session_id, release_id")
        return [tuple(int(x) for x in line.split("|")) for line in out.splitlines()]

    def set_release_at(self, session_ids, expr="now()"):
        ids = ",".join(str(int(s)) for s in session_ids)
        self.psql(f"UPDATE sessions SET release_at = {expr} "
                  f"WHERE community_id = {sql_literal(self.community_id)} "
                  f"AND session_id IN ({ids})")

    def invariant_violations(self):
        """Open sessions of this community whose counters disagree with their
        live bookings or exceed a pool; [] when all is well. One statement,
        so one snapshot: usable while bookings run. (A cancelled session
        keeps the counters it had; its bookings are flagged.)"""
        out = self.psql(f"""
WITH live AS (
    SELECT session_id,
           count(*) FILTER (WHERE pool = 'reserved') AS r,
           count(*) FILTER (WHERE pool = 'public') AS p,
           count(*) FILTER (WHERE pool = 'emergency') AS e
      FROM bookings WHERE community_id = {sql_literal(self.community_id)}
       AND status = 'booked' GROUP BY session_id)
SELECT s.session_id, s.capacity, s.reserved_capacity, s.reserved_booked, s.public_booked,
       s.emergency_booked, coalesce(l.r, 0), coalesce(l.p, 0), coalesce(l.e, 0)
  FROM sessions s LEFT JOIN live l USING (session_id)
 WHERE s.community_id = {sql_literal(self.community_id)} AND s.status = 'open'
   AND (s.reserved_booked <> coalesce(l.r, 0) OR s.public_booked <> coalesce(l.p, 0)
        OR s.emergency_booked <> coalesce(l.e, 0)
        OR s.reserved_booked > s.reserved_capacity
        OR s.public_booked > s.capacity - s.reserved_capacity
        OR coalesce(l.r, 0) + coalesce(l.p, 0) > s.capacity)""")
        return out.splitlines()


# ---- requests --------------------------------------------------------------------

def times_of(*pairs):
    return [pb.SessionTime(starts_at=s, ends_at=e) for s, e in pairs]


def publish_request(*, department="cardiology", kind=pb.KIND_EXPERT, resource="dr-wang",
                    capacity=10, reserved_slots=0, reserved_pct=0, times=None, weekly=None,
                    institution="", start=None, length=4 * HOUR):
    p = pb.PublishSessions(institution_id=institution, department_id=department, kind=kind,
                           resource_id=resource, capacity=capacity,
                           reserved_slots=reserved_slots, reserved_pct=reserved_pct)
    if times is None and weekly is None:
        s = future() if start is None else start
        times = [(s, s + length)]
    if times:
        p.times.extend(times_of(*times))
    if weekly is not None:
        p.weekly.CopyFrom(weekly)
    return pb.Request(publish=p)


def book_request(session_id, patient_id, *, pool=pb.POOL_AUTO, fallback=False, referral="",
                 key=None, request_id=0):
    return pb.Request(request_id=request_id, book=pb.Book(
        session_id=session_id, patient_id=patient_id, pool=pool, fallback_to_public=fallback,
        referral_id=referral, idempotency_key=new_key() if key is None else key))


def cancel_request(booking_id, reason="", request_id=0):
    return pb.Request(request_id=request_id,
                      cancel_booking=pb.CancelBooking(booking_id=booking_id, reason=reason))


def search_request(**fields):
    return pb.Request(search=pb.SearchSessions(**fields))


class SlotClient(harness.Client):
    """harness.Client with typed slot calls; each returns the Response."""

    def publish(self, **kw):
        return self.call(publish_request(**kw))

    def change_capacity(self, session_id, capacity):
        return self.call(pb.Request(change_capacity=pb.ChangeCapacity(
            session_id=session_id, capacity=capacity)))

    def cancel_session(self, session_id, reason="test"):
        return self.call(pb.Request(cancel_session=pb.CancelSession(
            session_id=session_id, reason=reason)))

    def search(self, **fields):
        return self.call(search_request(**fields))

    def session(self, session_id, resource):
        """The session as search shows it (None if not listed)."""
        resp = self.search(resource_id=resource, until=future(days=60), page_size=500)
        assert not resp.HasField("error"), resp
        for s in resp.sessions.sessions:
            if s.session_id == session_id:
                return s
        return None

    def book(self, session_id, patient_id, **kw):
        return self.call(book_request(session_id, patient_id, **kw))

    def cancel(self, booking_id, reason=""):
        return self.call(cancel_request(booking_id, reason))

    def emergency(self, session_id, patient_id, reason="chest pain, green channel",
                  referral=""):
        return self.call(pb.Request(emergency_book=pb.EmergencyBook(
            session_id=session_id, patient_id=patient_id, reason=reason,
            referral_id=referral)))

    def list_bookings(self, **fields):
        return self.call(pb.Request(list_bookings=pb.ListBookings(**fields)))


# ---- the test base ------------------------------------------------------------------

class SlotAssertions:
    """Publishing and booking checks shared by the slot and referral test
    cases (which set self.community and provide authed())."""

    def publish_one(self, desk=None, **kw):
        """Publishes one session (desk terminal by default); returns it."""
        c = desk or self.authed("desk")
        resp = c.publish(**kw)
        self.assertOk(resp, "publish")
        self.assertEqual(len(resp.publish.sessions), 1, resp)
        return resp.publish.sessions[0]

    def assertBooked(self, resp, pool=None):
        self.assertOk(resp, "booking")
        self.assertEqual(resp.booking.status, "booked", resp)
        if pool is not None:
            self.assertEqual(pb.Pool.Name(resp.booking.pool), pb.Pool.Name(pool), resp)
        return resp.booking

    def assertCounters(self, session_id, **expected):
        row = self.community.session_row(session_id)
        got = {k: row[k] for k in expected}
        self.assertEqual(got, expected, f"session {session_id}: {row}")
        return row

    def assertConsistent(self):
        self.assertEqual(self.community.invariant_violations(), [],
                         "session counters disagree with live bookings")


class SlotsTestCase(SlotAssertions, harness.IntegrationCase):
    """A SlotCommunity and one daemon per test class, on the shared cluster
    (or, with private_database, on a database of the class's own).

    Classes of a module with the same community_options share a community
    (tests create their own patients and sessions); own_community gives a
    class one of its own, for checks over the whole community. Subclasses
    name their own community_class, client_class and database_prefix."""

    daemon_settings = {}
    community_options = {}
    community_class = SlotCommunity
    client_class = SlotClient
    database_prefix = "slots"
    private_database = False
    own_community = False
    _communities = {}

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.dbname = "referral"
        if cls.private_database:
            cls.dbname = cls.pg.create_database(cls.database_prefix)
            cls.addClassCleanup(cls.pg.drop_database, cls.dbname)
        module = harness.module_label(cls)
        if cls.own_community or cls.private_database:
            cls.community = cls.community_class(cls.pg, f"{module}-{cls.__name__}".lower(),
                                                dbname=cls.dbname, **cls.community_options)
            cls.addClassCleanup(cls.community.close)
        else:
            key = (cls.community_class, module, cls.pg.env_file,
                   tuple(sorted(cls.community_options.items())))
            if key not in SlotsTestCase._communities:
                SlotsTestCase._communities[key] = cls.community_class(
                    cls.pg, module, dbname=cls.dbname, **cls.community_options)
            cls.community = SlotsTestCase._communities[key]
        cls.daemon = start_daemon(cls.pg, cls.dbname, cls.daemon_settings,
                                  name=harness.module_label(cls))
        cls.addClassCleanup(cls.daemon.stop)

    def connect(self, daemon=None):
        c = self.client_class((daemon or self.daemon).port)
        self.addCleanup(c.close)
        return c

    def authed(self, name, daemon=None):
        c = self.connect(daemon)
        self.assertOk(c.hello(self.community[name]), "hello")
        return c



def start_daemon(pg, dbname, settings=None, name="slots"):
    merged = {"release_interval_ms": "200"}
    merged.update(settings or {})
    d = harness.Daemon(pg.dsn(dbname), settings=merged, name=name)
    d.start()
    return d


# ---- many connections at once ---------------------------------------------------------

class Swarm:
    """Many raw connections driven by one selector loop.

    hello_all() completes Hello on every connection; exchange() then sends
    prepared requests, all in one burst (a barrier without threads: every
    frame is written before any answer is read) or on a schedule, and
    collects the answers, checking that each request is answered exactly
    once."""

    def __init__(self, endpoints, timeout=30):
        """endpoints: (port, terminal) per connection."""
        self.timeout = timeout * harness.SLOW
        self.conns = []
        self.sel = selectors.DefaultSelector()
        for port, t in endpoints:
            s = socket.create_connection(("127.0.0.1", port), timeout=self.timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            self.conns.append({"sock": s, "terminal": t, "buf": b"", "answers": []})

    def close(self):
        for c in self.conns:
            try:
                self.sel.unregister(c["sock"])
            except (KeyError, ValueError):
                pass
            c["sock"].close()
        self.sel.close()

    def __len__(self):
        return len(self.conns)

    @staticmethod
    def _send_all(sock, data, deadline):
        view = memoryview(data)
        while view:
            try:
                n = sock.send(view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError("could not send: the server does not read")
                time.sleep(0.001)

    def exchange(self, requests, expect_per_conn=1, settle=0.3, schedule=None, gate=None,
                 gated=()):
        """requests[i] (a Request, a list of them, or None) goes on connection
        i; returns per connection the list of answers. Every connection must
        receive exactly expect_per_conn answers per request sent, and nothing
        more within `settle` seconds after the last.

        Without a schedule all requests are written before any answer is
        read (a burst). schedule[i], seconds from the start, delays the
        requests of connection i (a stream), answers being read meanwhile.
        For the connections in `gated`, schedule[i] counts from the moment
        the threading.Event `gate` is seen set instead."""
        start = time.monotonic()
        deadline = start + self.timeout + (max(schedule) if schedule else 0)
        frames = []
        want = {}
        for i, reqs in enumerate(requests):
            if reqs is None:
                reqs = []
            elif isinstance(reqs, pb.Request):
                reqs = [reqs]
            frames.append(b"".join(harness.frame(r.SerializeToString()) for r in reqs))
            want[i] = len(reqs) * expect_per_conn
            self.conns[i]["answers"] = []
        gated = set(gated)
        gate_time = None
        order = sorted((i for i, data in enumerate(frames) if data and i not in gated),
                       key=lambda i: schedule[i] if schedule else 0)
        later = sorted((i for i, data in enumerate(frames) if data and i in gated),
                       key=lambda i: schedule[i])
        for i, c in enumerate(self.conns):
            self.sel.register(c["sock"], selectors.EVENT_READ, i)
        try:
            pending = {i for i, n in want.items() if n > 0}
            settle_until = None
            while (order or later or pending
                   or (settle_until and time.monotonic() < settle_until)):
                if later and gate_time is None and gate.is_set():
                    gate_time = time.monotonic()
                    order = sorted(order + later, key=lambda i: (
                        gate_time + schedule[i] if i in gated else start + schedule[i]))
                    later = []
                    schedule = [gate_time - start + t if i in gated else t
                                for i, t in enumerate(schedule)]
                # Send whatever is due (everything at once without a schedule).
                while order and (not schedule or
                                 time.monotonic() - start >= schedule[order[0]]):
                    i = order.pop(0)
                    self._send_all(self.conns[i]["sock"], frames[i], deadline)
                now = time.monotonic()
                if pending and now > deadline:
                    raise AssertionError(
                        f"{len(pending)} connection(s) still waiting for answers after "
                        f"{now - start:.0f}s, e.g. {sorted(pending)[:5]}")
                if order:
                    limit = start + schedule[order[0]] - now
                    if later:
                        limit = min(limit, 0.01)     # watch the gate
                elif later:
                    limit = 0.01
                elif pending:
                    limit = deadline - now
                else:
                    limit = settle_until - now
                for key, _ in self.sel.select(timeout=max(0.0, min(limit, 0.5))):
                    i = key.data
                    c = self.conns[i]
                    try:
                        data = c["sock"].recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except ConnectionResetError:
                        data = b""
                    if not data:
                        raise AssertionError(f"connection {i} closed by the server; "
                                             f"answers so far {c['answers']}")
                    c["buf"] += data
                    while len(c["buf"]) >= 4:
                        (n,) = struct.unpack(">I", c["buf"][:4])
                        if len(c["buf"]) < 4 + n:
                            break
                        body, c["buf"] = c["buf"][4:4 + n], c["buf"][4 + n:]
                        resp = pb.Response()
                        resp.ParseFromString(body)
                        c["answers"].append(resp)
                        if len(c["answers"]) > want[i]:
                            raise AssertionError(
                                f"connection {i} got more answers than requests: "
                                f"{c['answers']}")
                        if len(c["answers"]) == want[i]:
                            pending.discard(i)
                if not order and not later and not pending and settle_until is None:
                    settle_until = time.monotonic() + settle
        finally:
            for c in self.conns:
                self.sel.unregister(c["sock"])
        return [c["answers"] for c in self.conns]

    def hello_all(self):
        answers = self.exchange([harness.hello_request(c["terminal"], request_id=1)
                                 for c in self.conns], settle=0)
        for i, a in enumerate(answers):
            if a[0].WhichOneof("body") != "hello":
                raise AssertionError(f"hello on connection {i} failed: {a[0]}")


# ---- referralctl --------------------------------------------------------------------------

def referralctl(daemon, terminal, *args, json_out=True, timeout=30):
    """Runs referralctl against the daemon as the terminal; returns the
    CompletedProcess (text)."""
    env = harness.binary_env({
        "REFERRAL_HOST": "127.0.0.1",
        "REFERRAL_PORT": str(daemon.port),
        "REFERRAL_COMMUNITY": terminal.community_id,
        "REFERRAL_TERMINAL": terminal.terminal_id,
        "REFERRAL_TOKEN": terminal.token,
    })
    argv = [harness.REFERRALCTL] + (["--json"] if json_out else []) + list(args)
    return subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout * harness.SLOW, stdin=subprocess.DEVNULL)


def is_uuid(s):
    try:
        return str(uuid.UUID(s)) == s.lower()
    except (ValueError, AttributeError, TypeError):
        return False


def shanghai_ts(date, hhmm):
    """Unix seconds of a local Asia/Shanghai date (datetime.date) and "HH:MM"."""
    h, m = (int(x) for x in hhmm.split(":"))
    return int(datetime.datetime(date.year, date.month, date.day, h, m,
                                 tzinfo=SHANGHAI).timestamp())


def next_monday(min_days_ahead=3):
    """A Monday (local date) at least min_days_ahead days from today."""
    d = datetime.datetime.now(SHANGHAI).date() + datetime.timedelta(days=min_days_ahead)
    return d + datetime.timedelta(days=(7 - d.weekday()) % 7)


def blocked_by(pg, dbname, pid):
    """How many backends wait, directly or through others, on backend pid."""
    return int(pg.psql(f"""
WITH RECURSIVE t(pid) AS (
    SELECT a.pid FROM pg_stat_activity a WHERE {int(pid)} = ANY (pg_blocking_pids(a.pid))
    UNION
    SELECT a.pid FROM pg_stat_activity a, t WHERE t.pid = ANY (pg_blocking_pids(a.pid)))
SELECT count(*) FROM t""", dbname=dbname))


def known_bug(why):
    """Marks a test that shows a reported, not yet fixed daemon bug. It runs
    and must fail; once the bug is fixed it passes, unittest reports an
    unexpected success and the run fails: then remove the marker."""
    def mark(fn):
        fn.__doc__ = f"{fn.__doc__ or ''}\n\nKnown bug: {why}".strip()
        return unittest.expectedFailure(fn)
    return mark
