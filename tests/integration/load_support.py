"""Load and faults for the reliability tests (test_reliability_*.py) and
scripts/soak.py.

On top of harness.py and slots_support.py:
  * BookingLoad: client threads that book, each booking with an idempotency
    key of its own. A key whose answer is lost or transient (UNAVAILABLE,
    OVERLOADED, a CONFLICT without a field, a dropped connection, a timeout,
    a daemon that is not there) is sent again with the same key until it has
    a definite answer, as docs/protocol.md §5.3 tells clients to. Every
    answer is classified; one that no fault can excuse is recorded as wrong.
  * exactly_once_problems: the database against what the clients were told.
  * LatencyProbe: a client timing one request again and again, for a
    baseline and a comparison taken in the same test.
  * Flood: connections that keep many requests in flight each, as fast as
    the daemon answers them.
"""

import collections
import itertools
import random
import secrets
import selectors
import socket
import struct
import threading
import time

import harness
from harness import pb, sql_literal
import slots_support as ss

E = pb.ErrorCode

# Answers that say "not now, the outcome (if any) is safe to ask again for".
RETRYABLE = {E.UNAVAILABLE, E.OVERLOADED}
# Definite refusals a Book may meet in a load without anything being wrong.
BOOK_REFUSALS = {(E.FULL, "session_id"), (E.CONFLICT, "patient_id")}


def median(xs):
    s = sorted(xs)
    if not s:
        raise AssertionError("no samples")
    return s[len(s) // 2]


def steady_latency(samples, chunks=3):
    """The lowest of the medians of `chunks` consecutive runs of samples: a
    burst of noise from a busy machine spoils one run, a daemon that waits
    on someone spoils them all."""
    n = len(samples) // chunks
    return min(median(samples[i * n:(i + 1) * n]) for i in range(chunks))


class Tally:
    """Counters and wrong answers, shared by client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.wrong = []          # answers no fault excuses

    def count(self, name):
        with self.lock:
            self.counts[name] += 1

    def record_wrong(self, what, resp):
        with self.lock:
            self.wrong.append(f"{what}: {resp}".replace("\n", " ")[:400])


class Link:
    """One terminal's connection that settles requests: a request whose
    answer is lost (timeout, closed connection) or transient (UNAVAILABLE,
    OVERLOADED, CONFLICT without a field) is sent again, unchanged, on a new
    connection when the old one is gone, until its answer is definite.

    daemon: a harness.Daemon; its port is read at every connect, so it may
    be restarted (on the same port) meanwhile. retry_cap: the longest pause
    before a retry (the daemon's retry_after_ms is honoured up to it). drop:
    optional; when drop() is true right after a send, the connection is
    dropped without reading the answer (a fault the soak run injects).
    Counts into tally: connects, sent, retried, unavailable, overloaded,
    transient conflicts, answers lost, dropped by the client."""

    def __init__(self, daemon, terminal, tally, *, request_timeout=10.0, retry_cap=0.1,
                 drop=None):
        self.daemon = daemon
        self.terminal = terminal
        self.tally = tally
        self.request_timeout = request_timeout
        self.retry_cap = retry_cap
        self.drop = drop
        self.client = None

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def _pause(self, retry_after_ms=0):
        cap = self.retry_cap
        wait = min(cap, retry_after_ms / 1000) if retry_after_ms else cap / 2
        time.sleep(wait * random.uniform(0.5, 1.0))

    def _connect(self):
        """A connection that completed Hello, or None (after a pause)."""
        self.tally.count("connects")
        try:
            c = ss.SlotClient(self.daemon.port, timeout=self.request_timeout)
        except OSError:
            self._pause()
            return None
        try:
            resp = c.hello(self.terminal)
        except (OSError, harness.ConnectionClosed, AssertionError):
            c.close()
            self._pause()
            return None
        if resp.HasField("error"):
            c.close()
            if resp.error.code not in RETRYABLE:
                self.tally.record_wrong("hello", resp)
            self._pause(resp.error.retry_after_ms)
            return None
        return c

    def _lost(self, what="answers lost"):
        self.tally.count(what)
        self.close()
        self._pause()

    def settle(self, req, deadline):
        """(the definite answer, attempts), or (None, attempts) when the
        time.monotonic() deadline passed first."""
        attempts = 0
        while time.monotonic() < deadline:
            if self.client is None:
                self.client = self._connect()
                if self.client is None:
                    continue
            req.request_id = 0     # a fresh id per attempt
            self.tally.count("sent")
            if attempts:
                self.tally.count("retried")
            attempts += 1
            try:
                rid = self.client.send(req)
                if self.drop is not None and self.drop():
                    self._lost("dropped by the client")
                    continue
                resp = self.client.recv(timeout=self.request_timeout / harness.SLOW)
            except (OSError, harness.ConnectionClosed):
                self._lost()         # outcome unknown
                continue
            if resp.request_id != rid:
                # request_id 0: the connection is being closed under us.
                if resp.request_id != 0:
                    self.tally.record_wrong("answer to another request", resp)
                self._lost()
                continue
            if resp.HasField("error"):
                code = resp.error.code
                if code in RETRYABLE:
                    self.tally.count("unavailable" if code == E.UNAVAILABLE else "overloaded")
                    self._pause(resp.error.retry_after_ms)
                    continue
                if code == E.CONFLICT and resp.error.field == "":
                    self.tally.count("transient conflicts")
                    continue
            return resp, attempts
        return None, attempts


class Job:
    __slots__ = ("key", "session_id", "patient_id", "terminal_id")

    def __init__(self, key, session_id, patient_id):
        self.key = key
        self.session_id = session_id
        self.patient_id = patient_id
        self.terminal_id = None


class BookingLoad(Tally):
    """Worker threads, one per terminal given, booking the jobs (session,
    patient) one key each, each key settled through a Link.

    give_up: seconds after which a key without a definite answer is recorded
    as unresolved (a failure of the test). start(), then finish() (no new
    keys; the keys started are settled). Results: booked (key ->
    booking_id), refused (key -> (code name, field)), wrong, unresolved,
    counts."""

    def __init__(self, daemon, terminals, jobs, *, pace=0.0, request_timeout=10.0,
                 retry_cap=0.1, give_up=90.0, fallback=True):
        super().__init__()
        self.daemon = daemon
        self.terminals = list(terminals)
        tag = secrets.token_hex(4)
        self.jobs = collections.deque(Job(f"load-{tag}-{i}", s, p)
                                      for i, (s, p) in enumerate(jobs))
        self.pace = pace
        self.request_timeout = request_timeout * harness.SLOW
        self.retry_cap = retry_cap
        self.give_up = give_up * harness.SLOW
        self.fallback = fallback
        self.stop_new = threading.Event()
        self.started = {}        # key -> Job, every key sent at least once
        self.booked = {}         # key -> booking_id of the first acknowledgement
        self.refused = {}        # key -> (code name, field)
        self.replayed_first = 0  # keys whose first acknowledgement was a replay
        self.unresolved = []     # keys given up on
        self.errors = []         # exceptions in the workers
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True)
                        for t in self.terminals]

    # -- control
    def start(self):
        for t in self.threads:
            t.start()
        return self

    @property
    def definite(self):
        """Keys settled so far."""
        with self.lock:
            return len(self.booked) + len(self.refused)

    def wait_settled(self, n, timeout=60, what=None):
        """Waits until n keys in all are settled."""
        harness.wait_for(lambda: self.definite >= n or self.errors, timeout, interval=0.02,
                         what=what or f"{n} keys settled")
        if self.errors:
            raise AssertionError(f"load worker failed: {self.errors[0]}")

    def finish(self, timeout=None, every_job=False):
        """No new keys (every_job: the remaining jobs too); waits for the
        keys in progress to be settled."""
        if not every_job:
            self.stop_new.set()
        deadline = time.monotonic() + (timeout or self.give_up + 30)
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()]
        if alive:
            raise AssertionError(f"{len(alive)} load worker(s) still busy")
        if self.errors:
            raise AssertionError(f"load worker failed: {self.errors[0]}")
        return self

    def summary(self):
        c = self.counts
        return (f"{len(self.started)} keys: {len(self.booked)} booked, {len(self.refused)} "
                f"refused, {len(self.unresolved)} unresolved, {len(self.wrong)} wrong; "
                f"{c['sent']} requests, {c['retried']} retries ({c['unavailable']} unavailable, "
                f"{c['overloaded']} overloaded, {c['transient conflicts']} transient conflicts, "
                f"{c['answers lost']} answers lost), {c['connects']} connects, "
                f"{self.replayed_first} acknowledged first by a replay")

    # -- the workers
    def _next_job(self):
        if self.stop_new.is_set():
            return None
        with self.lock:
            if not self.jobs:
                return None
            job = self.jobs.popleft()
            self.started[job.key] = job
            return job

    def _run(self, terminal):
        link = Link(self.daemon, terminal, self, request_timeout=self.request_timeout,
                    retry_cap=self.retry_cap)
        try:
            while (job := self._next_job()) is not None:
                job.terminal_id = terminal.terminal_id
                req = ss.book_request(job.session_id, job.patient_id, fallback=self.fallback,
                                      key=job.key)
                resp, _ = link.settle(req, time.monotonic() + self.give_up)
                if resp is None:
                    with self.lock:
                        self.unresolved.append(job.key)
                else:
                    self._record(job, resp)
                if self.pace:
                    time.sleep(self.pace)
        except Exception as e:          # reported by finish()
            self.errors.append(repr(e))
        finally:
            link.close()

    def _record(self, job, resp):
        """Records a key's definite answer."""
        if not resp.HasField("error"):
            if resp.WhichOneof("body") != "booking" or not resp.booking.booking_id:
                self.record_wrong(f"book {job.key}: not a booking", resp)
                return
            with self.lock:
                self.booked[job.key] = resp.booking.booking_id
                if resp.booking.replayed:
                    self.replayed_first += 1
            return
        code, field = resp.error.code, resp.error.field
        if (code, field) in BOOK_REFUSALS:
            with self.lock:
                self.refused[job.key] = (pb.ErrorCode.Name(code), field)
        else:
            self.record_wrong(f"book {job.key}", resp)

    # -- checks
    def replay_problems(self, sample=20):
        """Sends a sample of settled keys again, once each, on a fresh
        connection: each must be answered exactly as the first time."""
        problems = []
        keys = random.sample(sorted(self.booked), min(sample, len(self.booked)))
        keys += random.sample(sorted(self.refused), min(sample // 2, len(self.refused)))
        by_terminal = collections.defaultdict(list)
        for k in keys:
            by_terminal[self.started[k].terminal_id].append(self.started[k])
        for t in self.terminals:
            jobs = by_terminal.get(t.terminal_id)
            if not jobs:
                continue
            with ss.SlotClient(self.daemon.port) as c:
                resp = c.hello(t)
                if resp.HasField("error"):
                    return [f"hello for the replay check: {resp}"]
                for job in jobs:
                    resp = c.book(job.session_id, job.patient_id, fallback=self.fallback,
                                  key=job.key)
                    if job.key in self.booked:
                        if (resp.HasField("error") or
                                resp.booking.booking_id != self.booked[job.key] or
                                not resp.booking.replayed):
                            problems.append(f"replay of {job.key} (booked "
                                            f"{self.booked[job.key]}): {resp}")
                    elif (not resp.HasField("error") or
                          (pb.ErrorCode.Name(resp.error.code), resp.error.field)
                          != self.refused[job.key]):
                        problems.append(f"replay of {job.key} (refused "
                                        f"{self.refused[job.key]}): {resp}")
        return problems


def exactly_once_problems(community, load):
    """What the database holds against what the load's clients were told;
    [] when every acknowledged booking is there exactly once, nothing else
    was booked, no key is unsettled and no session is overbooked."""
    c = sql_literal(community.community_id)
    terminals = ",".join(sql_literal(t.terminal_id) for t in load.terminals)
    keys = {}
    for line in community.psql(
            f"SELECT idem_key, coalesce(outcome, ''), coalesce(booking_id::text, '') "
            f"FROM idempotency_keys WHERE community_id = {c} "
            f"AND terminal_id IN ({terminals})").splitlines():
        k, outcome, bid = line.split("|")
        keys[k] = (outcome, bid)
    bookings = {}
    for line in community.psql(f"SELECT booking_id, status FROM bookings "
                               f"WHERE community_id = {c}").splitlines():
        bid, status = line.split("|")
        bookings[bid] = status
    problems = []
    for key, bid in sorted(load.booked.items()):
        if keys.get(key) != ("booked", bid):
            problems.append(f"key {key} was acknowledged with booking {bid}; "
                            f"the database's key says {keys.get(key)}")
        if bookings.get(bid) != "booked":
            problems.append(f"acknowledged booking {bid} (key {key}) is "
                            f"{bookings.get(bid, 'missing')}")
    for key, (code, _) in sorted(load.refused.items()):
        if keys.get(key, ("",))[0] == "booked":
            problems.append(f"key {key} was refused {code} but booked {keys[key][1]}")
    acked = collections.Counter(load.booked.values())
    problems += [f"booking {b} acknowledged for {n} keys" for b, n in acked.items() if n > 1]
    problems += [f"booking {b} ({s}) that no client was told about"
                 for b, s in sorted(bookings.items()) if b not in acked]
    problems += [f"key {k} never settled" for k in load.unresolved]
    problems += [f"wrong answer: {w}" for w in load.wrong]
    problems += [f"session counters: {v}" for v in community.invariant_violations()]
    return problems


def publish(desk_client, count, capacity, start_days=3):
    """count one-hour sessions of dr-wang, an hour apart; returns their ids."""
    start = ss.future(days=start_days, hour=1)
    resp = desk_client.publish(capacity=capacity,
                               times=[(start + i * ss.HOUR, start + (i + 1) * ss.HOUR)
                                      for i in range(count)])
    if resp.HasField("error"):
        raise AssertionError(f"publish failed: {resp}")
    return [s.session_id for s in resp.publish.sessions]


def round_robin_load(test, daemon, community, workers, sessions, capacity, patients=2000,
                     pace=0.0):
    """Publishes `sessions` sessions of `capacity` through the community's desk
    and starts a BookingLoad of `patients` bookings over them in turn (so every
    one fills up) from the `workers` terminals, stopped at the test's cleanup.
    Returns the session ids and the load."""
    with ss.SlotClient(daemon.port) as desk:
        test.assertOk(desk.hello(community["desk"]), "hello")
        ids = publish(desk, sessions, capacity)
    jobs = [(ids[i % sessions], p) for i, p in enumerate(community.patients(patients))]
    load = BookingLoad(daemon, [community[n] for n in workers], jobs, pace=pace).start()
    test.addCleanup(load.stop_new.set)
    return ids, load


# ---- latency ------------------------------------------------------------------

class LatencyProbe:
    """A connection (Hello done as terminal) timing make_request() round
    trips; sample(n) returns n latencies in seconds. Every answer must be a
    success."""

    def __init__(self, port, terminal, make_request):
        self.client = ss.SlotClient(port, timeout=30)
        resp = self.client.hello(terminal)
        if resp.HasField("error"):
            raise AssertionError(f"probe hello: {resp}")
        self.make_request = make_request

    def sample(self, n):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            resp = self.client.call(self.make_request())
            out.append(time.perf_counter() - t0)
            if resp.HasField("error"):
                raise AssertionError(f"probe request failed: {resp}")
        return out

    def close(self):
        self.client.close()


# ---- flood ----------------------------------------------------------------------

class Flood(threading.Thread):
    """conns connections (Hello done as terminal), each kept at `depth`
    requests in flight from make_request(), answers read as they come, until
    stop(). answers: Counter of code names ("OK" for a success); latency:
    code name -> list of seconds from send to answer."""

    def __init__(self, port, terminal, make_request, conns=8, depth=64):
        super().__init__(daemon=True)
        self.make_request = make_request
        self.depth = depth
        self.stop_event = threading.Event()
        self.answers = collections.Counter()
        self.latency = collections.defaultdict(list)
        self.retry_after = collections.defaultdict(set)   # code name -> values seen
        self.error = None
        self.sel = selectors.DefaultSelector()
        self.conns = []
        for _ in range(conns):
            c = harness.Client(port, timeout=30)
            resp = c.hello(terminal)
            if resp.HasField("error"):
                raise AssertionError(f"flood hello: {resp}")
            c.sock.setblocking(False)
            self.conns.append({"client": c, "out": b"", "sent": {}, "ids": itertools.count(1000)})

    def run(self):
        try:
            for i, c in enumerate(self.conns):
                self.sel.register(c["client"].sock, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
            while not self.stop_event.is_set():
                for c in self.conns:
                    self._top_up(c)
                for key, mask in self.sel.select(timeout=0.05):
                    c = self.conns[key.data]
                    if mask & selectors.EVENT_WRITE and c["out"]:
                        try:
                            n = c["client"].sock.send(c["out"])
                            c["out"] = c["out"][n:]
                        except BlockingIOError:
                            pass
                    if mask & selectors.EVENT_READ:
                        self._read(c)
        except Exception as e:
            self.error = e
        finally:
            self.sel.close()
            for c in self.conns:
                c["client"].close()

    def _top_up(self, c):
        now = time.perf_counter()
        while len(c["sent"]) < self.depth:
            req = self.make_request()
            req.request_id = next(c["ids"])
            c["sent"][req.request_id] = now
            c["out"] += harness.frame(req.SerializeToString())

    def _read(self, c):
        try:
            data = c["client"].sock.recv(1 << 16)
        except BlockingIOError:
            return
        if not data:
            raise harness.ConnectionClosed("the daemon closed a flood connection")
        buf = c["client"].buf + data
        now = time.perf_counter()
        while len(buf) >= 4:
            (n,) = struct.unpack(">I", buf[:4])
            if len(buf) < 4 + n:
                break
            resp = pb.Response()
            resp.ParseFromString(buf[4:4 + n])
            buf = buf[4 + n:]
            sent = c["sent"].pop(resp.request_id, None)
            if sent is None:
                raise AssertionError(f"answer to a request not in flight: {resp}")
            name = pb.ErrorCode.Name(resp.error.code) if resp.HasField("error") else "OK"
            self.answers[name] += 1
            self.latency[name].append(now - sent)
            if resp.HasField("error"):
                self.retry_after[name].add(resp.error.retry_after_ms)
        c["client"].buf = buf

    def stop(self):
        self.stop_event.set()
        self.join(30)
        if self.error:
            raise AssertionError(f"flood failed: {self.error!r}")
