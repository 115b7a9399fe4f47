#!/usr/bin/python3
"""book_batch() (sql/006_group_commit.sql, sql/008_booking_path.sql) decides exactly as book_slot().

The daemon hands the Book requests that arrive together to book_batch(), one
transaction for all of them. Its promise: every request gets the answer that
book_slot() would have given had the requests been booked one after the
other, in the order book_batch() reports them. This test checks that promise
directly in the database: two copies of one database (one a template of the
other), random batches full of the awkward cases (full sessions, cancelled and
started sessions, unknown sessions and patients, one patient twice, keys
retried and reused for another request, every pool and role, a community that
reserves slots for referred patients), book_batch() in one copy and
book_slot() in the other in book_batch's order; the answers, the sessions,
the bookings and the keys must come out the same.
"""

import random
import re
import secrets
import unittest
import uuid

import harness
from harness import sql_array, sql_literal
from slots_support import SlotCommunity, future

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# name in SlotCommunity, role, institution, practitioner
BOOKERS = [
    ("clinic-01", "clinic", "village-a", "fd-a"),
    ("clinic-b-01", "clinic", "village-b", "fd-b"),
    ("desk-01", "desk", "county-hospital", ""),
]


class World:
    """Two communities (Henan, and Yunnan which reserves slots for referred
    patients) with sessions and patients, in one database."""

    def __init__(self, pg, dbname):
        self.pg = pg
        self.dbname = dbname
        self.communities = []
        for province in ("henan", "yunnan"):
            com = SlotCommunity(pg, f"gc-{province}", dbname=dbname, province=province)
            sessions = self._sessions(com)
            patients = com.patients(12)
            self.communities.append((com, sessions, patients))

    def _sessions(self, com):
        """Small sessions (so that they fill up), two that overlap, one
        cancelled, one started; returns their ids."""
        c = sql_literal(com.community_id)
        t = future(days=5)
        rows = [
            # kind, resource, start offset (s), length (s), capacity, reserved, status
            ("expert", "dr-wang", 0, 3600, 3, 2, "open"),
            ("expert", "dr-wang", 7200, 3600, 4, 2, "open"),
            ("expert", "dr-li", 1800, 3600, 2, 1, "open"),     # overlaps the first
            ("exam", "ct-1", 0, 3600, 5, 2, "open"),
            ("expert", "dr-li", 86400, 3600, 6, 3, "cancelled"),
            ("expert", "dr-wang", -86400 * 6, 3600, 6, 3, "open"),  # started long ago
        ]
        values = []
        for kind, res, off, length, cap, reserved, status in rows:
            start = t + off
            dept = "radiology" if kind == "exam" else (
                "cardiology" if res == "dr-wang" else "internal")
            values.append(
                f"({c}, 'county-hospital', '{dept}', '{kind}', '{res}', "
                f"to_timestamp({start}), to_timestamp({start + length}), '{status}', {cap}, "
                f"{reserved}, {cap}, {reserved}, to_timestamp({start}) - interval '1 hour', 'test')")
        out = com.psql(f"""
INSERT INTO sessions (community_id, institution_id, department_id, kind, resource_id,
                      starts_at, ends_at, status, capacity, reserved_initial,
                      capacity_published, reserved_capacity, release_at, published_by)
VALUES {", ".join(values)} RETURNING session_id""")
        return [int(x) for x in out.split()]


def random_batch(rng, world, n, old_items):
    """n requests for one community; some reuse keys of earlier ones."""
    com, sessions, patients = rng.choice(world.communities)
    items = []
    for _ in range(n):
        roll = rng.random()
        if old_items and roll < 0.08:
            items.append(dict(rng.choice(old_items)))            # a retry: same key, same request
            continue
        name, role, inst, prac = rng.choice(BOOKERS)
        item = {
            "community": com.community_id,
            "terminal": name, "role": role, "institution": inst, "practitioner": prac,
            "session": rng.choice(sessions + [10**12]),
            "patient": rng.choice(patients + [str(uuid.uuid4())]) if rng.random() < 0.9
            else rng.choice(patients[:2]),
            "pool": rng.choice(["auto", "auto", "reserved", "public"]),
            "fallback": rng.random() < 0.5,
            "key": f"k-{secrets.token_hex(6)}",
        }
        if old_items and roll < 0.12:
            reused = rng.choice(old_items)                        # a key reused for another request
            if reused["community"] == item["community"]:
                item["terminal"], item["role"] = reused["terminal"], reused["role"]
                item["institution"], item["practitioner"] = reused["institution"], reused["practitioner"]
                item["key"] = reused["key"]
        items.append(item)
    # Retries from another community's batch would not be the same request.
    return [i for i in items if i["community"] == com.community_id]


class GroupCommitEquivalence(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.db_batch = cls.pg.create_database("gc_batch")
        cls.world = World(cls.pg, cls.db_batch)
        cls.db_serial = cls.pg.create_database("gc_serial", migrated=False)
        cls.pg.psql(f'DROP DATABASE "{cls.db_serial}"', dbname="postgres")
        cls.pg.psql(f'CREATE DATABASE "{cls.db_serial}" TEMPLATE "{cls.db_batch}"',
                    dbname="postgres")

    @classmethod
    def tearDownClass(cls):
        cls.pg.drop_database(cls.db_batch)
        cls.pg.drop_database(cls.db_serial)

    def psql(self, db, sql):
        return self.pg.psql(sql, dbname=db)

    def run_batch(self, items):
        col = lambda k: [i[k] for i in items]  # noqa: E731
        out = self.psql(self.db_batch, f"""
SELECT idx, outcome, coalesce(booking_id::text, ''), coalesce(pool, ''), coalesce(detail, ''),
       reserved_left, public_left, replayed
  FROM book_batch({sql_literal(items[0]["community"])},
                  {sql_array([i["terminal"] for i in items], "text")},
                  {sql_array(col("institution"), "text")}, {sql_array(col("role"), "terminal_role")},
                  {sql_array(col("practitioner"), "text")}, {sql_array(col("session"), "bigint")},
                  {sql_array(col("patient"), "uuid")}, {sql_array(col("pool"), "text")},
                  {sql_array(["t" if f else "f" for f in col("fallback")], "boolean")},
                  {sql_array(col("key"), "text")})""")
        return [line.split("|") for line in out.splitlines()]

    def run_serial(self, items, order):
        selects = []
        for idx in order:
            i = items[idx - 1]
            selects.append(f"""
SELECT {idx}, outcome, coalesce(booking_id::text, ''), coalesce(pool, ''), coalesce(detail, ''),
       reserved_left, public_left, replayed
  FROM book_slot({sql_literal(i["community"])}, {sql_literal(i["terminal"])},
                 {sql_literal(i["institution"])}, {sql_literal(i["role"])},
                 {sql_literal(i["practitioner"])}, {i["session"]}, {sql_literal(i["patient"])},
                 {sql_literal(i["pool"])}, {'true' if i["fallback"] else 'false'}, NULL,
                 {sql_literal(i["key"])});""")
        out = self.psql(self.db_serial, "BEGIN;" + "".join(selects) + "COMMIT;")
        return [line.split("|") for line in out.splitlines()]

    def booking_names(self, db):
        """booking_id -> a name that is the same in both copies."""
        out = self.psql(db, """
SELECT booking_id, session_id || '/' || patient_id || '/' ||
       row_number() OVER (PARTITION BY session_id, patient_id ORDER BY created_at, booking_id)
  FROM bookings""")
        return dict(line.split("|") for line in out.splitlines())

    def normalise(self, rows, names):
        def name(text):
            return UUID_RE.sub(lambda m: names.get(m.group(0), m.group(0)), text)
        return [[name(f) for f in row] for row in rows]

    def state(self, db):
        names = self.booking_names(db)
        sessions = self.psql(db, """
SELECT community_id, session_id, reserved_capacity, reserved_booked, public_booked
  FROM sessions ORDER BY 1, 2""")
        bookings = self.psql(db, """
SELECT community_id, session_id, patient_id, pool, status, booked_by_terminal,
       booked_by_institution, coalesce(practitioner_id, '')
  FROM bookings ORDER BY 1, 2, 3, 4, 5, 6""")
        keys = self.psql(db, """
SELECT community_id, terminal_id, idem_key, request_hash, outcome,
       coalesce(booking_id::text, ''), coalesce(detail, '')
  FROM idempotency_keys ORDER BY 1, 2, 3""")
        return sessions, bookings, self.normalise([keys.split("\n")], names)

    def test_batches_answer_as_book_slot_in_order(self):
        rng = random.Random(20261123)
        old = []
        outcomes = set()
        for round_no in range(8):
            items = random_batch(rng, self.world, rng.choice([1, 5, 40, 90]), old)
            if not items:
                continue
            batch = self.run_batch(items)
            self.assertEqual(sorted(int(r[0]) for r in batch), list(range(1, len(items) + 1)),
                             "every request answered exactly once")
            serial = self.run_serial(items, [int(r[0]) for r in batch])
            got = self.normalise(batch, self.booking_names(self.db_batch))
            want = self.normalise(serial, self.booking_names(self.db_serial))
            for g, w in zip(got, want):
                self.assertEqual(g, w, f"round {round_no}, request {g[0]}: "
                                       f"{items[int(g[0]) - 1]}")
            self.assertEqual(self.state(self.db_batch), self.state(self.db_serial),
                             f"tables differ after round {round_no}")
            outcomes.update(r[1] for r in batch)
            outcomes.update("replayed" for r in batch if r[7] == "t")
            old.extend(items)
        # The random batches did reach the cases they are meant to cover.
        for expected in ("booked", "full", "closed", "not_found", "patient_conflict",
                         "not_permitted", "key_conflict", "replayed"):
            self.assertIn(expected, outcomes)


if __name__ == "__main__":
    unittest.main()
