#!/usr/bin/python3
"""Soak run: referrald under a mixed workload for a chosen time, with faults
injected at random; see docs/reliability.md.

    scripts/soak.py --minutes 10              # after a build in build/
    scripts/soak.py --seconds 60 --seed 7 --build build-asan

Starts a PostgreSQL cluster of its own (fsync and synchronous_commit on), a
community and the daemon. Clinics search, book, cancel their bookings and
refer patients up; the hospital desk works its worklist (accept with a slot,
no slot yet, reject, return) and publishes sessions; the daemon's timer
releases reserved capacity. Every write that may be retried carries an
idempotency key, and every request whose answer is lost or transient is sent
again, as a client must (docs/protocol.md §5.3). Meanwhile, at random: kill -9
of the daemon (restarted on the same port), PostgreSQL restarted (fast or
immediate), the daemon's database connections terminated, the clients'
connections dropped with a request in flight.

At the end the database is compared with what the clients were told, and the
run prints requests sent, acknowledged, retried, lost, duplicated, overbooked
sessions and the daemon's peak memory. Exit status 1 when anything was lost
or duplicated, a session is overbooked, or an answer was wrong.
"""

import argparse
import collections
import os
import platform
import random
import secrets
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--build", default=os.path.join(ROOT, "build"),
                   help="build directory with referrald and the generated Python code")
    p.add_argument("--clinics", type=int, default=6, help="clinic clients (default 6)")
    p.add_argument("--fault-every", type=float, nargs=2, default=(8.0, 25.0),
                   metavar=("MIN", "MAX"), help="seconds between faults (default 8 25)")
    p.add_argument("--no-faults", action="store_true")
    args = p.parse_args()
    if args.minutes is not None:
        args.seconds = args.minutes * 60
    args.build = os.path.abspath(args.build)
    return args


ARGS = parse_args()
# harness.py reads where things are from the environment when imported.
os.environ.setdefault("REFERRALD", os.path.join(ARGS.build, "referrald"))
os.environ.setdefault("REFERRAL_PY_DIR", os.path.join(ARGS.build, "tests", "integration", "python"))
os.environ.setdefault("REFERRAL_TEST_TMP", os.path.join(ARGS.build, "soak"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402
from harness import pb  # noqa: E402
import load_support as ls  # noqa: E402
import referrals_support as rs  # noqa: E402
import slots_support as ss  # noqa: E402

E = pb.ErrorCode
# Answers no fault excuses: the soak only sends well-formed, permitted requests.
WRONG = {E.INTERNAL, E.INVALID_ARGUMENT, E.UNAUTHENTICATED, E.MALFORMED, E.FRAME_TOO_LARGE,
         E.UNIMPLEMENTED, E.VERSION_MISMATCH, E.PERMISSION_DENIED, E.ERROR_NONE}
CLINICS = ("clinic", "clinic-b", "clinic-c")


class Soak(ls.Tally):
    """What every client shares: the daemon, the counters, the records of
    what the clients were told."""

    def __init__(self, daemon, community, sessions, patients, deadline):
        super().__init__()
        self.daemon = daemon
        self.community = community
        self.sessions = list(sessions)
        self.patients = patients
        self.deadline = deadline       # by when every request must be settled
        self.refusals = collections.Counter()
        self.stopping = threading.Event()
        self.drop_generation = 0       # bumped: every client drops its connection once
        # What the clients were told.
        self.booked = {}               # Book key -> booking_id
        self.cancelled = set()         # booking ids whose cancellation was acknowledged
        self.referred = {}             # ReferUp key -> referral_id
        self.moves = set()             # (referral_id, action) acknowledged
        self.moves_inferred = set()    # ... found made after a lost answer
        self.unresolved = 0

    def link(self, terminal):
        """A Link of the terminal that drops its connection, with a request
        in flight, once after every "client connections dropped" fault."""
        seen = [self.drop_generation]

        def drop():
            if seen[0] == self.drop_generation:
                return False
            seen[0] = self.drop_generation
            return True

        return ls.Link(self.daemon, terminal, self, retry_cap=0.2, drop=drop)

    def settle(self, link, req):
        """link.settle() until the run's deadline; counts the outcome."""
        resp, attempts = link.settle(req, self.deadline)
        with self.lock:
            if resp is None:
                self.unresolved += 1
                return None, attempts
            self.counts["acknowledged"] += 1
            if resp.HasField("error") and resp.error.code not in WRONG:
                self.refusals[(req.WhichOneof("body"), pb.ErrorCode.Name(resp.error.code))] += 1
        if resp.HasField("error") and resp.error.code in WRONG:
            self.record_wrong(req.WhichOneof("body"), resp)
        return resp, attempts


class Clinic(threading.Thread):
    """A family doctor's terminal: search, book, cancel, refer up, list."""

    def __init__(self, soak, terminal, seed):
        super().__init__(daemon=True)
        self.soak = soak
        self.link = soak.link(terminal)
        self.rng = random.Random(seed)
        self.live = []      # bookings of ours, acknowledged and not cancelled
        self.error = None

    def run(self):
        try:
            while not self.soak.stopping.is_set():
                self.step()
                time.sleep(self.rng.uniform(0, 0.01))
        except Exception as e:   # reported at the end
            self.error = repr(e)
        finally:
            self.link.close()

    def step(self):
        r = self.rng.random()
        if r < 0.30:
            self.search()
        elif r < 0.62:
            self.book()
        elif r < 0.77 and self.live:
            self.cancel()
        elif r < 0.95:
            self.refer()
        else:
            req = pb.Request(list_bookings=pb.ListBookings(page_size=50))
            self.soak.settle(self.link, req)

    def search(self):
        req = ss.search_request(resource_id="dr-wang", until=ss.future(days=60), page_size=50,
                                only_available=True)
        resp, _ = self.soak.settle(self.link, req)
        if resp is not None and not resp.HasField("error") and \
                resp.WhichOneof("body") != "sessions":
            self.soak.record_wrong("search", resp)

    def book(self):
        soak = self.soak
        key = f"soak-book-{secrets.token_hex(8)}"
        req = ss.book_request(self.rng.choice(soak.sessions), self.rng.choice(soak.patients),
                              fallback=True, key=key)
        resp, _ = soak.settle(self.link, req)
        if resp is None or resp.HasField("error"):
            return
        if resp.WhichOneof("body") != "booking":
            soak.record_wrong("book", resp)
            return
        with soak.lock:
            soak.booked[key] = resp.booking.booking_id
        self.live.append(resp.booking.booking_id)

    def cancel(self):
        booking = self.live.pop(self.rng.randrange(len(self.live)))
        resp, _ = self.soak.settle(self.link, ss.cancel_request(booking, "soak"))
        if resp is None:
            return
        if resp.HasField("error") or resp.booking.status != "cancelled":
            self.soak.record_wrong("cancel", resp)
            return
        with self.soak.lock:
            self.soak.cancelled.add(booking)

    def refer(self):
        key = f"soak-ref-{secrets.token_hex(8)}"
        req = rs.refer_up_request(self.rng.choice(self.soak.patients), key=key)
        resp, _ = self.soak.settle(self.link, req)
        if resp is None or resp.HasField("error"):
            return
        with self.soak.lock:
            self.soak.referred[key] = resp.referral.referral_id


class Desk(threading.Thread):
    """The county hospital's referral desk: works the worklist, publishes."""

    MOVES = {
        "pending": [(pb.ACTION_ACCEPT, 0.5), (pb.ACTION_NO_SLOT, 0.25), (pb.ACTION_REJECT, 0.25)],
        "waiting_slot": [(pb.ACTION_ACCEPT, 0.7), (pb.ACTION_RETURN, 0.3)],
    }
    TARGET = {pb.ACTION_ACCEPT: "accepted", pb.ACTION_NO_SLOT: "waiting_slot",
              pb.ACTION_REJECT: "rejected", pb.ACTION_RETURN: "returned"}

    def __init__(self, soak, terminal, seed, next_start):
        super().__init__(daemon=True)
        self.soak = soak
        self.link = soak.link(terminal)
        self.rng = random.Random(seed)
        self.next_start = next_start
        self.error = None

    def run(self):
        try:
            while not self.soak.stopping.is_set():
                if self.rng.random() < 0.1:
                    self.publish()
                else:
                    self.work()
                time.sleep(self.rng.uniform(0, 0.02))
        except Exception as e:
            self.error = repr(e)
        finally:
            self.link.close()

    def publish(self):
        start = self.next_start
        self.next_start += ss.HOUR
        req = ss.publish_request(capacity=self.rng.randint(10, 30),
                                 times=[(start, start + ss.HOUR)])
        resp, _ = self.soak.settle(self.link, req)
        if resp is not None and not resp.HasField("error"):
            with self.soak.lock:
                self.soak.sessions += [s.session_id for s in resp.publish.sessions]

    def work(self):
        state = self.rng.choice(["pending", "waiting_slot"])
        req = rs.worklist_request(state=state, direction=pb.DIRECTION_UP, page_size=20)
        resp, _ = self.soak.settle(self.link, req)
        if resp is None or resp.HasField("error") or not resp.referrals.referrals:
            return
        ref = self.rng.choice(list(resp.referrals.referrals))
        moves = self.MOVES[ref.state]
        action = self.rng.choices([m for m, _ in moves], [w for _, w in moves])[0]
        session = self.rng.choice(self.soak.sessions) if action == pb.ACTION_ACCEPT else 0
        req = rs.action_request(ref.referral_id, action, reason="soak", if_version=ref.version,
                                session_id=session)
        resp, attempts = self.soak.settle(self.link, req)
        if resp is None:
            return
        name = pb.Action.Name(action)[len("ACTION_"):].lower()
        move = (ref.referral_id, name)
        if not resp.HasField("error"):
            if resp.referral.state != self.TARGET[action]:
                self.soak.record_wrong("referral_action", resp)
            with self.soak.lock:
                self.soak.moves.add(move)
        elif attempts > 1 and self.made_before(ref, name):
            # The first attempt was made; its answer was lost, and the retry
            # met the referral moved on (by us).
            with self.soak.lock:
                self.soak.moves_inferred.add(move)

    def made_before(self, ref, action):
        resp, _ = self.soak.settle(self.link, rs.history_request(ref.referral_id))
        if resp is None or resp.HasField("error"):
            return False
        return any(e.action == action and e.from_state == ref.state and
                   e.terminal_id == self.link.terminal.terminal_id for e in resp.history.entries)


class Faults:
    """Faults at random, injected from the main thread: a daemon started
    from a thread would be killed when that thread ends (the harness asks
    for SIGKILL on its parent's death, and the parent is the thread)."""

    KINDS = ("daemon kill -9", "database restart (fast)", "database restart (immediate)",
             "database connections terminated", "client connections dropped")

    def __init__(self, soak, pg, rng, every):
        self.soak = soak
        self.pg = pg
        self.rng = rng
        self.every = every
        self.done = collections.Counter()
        self.round = []

    def next_delay(self):
        return self.rng.uniform(*self.every)

    def inject(self):
        # Every kind once per round, in a random order: a run of a few
        # minutes sees each of them.
        if not self.round:
            self.round = self.rng.sample(self.KINDS, len(self.KINDS))
        kind = self.round.pop()
        log(f"fault: {kind}")
        d = self.soak.daemon
        if kind == "daemon kill -9":
            memory.note(d.pid)
            d.crash()
            time.sleep(self.rng.uniform(0, 1))
            d.restart()
            memory.watch(d.pid)
        elif kind.startswith("database restart"):
            self.pg.pgstop("fast" if "fast" in kind else "immediate")
            time.sleep(self.rng.uniform(0, 2))
            self.pg.pgstart()
        elif kind == "database connections terminated":
            self.pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                         "WHERE application_name = 'referrald'")
        else:
            with self.soak.lock:
                self.soak.drop_generation += 1
        self.done[kind] += 1


class Memory(threading.Thread):
    """The daemon's peak memory (VmHWM), over every process it has been."""

    def __init__(self):
        super().__init__(daemon=True)
        self.pid = None
        self.peak_kib = 0
        self.lock = threading.Lock()

    def watch(self, pid):
        with self.lock:
            self.pid = pid

    def note(self, pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        with self.lock:
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
        except OSError:
            pass

    def run(self):
        while True:
            with self.lock:
                pid = self.pid
            if pid:
                self.note(pid)
            time.sleep(0.5)


memory = Memory()


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


# ---- the end: the database against what the clients were told --------------------------

def rows(community, sql):
    return [line.split("|") for line in community.psql(sql).splitlines() if line]


def verify(soak, desk_terminal):
    """(lost, duplicated, overbooked, details)."""
    c = harness.sql_literal(soak.community.community_id)
    clinics = ",".join(harness.sql_literal(soak.community[n].terminal_id) for n in CLINICS)
    desk = harness.sql_literal(desk_terminal.terminal_id)
    comm = soak.community
    comm.close()   # its psql session may have died with a database restart
    keys = {k: (o, b) for k, o, b in rows(comm, f"""
        SELECT idem_key, coalesce(outcome, ''), coalesce(booking_id::text, referral_id::text, '')
          FROM idempotency_keys WHERE community_id = {c} AND terminal_id IN ({clinics})""")}
    bookings = {b: (s, t, r) for b, s, t, r in rows(comm, f"""
        SELECT booking_id, status, booked_by_terminal, coalesce(referral_id::text, '')
          FROM bookings WHERE community_id = {c}""")}
    referrals = {r for (r,) in rows(comm, f"""
        SELECT referral_id FROM referrals WHERE community_id = {c}
           AND from_terminal IN ({clinics}) AND redirected_from IS NULL""")}
    history = collections.Counter((r, a) for r, a in rows(comm, f"""
        SELECT referral_id, action FROM referral_history
         WHERE community_id = {c} AND terminal_id = {desk}"""))
    lost, duplicated, details = 0, 0, []

    def problem(kind, text):
        nonlocal lost, duplicated
        if kind == "lost":
            lost += 1
        else:
            duplicated += 1
        details.append(f"{kind}: {text}")

    for key, bid in soak.booked.items():
        want = "cancelled" if bid in soak.cancelled else "booked"
        if keys.get(key) != ("booked", bid):
            problem("lost", f"key {key} acknowledged with {bid}, the key says {keys.get(key)}")
        if bookings.get(bid, ("missing",))[0] != want:
            problem("lost", f"booking {bid} acknowledged {want}, is "
                            f"{bookings.get(bid, ('missing',))[0]}")
    acked_bookings = collections.Counter(soak.booked.values())
    for bid, n in acked_bookings.items():
        if n > 1:
            problem("duplicated", f"booking {bid} acknowledged for {n} keys")
    accepted = soak.moves | soak.moves_inferred
    for bid, (status, terminal, referral) in bookings.items():
        if terminal == desk_terminal.terminal_id:
            if (referral, "accept") not in accepted:
                problem("duplicated", f"booking {bid} for referral {referral} by no acknowledged "
                                      "accept")
        elif bid not in acked_bookings:
            problem("duplicated", f"booking {bid} ({status}) that no client was told about")
    for key, rid in soak.referred.items():
        if keys.get(key) != ("made", rid) or rid not in referrals:
            problem("lost", f"referral {rid} (key {key}) acknowledged; the database has "
                            f"{keys.get(key)}")
    for rid in referrals - set(soak.referred.values()):
        problem("duplicated", f"referral {rid} that no client was told about")
    for move in soak.moves:
        if history[move] != 1:
            problem("lost" if history[move] == 0 else "duplicated",
                    f"move {move} acknowledged, recorded {history[move]} times")
    for move, n in history.items():
        if move not in accepted:
            problem("duplicated", f"move {move} recorded {n} times, never acknowledged")
    overbooked = comm.invariant_violations()
    details += [f"session counters: {v}" for v in overbooked]
    return lost, duplicated, len(overbooked), details


def setup(pg, rng, duration):
    community = rs.ReferralCommunity(pg, "soak")
    patients = community.patients(3000)
    daemon = harness.Daemon(pg.dsn(), name="soak", settings={
        "db_pool_size": "4", "log_level": "info", "release_interval_ms": "1000",
        "handshake_timeout_ms": "30000"})
    daemon.start()
    memory.watch(daemon.pid)
    first = ss.future(days=2, hour=0)
    with ss.SlotClient(daemon.port) as desk:
        resp = desk.hello(community["desk"])
        assert not resp.HasField("error"), resp
        resp = desk.publish(capacity=20, times=[(first + i * ss.HOUR, first + (i + 1) * ss.HOUR)
                                                for i in range(80)])
        assert not resp.HasField("error"), resp
        sessions = [s.session_id for s in resp.publish.sessions]
    # A third of them release their reserved share during the run.
    community.set_release_at(sessions[::3],
                             f"now() + random() * interval '{max(1, int(duration))} seconds'")
    return community, patients, daemon, sessions, first + 80 * ss.HOUR


def main():
    seed = ARGS.seed if ARGS.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    log(f"soak for {ARGS.seconds:.0f} s, seed {seed}, build {ARGS.build}")
    pg = harness.Postgres.private(harness.DURABLE_PG_OPTS)
    daemon = None
    try:
        community, patients, daemon, sessions, next_start = setup(pg, rng, ARGS.seconds)
        log(f"daemon pid {daemon.pid} on port {daemon.port}, log {daemon.log_path}")
        soak = Soak(daemon, community, sessions, patients,
                    deadline=time.monotonic() + ARGS.seconds + 180)
        memory.start()
        clients = [Clinic(soak, community[CLINICS[i % len(CLINICS)]], rng.random())
                   for i in range(ARGS.clinics)]
        desk = Desk(soak, community["desk"], rng.random(), next_start)
        faults = Faults(soak, pg, rng, ARGS.fault_every)
        for t in clients + [desk]:
            t.start()
        now = time.monotonic()
        end, next_fault, next_report = now + ARGS.seconds, now + faults.next_delay(), now + 10
        while (now := time.monotonic()) < end:
            if not ARGS.no_faults and now >= next_fault:
                faults.inject()
                next_fault = time.monotonic() + faults.next_delay()
            if now >= next_report:
                next_report = now + 10
                with soak.lock:
                    log(f"{soak.counts['sent']} sent, {soak.counts['acknowledged']} "
                        f"acknowledged, {soak.counts['retried']} retried")
            time.sleep(0.1)
        soak.stopping.set()
        for t in clients + [desk]:
            t.join(ARGS.seconds + 240)
        memory.note(daemon.pid)
        lost, duplicated, overbooked, details = verify(soak, community["desk"])
        errors = [t.error for t in clients + [desk] if t.error]
        releases = community.releases()
        daemon.stop()
    finally:
        if daemon is not None:
            daemon.kill()
        pg.remove()
    st = soak.counts
    print()
    print(f"machine              {platform.node()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"duration             {ARGS.seconds:.0f} s, seed {seed}")
    print(f"faults               {sum(faults.done.values())}: " +
          ", ".join(f"{k} {v}" for k, v in sorted(faults.done.items())))
    print(f"requests sent        {st['sent']}")
    print(f"acknowledged         {st['acknowledged']}")
    print(f"retried              {st['retried']} ({st['unavailable']} unavailable, "
          f"{st['overloaded']} overloaded, {st['transient conflicts']} transient conflicts, "
          f"{st['answers lost']} answers lost, {st['dropped by the client']} dropped by the client)")
    print(f"writes acknowledged  {len(soak.booked)} bookings, {len(soak.cancelled)} cancellations, "
          f"{len(soak.referred)} referrals, {len(soak.moves)} desk moves "
          f"(+{len(soak.moves_inferred)} found made after a lost answer), "
          f"{len(releases)} releases")
    print(f"definite refusals    " + ", ".join(f"{b} {c} {n}" for (b, c), n in
                                                sorted(soak.refusals.items())))
    print(f"lost                 {lost}")
    print(f"duplicated           {duplicated}")
    print(f"overbooked sessions  {overbooked}")
    print(f"wrong answers        {len(soak.wrong)}")
    print(f"unresolved           {soak.unresolved}")
    print(f"daemon peak memory   {memory.peak_kib / 1024:.1f} MiB (VmHWM)")
    for line in (details + soak.wrong + errors)[:40]:
        print(f"  {line}")
    bad = lost or duplicated or overbooked or soak.wrong or soak.unresolved or errors
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
