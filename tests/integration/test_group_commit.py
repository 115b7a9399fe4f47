#!/usr/bin/python3
"""Group commit through the daemon (daemon/book_batch.c).

Bookings that arrive together are committed together, and each is still
answered on its own with the right outcome: a burst of bookings over a few
small sessions is decided in far fewer transactions than requests, with
exactly capacity bookings per session and the tables agreeing with the
answers. A batch the database refuses as a whole is retried request by
request, and the answers are the same as if nothing had happened. At most
booking_batches_per_session running batches share a session: a burst on
one popular session makes requests wait for the next batch, and the answers
are still right."""

import collections
import importlib.util
import os
import unittest

import harness
from harness import pb
from metrics_support import sample, scrape
import slots_support as ss

CONNECTIONS = 120
SESSIONS = 6
CAPACITY = 15
RESERVED = 6
BOOKERS = ("clinic", "clinic-b", "desk", "admin")


def batch_timeline():
    """scripts/bench/batch_timeline.py, which reads the batch lines of the
    debug log for docs/benchmarks.md."""
    path = os.path.join(harness.SOURCE_DIR, "scripts", "bench", "batch_timeline.py")
    spec = importlib.util.spec_from_file_location("batch_timeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batch_counters(daemon):
    fams = scrape(daemon)
    return {name: sample(fams, f"referrald_{name}", f"referrald_{name}_total")
            for name in ("book_batches", "book_batch_items", "book_batch_fallbacks",
                         "book_batch_held")}


class BurstCase(ss.SlotsTestCase):
    """A burst of CONNECTIONS bookings at once over `sessions` sessions."""
    private_database = True
    sessions = SESSIONS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.community.cheap_tokens(BOOKERS)

    def publish_sessions(self):
        desk = self.authed("desk")
        start = ss.future(days=4)
        ids = []
        for i in range(self.sessions):
            resp = desk.publish(capacity=CAPACITY, reserved_slots=RESERVED,
                                start=start + i * 4 * ss.HOUR)
            self.assertOk(resp, "publish")
            ids.append(resp.publish.sessions[0].session_id)
        return ids

    def burst(self):
        """CONNECTIONS bookings at once over the sessions; returns the
        sessions, the requests and, per connection, its answers."""
        sessions = self.publish_sessions()
        names = [BOOKERS[i % len(BOOKERS)] for i in range(CONNECTIONS)]
        swarm = ss.Swarm([(self.daemon.port, self.community[n]) for n in names], timeout=60)
        self.addCleanup(swarm.close)
        swarm.hello_all()
        patients = self.community.patients(CONNECTIONS)
        requests = [ss.book_request(sessions[i % self.sessions], p, fallback=True,
                                    request_id=100 + i)
                    for i, p in enumerate(patients)]
        return sessions, requests, swarm.exchange(requests)

    def check_answers(self, sessions, requests, answers):
        """Exactly CAPACITY bookings per session, the rest FULL, and the
        database holds exactly the acknowledged bookings."""
        booked = collections.defaultdict(dict)
        full = 0
        for req, got in zip(requests, answers):
            self.assertEqual(len(got), 1, got)
            resp = got[0]
            self.assertEqual(resp.request_id, req.request_id)
            if resp.HasField("error"):
                self.assertEqual(pb.ErrorCode.Name(resp.error.code), "FULL", resp)
                full += 1
                continue
            b = resp.booking
            self.assertEqual((b.session_id, b.patient_id, b.status, b.replayed),
                             (req.book.session_id, req.book.patient_id, "booked", False))
            booked[b.session_id][b.booking_id] = pb.Pool.Name(b.pool)[5:].lower()
        self.assertEqual(full, CONNECTIONS - self.sessions * CAPACITY)
        for s in sessions:
            self.assertEqual(len(booked[s]), CAPACITY, f"session {s}")
            rows = self.community.bookings(s)
            self.assertEqual({bid: pool for bid, (pool, _) in rows.items()}, booked[s],
                             "the tables hold exactly the acknowledged bookings")
        self.assertEqual(self.community.invariant_violations(), [])


class GroupCommitTest(BurstCase):
    # One batch at a time: whatever arrives while it runs forms the next.
    daemon_settings = {"booking_batches_in_flight": "1", "db_pool_size": "4",
                       "db_queue_timeout_ms": "60000",
                       "handshake_timeout_ms": "120000", "max_connections": "1000",
                       "log_level": "info"}

    def test_a_burst_is_committed_in_few_transactions(self):
        before = batch_counters(self.daemon)
        sessions, requests, answers = self.burst()
        after = batch_counters(self.daemon)
        self.check_answers(sessions, requests, answers)
        batches = after["book_batches"] - before["book_batches"]
        items = after["book_batch_items"] - before["book_batch_items"]
        self.assertEqual(items, CONNECTIONS, "every booking went through a batch")
        self.assertGreaterEqual(batches, 1)
        # All were in flight at once and one batch runs at a time: they
        # cannot each have had a transaction of their own.
        self.assertLessEqual(batches, CONNECTIONS / 4, (batches, items))
        self.assertEqual(after["book_batch_fallbacks"], before["book_batch_fallbacks"])

    def test_a_refused_batch_is_retried_one_by_one(self):
        # A trigger that refuses any insert of more than one booking at once:
        # every batch of two or more fails as a whole, as a deadlock would.
        self.community.psql("""
CREATE FUNCTION refuse_bulk_booking() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM new_rows) > 1 THEN
        RAISE EXCEPTION 'bulk booking refused for the test' USING ERRCODE = '40P01';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER refuse_bulk_booking AFTER INSERT ON bookings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION refuse_bulk_booking();
""")
        self.addCleanup(self.community.psql, """
DROP TRIGGER refuse_bulk_booking ON bookings; DROP FUNCTION refuse_bulk_booking();""")
        before = batch_counters(self.daemon)
        sessions, requests, answers = self.burst()
        after = batch_counters(self.daemon)
        self.check_answers(sessions, requests, answers)
        self.assertGreater(after["book_batch_fallbacks"], before["book_batch_fallbacks"],
                           "at least one batch was refused and retried")
        self.assertIn("booking one by one", self.daemon.log())


class PopularSessionTest(BurstCase):
    """Every request for one session, four batches allowed at once but one
    per session: the session is in one running batch at a time, the others
    wait for the next (counted), and the answers and tables are right. The
    debug log tells the same story, batch by batch."""
    sessions = 1
    per_session = 1
    daemon_settings = {"booking_batches_in_flight": "4", "db_pool_size": "6",
                       "booking_batches_per_session": "1",
                       "db_queue_timeout_ms": "60000",
                       "handshake_timeout_ms": "120000", "max_connections": "1000"}

    def test_requests_for_a_session_in_a_running_batch_wait_for_the_next(self):
        before = batch_counters(self.daemon)
        sessions, requests, answers = self.burst()
        after = batch_counters(self.daemon)
        self.check_answers(sessions, requests, answers)
        self.assertEqual(after["book_batch_items"] - before["book_batch_items"], CONNECTIONS)
        held = after["book_batch_held"] - before["book_batch_held"]
        self.assertGreater(held, 0, "requests arriving during a batch of their session waited")
        self.assertLessEqual(held, CONNECTIONS, "each waiting request is counted once")
        self.assertEqual(after["book_batch_fallbacks"], before["book_batch_fallbacks"])
        self.check_batch_log(sessions[0], after["book_batches"] - before["book_batches"])

    def check_batch_log(self, session, batches):
        """The debug log has a line per batch, as batch_timeline.py reads
        them: every request and every booking of the burst, never more than
        per_session batches of the session in the database at once."""
        lines = batch_timeline().read_batches(self.daemon.log_path)
        self.assertEqual(len(lines), batches, "a line per batch")
        self.assertEqual(sum(b["n"] for b in lines), CONNECTIONS)
        self.assertEqual(sum(b["booked"] for b in lines), CAPACITY)
        self.assertEqual({(b["session"], b["n_sessions"]) for b in lines}, {(session, 1)})
        self.assertLessEqual(most_at_once(lines), self.per_session)
        return lines


def most_at_once(lines):
    """The most batches in the database at one moment: a batch answered at
    the moment another went counts as gone."""
    events = sorted([(b["sent"], 1) for b in lines] + [(b["done"], -1) for b in lines])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


class PopularSessionPairTest(PopularSessionTest):
    """The same burst, two batches of a session allowed at once (the
    default): the second goes while the first holds the session, waits for
    its lock in the database, and the answers and tables are as right."""
    per_session = 2
    daemon_settings = dict(PopularSessionTest.daemon_settings)
    del daemon_settings["booking_batches_per_session"]

    def check_batch_log(self, session, batches):
        lines = super().check_batch_log(session, batches)
        self.assertEqual(most_at_once(lines), 2, "the next batch went while one ran")


if __name__ == "__main__":
    unittest.main()
