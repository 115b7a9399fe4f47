"""Helpers of the two-way referral integration tests (test_referrals_*.py).

On top of harness.py and slots_support.py:
  * ReferralCommunity: a SlotCommunity plus what referral routes need: a
    township centre with its own clinic terminal, a city hospital inside the
    referral network (with a desk) and one outside it, and the community's
    referral settings (same-level referrals, escalation, no-show grace);
  * request builders for the referral requests, and ReferralClient, a
    SlotClient with typed referral calls;
  * EventStream: a subscribed connection, reading pushed events;
  * ReferralsTestCase: a unittest base with a ReferralCommunity and a daemon,
    and checks of what the database holds (the referral row, its history,
    its events, bookings), read through one psql session kept open: the
    tests look at the tables after nearly every request.
"""

import datetime
import secrets
import socket
import uuid

import harness
from harness import pb, sql_literal
import slots_support as ss
from slots_support import HOUR, future  # noqa: F401  (re-exported for the tests)

OPEN_STATES = ("pending", "waiting_slot", "accepted", "arrived", "admitted", "discharged",
               "followed_up")
READ_ROLES = ("clinic", "desk", "billing", "monitor", "admin")


def new_key(prefix="ref"):
    return f"{prefix}-{secrets.token_hex(8)}"


# ---- the community --------------------------------------------------------------

class ReferralCommunity(ss.SlotCommunity):
    """A community ready for referrals.

    From SlotCommunity: county-hospital (county; terminals desk, billing,
    monitor, admin; departments cardiology, radiology, internal; experts
    dr-wang, dr-li), tcm-hospital (county; terminal desk-tcm; department
    acupuncture, expert dr-zhao), village-a (clinic terminal "clinic", family
    doctor fd-a), village-b (terminal "clinic-b", fd-b). Added here:
      * township-c (township), family doctor fd-c, clinic terminal "clinic-c";
      * city-hospital (city, in the network), department oncology, expert
        dr-sun, desk terminal "desk-city";
      * outside-hospital (city, in_network false), department surgery;
      * the referral settings of the community (keyword arguments).
    """

    MORE_TERMINALS = [
        # name, role, institution, practitioner
        ("clinic-c", "clinic", "township-c", "fd-c"),
        ("desk-city", "desk", "city-hospital", None),
    ]

    def __init__(self, pg, label, dbname="referral", allow_same_level=False,
                 escalate_emergency_min=None, escalate_urgent_min=None,
                 escalate_routine_min=None, no_show_grace_min=None, **slot_options):
        super().__init__(pg, label, dbname=dbname, **slot_options)
        c = sql_literal(self.community_id)
        token, token_hash = ss.extra_token()
        rows = []
        for name, role, inst, prac in self.MORE_TERMINALS:
            t = harness.Terminal(self.community_id, f"{name}-01", role, inst, prac, token)
            self.terminals[name] = t
            rows.append("({}, {}, {}, {}, {}, {})".format(
                c, sql_literal(t.terminal_id), sql_literal(inst), sql_literal(role),
                sql_literal(prac), sql_literal(token_hash)))
        sets = [f"allow_same_level_referral = {'true' if allow_same_level else 'false'}"]
        for col, v in (("escalate_emergency_min", escalate_emergency_min),
                       ("escalate_urgent_min", escalate_urgent_min),
                       ("escalate_routine_min", escalate_routine_min),
                       ("no_show_grace_min", no_show_grace_min)):
            if v is not None:
                sets.append(f"{col} = {int(v)}")
        self.psql(f"""
BEGIN;
UPDATE communities SET {", ".join(sets)} WHERE community_id = {c};
INSERT INTO institutions (community_id, institution_id, name, level, in_network) VALUES
    ({c}, 'township-c', 'Township C Health Centre', 'township', true),
    ({c}, 'city-hospital', 'City Hospital', 'city', true),
    ({c}, 'outside-hospital', 'Provincial Hospital (outside)', 'city', false);
INSERT INTO departments (community_id, institution_id, department_id, name) VALUES
    ({c}, 'city-hospital', 'oncology', 'Oncology'),
    ({c}, 'outside-hospital', 'surgery', 'Surgery');
INSERT INTO practitioners (community_id, practitioner_id, institution_id, department_id,
                           name, kind) VALUES
    ({c}, 'fd-c', 'township-c', NULL, 'Family Doctor C', 'family_doctor'),
    ({c}, 'dr-sun', 'city-hospital', 'oncology', 'Dr Sun', 'expert');
INSERT INTO terminals (community_id, terminal_id, institution_id, role, practitioner_id,
                       token_hash) VALUES
    {",".join(rows)};
COMMIT;
""")

    _session = None

    def psql(self, sql):
        """Runs SQL in a psql kept open (a fresh psql per check would cost
        tens of milliseconds, and the tests check the tables a lot); returns
        the output like Postgres.psql. An error raises AssertionError with
        psql's message; the next call opens a new session."""
        if self._session is None or self._session.proc.poll() is not None:
            self._session = harness.PsqlSession(self.pg, self.dbname)
        sql = sql.strip()
        if not sql.endswith(";"):
            sql += ";"
        try:
            return "\n".join(self._session.run(sql, timeout=30)).strip()
        except AssertionError:
            self.close()
            raise

    def close(self):
        if self._session is not None:
            self._session.close()
            try:
                self._session.proc.stdin.close()    # left open when psql exited first
            except OSError:
                pass
            self._session = None

    def set(self, **columns):
        """Changes columns of the community's row (referral settings)."""
        def lit(v):
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, int):
                return str(v)
            return sql_literal(v)

        sets = ", ".join(f"{k} = {lit(v)}" for k, v in columns.items())
        self.psql(f"UPDATE communities SET {sets} "
                  f"WHERE community_id = {sql_literal(self.community_id)}")

    def today(self):
        """The community's local date (Asia/Shanghai), as the database sees it."""
        out = self.psql("SELECT (now() AT TIME ZONE c.timezone)::date FROM communities c "
                        f"WHERE c.community_id = {sql_literal(self.community_id)}")
        return datetime.date.fromisoformat(out)

    # -- reading state straight from the database
    def where(self, referral_id):
        return (f"community_id = {sql_literal(self.community_id)} "
                f"AND referral_id = {sql_literal(referral_id)}")

    def referral_row(self, referral_id):
        """The referral's row as a dict of strings (None for NULL), or None."""
        cols = ["state", "version", "urgency", "direction", "booking_id", "redirected_from",
                "redirected_to", "closes_referral", "escalated", "follow_up_overdue",
                "from_institution", "to_institution", "to_department", "patient_id"]
        out = self.psql(f"""
SELECT state, version, urgency, direction, coalesce(booking_id::text, '<null>'),
       coalesce(redirected_from::text, '<null>'), coalesce(redirected_to::text, '<null>'),
       coalesce(closes_referral::text, '<null>'), escalated_at IS NOT NULL,
       follow_up_overdue_at IS NOT NULL, from_institution, to_institution,
       coalesce(to_department, '<null>'), patient_id
  FROM referrals WHERE {self.where(referral_id)}""")
        if not out:
            return None
        row = {k: (None if v == "<null>" else v) for k, v in zip(cols, out.split("|"))}
        row["version"] = int(row["version"])
        row["escalated"] = row["escalated"] == "t"
        row["follow_up_overdue"] = row["follow_up_overdue"] == "t"
        return row

    def history_rows(self, referral_id):
        """(seq, action, from_state, to_state, terminal_id, role, reason) in seq order;
        NULLs as ''."""
        out = self.psql(f"""
SELECT seq, action, coalesce(from_state::text, ''), to_state, coalesce(terminal_id, ''), role,
       coalesce(reason, '')
  FROM referral_history WHERE {self.where(referral_id)} ORDER BY seq""")
        rows = []
        for line in out.splitlines():
            f = line.split("|", 6)
            rows.append((int(f[0]),) + tuple(f[1:]))
        return rows

    def history_actions(self, referral_id):
        return [r[1] for r in self.history_rows(referral_id)]

    def events(self, referral_id=None, after_seq=0):
        """(seq, kind, referral_id, state) of the community's events, in order."""
        where = f"community_id = {sql_literal(self.community_id)} AND seq > {int(after_seq)}"
        if referral_id is not None:
            where += f" AND referral_id = {sql_literal(referral_id)}"
        out = self.psql(f"SELECT seq, kind, coalesce(referral_id::text, ''), coalesce(state, '') "
                        f"FROM events WHERE {where} ORDER BY seq")
        return [(int(f[0]), f[1], f[2], f[3]) for f in
                (line.split("|") for line in out.splitlines())]

    def last_event_seq(self):
        out = self.psql("SELECT coalesce(max(last_seq), 0) FROM event_counters "
                        f"WHERE community_id = {sql_literal(self.community_id)}")
        return int(out)

    def patient_referrals(self, patient_id):
        """referral ids of the patient, oldest first."""
        out = self.psql(f"SELECT referral_id FROM referrals "
                        f"WHERE community_id = {sql_literal(self.community_id)} "
                        f"AND patient_id = {sql_literal(patient_id)} ORDER BY created_at")
        return out.split()

    def patient_bookings(self, patient_id):
        """(booking_id, session_id, pool, status, referral_id) of the patient."""
        out = self.psql(f"""
SELECT booking_id, session_id, pool, status, coalesce(referral_id::text, '')
  FROM bookings WHERE community_id = {sql_literal(self.community_id)}
   AND patient_id = {sql_literal(patient_id)} ORDER BY created_at""")
        return [tuple(line.split("|")) for line in out.splitlines()]

    def booking_status(self, booking_id):
        return self.psql(f"SELECT status FROM bookings WHERE community_id = "
                         f"{sql_literal(self.community_id)} AND booking_id = "
                         f"{sql_literal(booking_id)}")

    def key_count(self, terminal, key):
        return int(self.psql(
            f"SELECT count(*) FROM idempotency_keys WHERE community_id = "
            f"{sql_literal(self.community_id)} AND terminal_id = "
            f"{sql_literal(self.terminals[terminal].terminal_id)} "
            f"AND idem_key = {sql_literal(key)}"))

    def backdate(self, referral_id, minutes):
        """Moves the referral's creation (and last state change) into the past."""
        ago = f"interval '{int(minutes)} minutes'"
        self.psql(f"UPDATE referrals SET created_at = created_at - {ago}, "
                  f"state_changed_at = state_changed_at - {ago} "
                  f"WHERE {self.where(referral_id)}")

    def move_session_to_past(self, session_id, ended_minutes_ago, length_minutes=60):
        """Makes a (future) session and its bookings lie in the past: it ended
        ended_minutes_ago minutes ago."""
        end = f"now() - interval '{int(ended_minutes_ago)} minutes'"
        start = f"{end} - interval '{int(length_minutes)} minutes'"
        c = sql_literal(self.community_id)
        self.psql(f"""
BEGIN;
UPDATE sessions SET starts_at = {start}, ends_at = {end}, release_at = {start} - interval '1 day'
 WHERE community_id = {c} AND session_id = {int(session_id)};
UPDATE bookings SET period = tstzrange({start}, {end})
 WHERE community_id = {c} AND session_id = {int(session_id)};
COMMIT;""")


# ---- requests --------------------------------------------------------------------

def refer_up_request(patient_id, *, to="county-hospital", department="cardiology",
                     diagnosis="I21.0", reason="chest pain on exertion, suspected ACS",
                     urgency=pb.URGENCY_ROUTINE, session_id=0, pool=pb.POOL_AUTO,
                     fallback=False, wait_if_full=False, key=None, request_id=0):
    return pb.Request(request_id=request_id, refer_up=pb.ReferUp(
        patient_id=patient_id, to_institution=to, to_department=department,
        diagnosis=diagnosis, reason=reason, urgency=urgency, session_id=session_id, pool=pool,
        fallback_to_public=fallback, wait_if_full=wait_if_full,
        idempotency_key=new_key() if key is None else key))


def refer_down_request(patient_id, *, to="village-a", from_department="cardiology",
                       diagnosis="I21.0", reason="stable after PCI, continue rehabilitation",
                       care_plan="aspirin 100 mg daily; BP and lipids monthly",
                       follow_up_due=None, closes="", key=None, request_id=0):
    if follow_up_due is None:
        follow_up_due = (datetime.datetime.now(ss.SHANGHAI).date()
                         + datetime.timedelta(days=14)).isoformat()
    return pb.Request(request_id=request_id, refer_down=pb.ReferDown(
        patient_id=patient_id, to_institution=to, from_department=from_department,
        diagnosis=diagnosis, reason=reason, care_plan=care_plan, follow_up_due=follow_up_due,
        closes_referral_id=closes, idempotency_key=new_key() if key is None else key))


def action_request(referral_id, action, *, reason="", if_version=0, session_id=0,
                   to_institution="", to_department="", request_id=0):
    return pb.Request(request_id=request_id, referral_action=pb.ReferralAction(
        referral_id=referral_id, action=action, reason=reason, if_version=if_version,
        session_id=session_id, to_institution=to_institution, to_department=to_department))


def get_request(referral_id, request_id=0):
    return pb.Request(request_id=request_id, get_referral=pb.GetReferral(referral_id=referral_id))


def history_request(referral_id, request_id=0):
    return pb.Request(request_id=request_id, history=pb.GetHistory(referral_id=referral_id))


def worklist_request(request_id=0, **fields):
    return pb.Request(request_id=request_id, worklist=pb.Worklist(**fields))


def subscribe_request(after_seq=0, request_id=0):
    return pb.Request(request_id=request_id, subscribe=pb.Subscribe(after_seq=after_seq))


class ReferralClient(ss.SlotClient):
    """SlotClient with typed referral calls; each returns the Response."""

    def refer_up(self, patient_id, **kw):
        return self.call(refer_up_request(patient_id, **kw))

    def refer_down(self, patient_id, **kw):
        return self.call(refer_down_request(patient_id, **kw))

    def act(self, referral_id, action, **kw):
        return self.call(action_request(referral_id, action, **kw))

    def get(self, referral_id):
        return self.call(get_request(referral_id))

    def history(self, referral_id):
        return self.call(history_request(referral_id))

    def worklist(self, **fields):
        return self.call(worklist_request(**fields))

    def worklist_all(self, max_pages=100, **fields):
        """Every referral of the worklist, following the page tokens: a list
        of (Referral list per page)."""
        pages, token = [], ""
        for _ in range(max_pages):
            resp = self.worklist(page_token=token, **fields)
            if resp.HasField("error"):
                raise AssertionError(f"worklist {fields} failed: {resp}")
            if resp.WhichOneof("body") != "referrals":
                raise AssertionError(f"worklist {fields}: {resp}")
            pages.append(list(resp.referrals.referrals))
            token = resp.referrals.next_page_token
            if not token:
                return pages
        raise AssertionError("worklist page tokens do not end")


# ---- events --------------------------------------------------------------------------

class EventStream:
    """A connection subscribed to the referral events."""

    def __init__(self, port, terminal, after_seq, request_id=77):
        self.client = ReferralClient(port)
        hello = self.client.hello(terminal)
        if hello.WhichOneof("body") != "hello":
            raise AssertionError(f"hello failed: {hello}")
        self.request_id = request_id
        self.client.send(subscribe_request(after_seq, request_id=request_id))
        first = self.client.recv(timeout=10)
        self.subscribed = first
        self.seen = []

    @property
    def last_seq(self):
        return self.subscribed.subscribed.last_seq

    def next(self, timeout=10):
        """The next pushed Response (checked by the caller)."""
        resp = self.client.recv(timeout=timeout)
        self.seen.append(resp)
        return resp

    def take(self, n, timeout=10):
        """The next n pushed events (Event messages); fails on anything else."""
        out = []
        for _ in range(n):
            resp = self.next(timeout)
            if resp.request_id != self.request_id or resp.HasField("error") \
                    or resp.WhichOneof("body") != "event":
                raise AssertionError(f"expected an event for request {self.request_id}, "
                                     f"got {resp}; events so far {out}")
            out.append(resp.event)
        return out

    def quiet(self, seconds=0.5):
        """Asserts nothing more arrives within `seconds`."""
        try:
            resp = self.client.recv(timeout=seconds)
        except socket.timeout:
            return
        raise AssertionError(f"unexpected push: {resp}")

    def close(self):
        self.client.close()


# ---- the test base -------------------------------------------------------------------

class ReferralsTestCase(ss.SlotsTestCase):
    """A ReferralCommunity and one daemon per test class, on the shared
    cluster (or, with private_database, on a database of the class's own).

    Classes of a module with the same community_options share a community;
    own_community gives a class one of its own, for checks over the whole
    community (worklists of monitors, events)."""

    community_class = ReferralCommunity   # or a subclass that adds to it
    client_class = ReferralClient
    database_prefix = "referrals"

    def stream(self, name, after_seq=None, daemon=None):
        """A subscribed connection; after_seq defaults to the community's
        newest event number (nothing old is replayed)."""
        if after_seq is None:
            after_seq = self.community.last_event_seq()
        s = EventStream((daemon or self.daemon).port, self.community[name], after_seq)
        self.addCleanup(s.close)
        self.assertOk(s.subscribed, "subscribed")
        self.assertEqual(s.subscribed.request_id, s.request_id, s.subscribed)
        return s


    # -- referrals
    def assertReferral(self, resp, state=None):
        self.assertOk(resp, "referral")
        if state is not None:
            self.assertEqual(resp.referral.state, state, resp)
        return resp.referral

    def refer_up(self, clinic=None, patient=None, state="pending", **kw):
        """A new up-referral (from the "clinic" terminal by default); returns it."""
        c = clinic or self.authed("clinic")
        p = patient or self.community.patient()
        return self.assertReferral(c.refer_up(p, **kw), state)

    def refer_down(self, desk=None, patient=None, **kw):
        c = desk or self.authed("desk")
        p = patient or self.community.patient()
        return self.assertReferral(c.refer_down(p, **kw), "pending")

    def move(self, client, ref, action, state, **kw):
        """One move that must succeed: the answer is the referral in `state`,
        one version further, with exactly one more history entry (naming
        the action). Returns the new Referral."""
        before = self.community.history_rows(ref.referral_id)
        resp = client.act(ref.referral_id, action, **kw)
        got = self.assertReferral(resp, state)
        self.assertEqual(got.referral_id, ref.referral_id)
        self.assertEqual(got.version, ref.version + 1, f"version after {action}: {got}")
        after = self.community.history_rows(ref.referral_id)
        self.assertEqual(after[:len(before)], before, "history is append-only")
        self.assertEqual(len(after), len(before) + 1, f"history after {action}: {after}")
        name = pb.Action.Name(action)[len("ACTION_"):].lower()
        self.assertEqual(after[-1][1:4], (name, ref.state, state), after[-1])
        row = self.community.referral_row(ref.referral_id)
        self.assertEqual((row["state"], row["version"]), (state, got.version))
        return got

    def assertRefused(self, client, ref, action, code, field, **kw):
        """A move that must be refused, changing nothing; returns the error."""
        before_row = self.community.referral_row(ref.referral_id)
        before_hist = self.community.history_rows(ref.referral_id)
        resp = client.act(ref.referral_id, action, **kw)
        self.assertError(resp, code, field=field)
        self.assertEqual(self.community.referral_row(ref.referral_id), before_row)
        self.assertEqual(self.community.history_rows(ref.referral_id), before_hist)
        return resp.error


def random_id():
    return str(uuid.uuid4())
