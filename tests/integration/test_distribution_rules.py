#!/usr/bin/python3
"""The schema and the daemon's statements stay ready to be distributed by
community (Citus, docs/scaling.md), checked mechanically so that a later
change cannot quietly break it.

Against the catalog:
  * every table is either community-scoped (has community_id) or one of the
    named reference tables shared by all communities;
  * a community-scoped table's primary key starts with community_id, every
    unique or exclusion constraint of it includes community_id, and every
    foreign key between community-scoped tables leads with community_id on
    both sides; no reference table points at a community-scoped one.

Against what the daemon runs: auto_explain logs the plan of every statement
the daemon's sessions execute, nested ones (inside book_slot, refer_up, ...)
included, while the test drives the booking and referral paths through the
daemon. Every scan of a community-scoped table must be narrowed by
community_id (to a value, or joined to another community-scoped table's
community_id: a co-located join), except inside the few statements that
work across communities by design (the release and housekeeping timers),
named below. And every prepared statement of the daemon must have been seen,
so that none escapes the check.

From the same plans, one rule of speed: a subquery run once per row (a
SubPlan) never reads a community-scoped table narrowed by the community
alone. That is the shape of a hashed subplan, which reads every row of the
community at each call; plpgsql keeps such a plan, chosen while a table was
small, for as long as its connection lives (book_batch() had one, and a
booking took 16 ms after a flood instead of 1)."""

import datetime
import os
import re
import time
import unittest

import harness
from harness import pb
import referrals_support as rs
import slots_support as ss
from test_patient_identity import resident_id

REFERENCE_TABLES = {"referral_transitions", "schema_migrations"}
# Statements that visit every community on purpose, all on timers and none
# on a request's path: releases and referral housekeeping, the /metrics
# community gauges (figures of every community, on the figures pool), and
# the check for revoked terminals. Citus runs them on all workers.
CROSS_COMMUNITY_FUNCTIONS = ("release_due", "referral_housekeeping", "figures_referral_states")
CROSS_COMMUNITY_STATEMENTS = {"RELEASE_DUE", "REFERRAL_HOUSEKEEPING", "FIGURES_TOTALS",
                              "FIGURES_REFERRAL_STATES", "TERMINAL_CHANGES"}
# Statements that read no table at all, run only in setups this test does
# not make (a replica's lag check, daemon/replica.c).
NO_TABLES = {"WAL_POSITION"}

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCOPED = re.compile(r"\bcommunity_id\b\s*=|=\s*\(?[\w.]*\bcommunity_id\b")
SCAN_CONDITIONS = ("Index Cond", "Recheck Cond", "Filter", "TID Cond")
JOIN_CONDITIONS = ("Hash Cond", "Merge Cond", "Join Filter")


def daemon_statements():
    """name -> SQL of every prepared statement in daemon/db_statements.h, with
    the column-list macros (#define NAME "..." "...") expanded."""
    with open(os.path.join(SOURCE_DIR, "daemon", "db_statements.h")) as f:
        text = f.read().replace("\\\n", " ")
    token = r"\"(?:[^\"\\]|\\.)*\"|[A-Z_]+"

    def concat(body, macros):
        out = []
        for t in re.findall(token, body):
            if t.startswith('"'):
                out.append(t[1:-1].replace('\\"', '"'))
            else:
                out.append(macros.get(t, ""))
        return "".join(out)

    macros = {}
    for m in re.finditer(r"#define ([A-Z_]+)\s+((?:\"(?:[^\"\\]|\\.)*\"\s*)+)$", text, re.M):
        macros[m.group(1)] = concat(m.group(2), macros)
    out = {}
    for m in re.finditer(r"X\((\w+),\s*\d+,\s*((?:(?:\"(?:[^\"\\]|\\.)*\"|[A-Z_]+)\s*)+)\)", text):
        out[m.group(1)] = concat(m.group(2), macros)
    return out


def unscoped_scans(node, tables, join_conds=()):
    """Scans of community-scoped tables under node not narrowed by community."""
    found = []
    conds = list(join_conds) + [node[k] for k in JOIN_CONDITIONS if k in node]
    rel = node.get("Relation Name")
    if rel in tables and node.get("Node Type", "").endswith("Scan"):
        own = [node[k] for k in SCAN_CONDITIONS if k in node]
        own += [c[k] for c in node.get("Plans", []) for k in SCAN_CONDITIONS if k in c]
        if not any(SCOPED.search(c) for c in own + conds):
            found.append(f"{node['Node Type']} on {rel}: {own + conds}")
    for child in node.get("Plans", []):
        found += unscoped_scans(child, tables, conds)
    return found


COMMUNITY_ONLY = re.compile(r"\(?\b[\w.]*community_id\b\s*=\s*[\w.$]+\)?")


def community_only(cond):
    """The condition narrows by the community and by nothing else."""
    rest = COMMUNITY_ONLY.sub("", cond)
    return not re.search(r"\w", rest.replace("AND", ""))


def whole_community_subplans(node, tables, in_subplan=False):
    """Scans of community-scoped tables inside SubPlans whose conditions name
    the community and nothing more."""
    found = []
    in_subplan = in_subplan or node.get("Parent Relationship") == "SubPlan"
    rel = node.get("Relation Name")
    if in_subplan and rel in tables and node.get("Node Type", "").endswith("Scan"):
        conds = [node[k] for k in SCAN_CONDITIONS if k in node]
        if conds and all(community_only(c) for c in conds):
            found.append(f"{node['Node Type']} on {rel} in {node.get('Subplan Name')}: {conds}")
    for child in node.get("Plans", []):
        found += whole_community_subplans(child, tables, in_subplan)
    return found


def normalise_sql(s):
    return " ".join(s.split())


class CatalogRules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()

    def rows(self, sql):
        out = self.pg.psql(sql)
        return [line.split("|") for line in out.splitlines() if line]

    def community_tables(self):
        return {r[0] for r in self.rows("""
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'community_id' AND NOT a.attisdropped)""")}

    def test_every_table_is_community_scoped_or_a_named_reference_table(self):
        tables = {r[0] for r in self.rows("""
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')""")}
        scoped = self.community_tables()
        self.assertIn("bookings", scoped)
        self.assertEqual(tables - scoped, REFERENCE_TABLES,
                         "a new table must have community_id or be named a reference table")

    def test_keys_and_unique_constraints_include_the_community(self):
        bad = self.rows("""
SELECT c.relname, con.conname, con.contype,
       (SELECT string_agg(a.attname, ',' ORDER BY k.ord)
          FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum)
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND con.contype IN ('p', 'u', 'x')
   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'community_id')
   AND NOT (
       -- primary keys lead with community_id; unique and exclusion
       -- constraints contain it (with = for exclusion)
       CASE con.contype
         WHEN 'p' THEN (SELECT a.attname FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum = con.conkey[1]) = 'community_id'
         ELSE EXISTS (SELECT 1 FROM unnest(con.conkey) k(attnum) JOIN pg_attribute a
                        ON a.attrelid = c.oid AND a.attnum = k.attnum
                       WHERE a.attname = 'community_id')
       END)""")
        self.assertEqual(bad, [])
        # Unique indexes made without a constraint obey the same rule.
        bad_indexes = self.rows("""
SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND i.indisunique
   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'community_id')
   AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) k(attnum) JOIN pg_attribute a
                     ON a.attrelid = c.oid AND a.attnum = k.attnum WHERE a.attname = 'community_id')""")
        self.assertEqual(bad_indexes, [])

    def test_foreign_keys_lead_with_the_community(self):
        fks = self.rows("""
SELECT c.relname, con.conname, r.relname,
       (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = con.conkey[1]),
       (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = r.oid AND a.attnum = con.confkey[1])
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_class r ON r.oid = con.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND con.contype = 'f'""")
        self.assertTrue(fks)
        scoped = self.community_tables()
        for table, name, ref, first, ref_first in fks:
            if table in scoped and ref in scoped:
                self.assertEqual((first, ref_first), ("community_id", "community_id"),
                                 f"{table}.{name} -> {ref}")
            self.assertFalse(table in REFERENCE_TABLES and ref in scoped,
                             f"reference table {table} points at community table {ref}")


class StatementsStayInOneCommunity(rs.ReferralsTestCase):
    private_database = True
    daemon_settings = {"release_interval_ms": "100", "db_pool_size": "3",
                       "credentials_check_ms": "200", "figures_metrics_interval_ms": "200"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Plans of everything the daemon's sessions run in this database.
        cls.pg.psql(f"""
ALTER DATABASE "{cls.dbname}" SET session_preload_libraries = 'auto_explain';
ALTER DATABASE "{cls.dbname}" SET auto_explain.log_min_duration = 0;
ALTER DATABASE "{cls.dbname}" SET auto_explain.log_nested_statements = on;
ALTER DATABASE "{cls.dbname}" SET auto_explain.log_format = 'json';""", dbname="postgres")
        cls.daemon.stop()
        cls.log_path = cls.pg.env["PGCLUSTER_LOG"]
        cls.log_start = os.path.getsize(cls.log_path)
        cls.daemon = ss.start_daemon(cls.pg, cls.dbname, cls.daemon_settings,
                                     name="distribution_rules")
        cls.addClassCleanup(cls.daemon.stop)

    def answered(self, resp):
        self.assertFalse(resp.HasField("error"), resp)
        return resp

    def drive_every_path(self):
        """One of each request that reaches the database."""
        desk, clinic = self.authed("desk"), self.authed("clinic")
        start = ss.future(days=6)
        pub = self.answered(desk.publish(capacity=6, reserved_slots=3, start=start))
        self.answered(pub)
        s = pub.publish.sessions[0].session_id
        weekly = pb.WeeklyPattern(first_date=(self.community.today() + datetime.timedelta(days=2)).isoformat(), weeks=1, weekdays=[1, 3],
                                  start_time="08:00", end_time="09:00")
        self.answered(desk.publish(capacity=5, weekly=weekly))
        self.answered(clinic.search())
        patients = self.community.patients(4)
        booked = self.answered(clinic.call(ss.book_request(s, patients[0])))
        self.answered(clinic.call(ss.cancel_request(booked.booking.booking_id)))
        self.answered(desk.call(pb.Request(list_bookings=pb.ListBookings(session_id=s))))
        self.answered(desk.change_capacity(s, 8))
        ref = self.refer_up(clinic=clinic, patient=patients[1], session_id=s)
        # Whether these two succeed does not matter here: they ran.
        self.assertTrue(clinic.call(ss.book_request(s, patients[2], referral=ref.referral_id)))
        self.answered(desk.get(ref.referral_id))
        self.answered(desk.history(ref.referral_id))
        self.answered(desk.worklist())
        self.move(desk, ref, pb.ACTION_ACCEPT, "accepted")
        green = self.refer_up(clinic=clinic, patient=patients[3], urgency=pb.URGENCY_EMERGENCY)
        self.assertTrue(desk.call(pb.Request(emergency_book=pb.EmergencyBook(
            session_id=s, patient_id=patients[3], referral_id=green.referral_id,
            reason="green channel"))))
        self.refer_down(desk=desk)
        self.stream("clinic", after_seq=0).take(1)
        self.answered(desk.cancel_session(s))
        self.drive_the_other_rooms()

    def drive_the_other_rooms(self):
        """Figures, deductibles, terminals, patient identity."""
        admin, billing, mon = self.authed("admin"), self.authed("billing"), self.authed("monitor")
        self.answered(mon.call(pb.Request(stats=pb.StatsRequest())))
        self.answered(mon.call(pb.Request(compliance=pb.ComplianceRequest())))
        stay = self.answered(billing.call(pb.Request(record_stay=pb.RecordStay(
            patient_id=self.community.patient(), admitted_at=int(time.time()) - 7200,
            idempotency_key="stay-1")))).deductible.stay_id
        self.answered(billing.call(pb.Request(discharge_stay=pb.DischargeStay(stay_id=stay))))
        self.answered(billing.call(pb.Request(get_deductible=pb.GetDeductible(stay_id=stay))))
        self.answered(billing.call(pb.Request(list_deductibles=pb.ListDeductibles())))
        self.answered(billing.call(pb.Request(reverse_stay=pb.ReverseStay(
            stay_id=stay, reason="recorded for the wrong patient"))))
        self.answered(admin.call(pb.Request(set_deductible_policy=pb.SetDeductiblePolicy(
            policy="continuous", window_days=10))))
        self.answered(admin.call(pb.Request(get_deductible_policy=pb.GetDeductiblePolicy())))
        self.answered(admin.call(pb.Request(add_terminal=pb.AddTerminal(
            terminal_id="new-clinic", institution_id="village-a", role=pb.ROLE_CLINIC))))
        self.answered(admin.call(pb.Request(list_terminals=pb.ListTerminals())))
        self.answered(admin.call(pb.Request(rotate_terminal=pb.RotateTerminal(
            terminal_id="new-clinic"))))
        self.answered(admin.call(pb.Request(revoke_terminal=pb.RevokeTerminal(
            terminal_id="new-clinic"))))
        self.answered(admin.call(pb.Request(resolve_patient=pb.ResolvePatient(
            resident_id=resident_id(7), register=True, name="王五"))))

    def test_every_scan_of_community_data_names_the_community(self):
        self.drive_every_path()
        self.daemon.stop()
        with open(self.log_path, errors="replace") as f:
            f.seek(self.log_start)
            plans = harness.auto_explain_plans(f.read())
        self.assertGreater(len(plans), 50, "auto_explain logged the daemon's statements")

        tables = set(CatalogRules.community_tables(self))
        cross = "\n".join(self.pg.psql(
            f"SELECT prosrc FROM pg_proc WHERE proname = '{name}'", dbname=self.dbname)
            for name in CROSS_COMMUNITY_FUNCTIONS)
        statements = daemon_statements()
        by_text = {normalise_sql(sql): name for name, sql in statements.items()}
        seen, problems, per_row = set(), [], []
        for plan in plans:
            text = normalise_sql(plan["Query Text"])
            name = by_text.get(text)
            if name:
                seen.add(name)
            for scan in whole_community_subplans(plan["Plan"], tables):
                per_row.append(f"{name or plan['Query Text'][:300]}\n    {scan}")
            if name in CROSS_COMMUNITY_STATEMENTS or (
                    not name and normalise_sql(plan["Query Text"]) in normalise_sql(cross)):
                continue
            for scan in unscoped_scans(plan["Plan"], tables):
                problems.append(f"{name or plan['Query Text'][:300]}\n    {scan}")
        self.assertEqual(sorted(set(problems)), [], "statements that cross communities")
        self.assertEqual(sorted(set(per_row)), [],
                         "subqueries that read a whole community once per row")
        self.assertEqual(sorted(set(statements) - seen - NO_TABLES), [],
                         "prepared statements the test did not see run")

    rows = CatalogRules.rows


if __name__ == "__main__":
    unittest.main()
