#!/usr/bin/python3
"""Schema versions: --migrate, and the daemon refusing a database whose
schema is not the one it was built for. Every case works in a throwaway
database of the shared cluster, never in the shared one."""

import glob
import os
import re
import subprocess
import unittest

import harness
from harness import pb


def migration_versions():
    """The versions of the migrations in sql/, in order. Numbers may have
    gaps (a migration can be reserved for a change still being made)."""
    files = glob.glob(os.path.join(harness.SOURCE_DIR, "sql", "[0-9][0-9][0-9]_*.sql"))
    return sorted(int(os.path.basename(f)[:3]) for f in files)


class SchemaTest(harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.versions = migration_versions()
        cls.latest = cls.versions[-1]

    def database(self, migrated=True):
        name = self.pg.create_database("it_schema", migrated=migrated)
        self.addCleanup(self.pg.drop_database, name)
        return name

    def migrate(self, dbname):
        return subprocess.run([harness.REFERRALD, "-s", f"db_dsn={self.pg.dsn(dbname)}",
                               "--migrate"], env=harness.binary_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=60)

    def assertStartRefused(self, dbname, message):
        d = harness.Daemon(self.pg.dsn(dbname), name="schema")
        d.spawn()
        rc = d.wait_exit(30)
        self.assertEqual(rc, 1, d.log_tail())
        self.assertRegex(d.log(), message)
        self.assertFalse(os.path.exists(d.port_file), "it listened before refusing")
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, d.log())

    def test_migrate_empty_database(self):
        db = self.database(migrated=False)
        p = self.migrate(db)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn(f"schema at version {self.latest} ({len(self.versions)} migration", p.stdout)
        versions = self.pg.psql("SELECT string_agg(version::text, ',' ORDER BY version)"
                                " FROM schema_migrations", dbname=db)
        self.assertEqual(versions, ",".join(str(v) for v in self.versions))

    def test_migrate_again_is_a_no_op(self):
        db = self.database()
        p = self.migrate(db)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn(f"schema at version {self.latest} (0 migrations applied)", p.stdout)

    def test_start_refused_when_schema_is_newer(self):
        db = self.database()
        self.pg.psql(f"INSERT INTO schema_migrations (version, name) "
                     f"VALUES ({self.latest + 1}, 'from_the_future')", dbname=db)
        self.assertStartRefused(db, rf"schema version {self.latest + 1} is newer than this "
                                    rf"binary \({self.latest}\)")
        # --migrate refuses too, and changes nothing.
        p = self.migrate(db)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("newer than this binary", p.stdout)

    def test_start_refused_when_schema_is_missing(self):
        db = self.database(migrated=False)
        self.assertStartRefused(db, r"schema is at version 0, this binary needs "
                                    rf"{self.latest}; run referrald --migrate")

    def test_start_refused_when_schema_is_older(self):
        if len(self.versions) < 2:
            self.skipTest("only one migration exists")
        db = self.database()
        self.pg.psql(f"DELETE FROM schema_migrations WHERE version = {self.latest}", dbname=db)
        self.assertStartRefused(db, rf"schema is at version {self.versions[-2]}, this binary "
                                    rf"needs {self.latest}; run referrald --migrate")

    def test_schema_changed_under_a_running_daemon(self):
        """The pool checks the version on every (re)connection: after a
        newer schema appears, reconnected sessions are refused and the state
        says why; once it is back, the pool recovers."""
        db = self.database()
        community = harness.Community(self.pg, "schema", dbname=db)
        d = harness.Daemon(self.pg.dsn(db), name="schema",
                           settings={"db_reconnect_max_ms": "200"})
        self.addCleanup(d.stop)
        d.start()
        mon = self.open_client(d)
        self.assertOk(mon.hello(community["monitor"]), "hello")

        def state(want):
            def check():
                st = mon.status().status
                return st if st.database_state == want else None
            return harness.wait_for(check, 15, interval=0.05, what=f"database_state {want}")

        state("up")
        self.pg.psql(f"INSERT INTO schema_migrations (version, name) "
                     f"VALUES ({self.latest + 1}, 'from_the_future')", dbname=db)
        # Only this database's sessions: pg_stat_activity spans the cluster.
        self.pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE application_name = 'referrald' AND datname = current_database()",
                     dbname=db)
        state("down")
        harness.wait_for(lambda: re.search(r"schema is at version \d+, this daemon needs",
                                           mon.status().status.database_error), 10,
                         what="database_error to name the schema version")
        with d.client() as c:
            resp = c.hello(community["clinic"])
            self.assertError(resp, pb.UNAVAILABLE)
        self.pg.psql(f"DELETE FROM schema_migrations WHERE version = {self.latest + 1}", dbname=db)
        state("up")
        with d.client() as c:
            self.assertOk(c.hello(community["clinic"]), "hello")


if __name__ == "__main__":
    unittest.main()
