#!/usr/bin/python3
"""Failover under a booking load (docs/reliability.md).

A primary and a synchronous standby (pg_basebackup -R, streaming
replication, synchronous_standby_names naming the standby, synchronous_commit
on): a commit is acknowledged only once the standby has it. The daemon knows
both servers through a multi-host connection string with
target_session_attrs=read-write. Under load the primary is killed
(immediate shutdown) and the standby promoted: the daemon, not restarted,
finds the new primary, and the new primary holds every booking the clients
were told about, exactly once.
"""

import time
import unittest

import harness
import load_support as ls
import slots_support as ss

SESSIONS = 10
CAPACITY = 60
WORKERS = ("clinic", "clinic-b") * 4
STANDBY = "standby1"


class FailoverTest(ss.SlotAssertions, harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.primary = harness.Postgres.private(harness.DURABLE_PG_OPTS)
        cls.addClassCleanup(cls.primary.remove)
        cls.standby = cls.primary.standby(STANDBY)
        cls.addClassCleanup(cls.standby.remove)
        # Synchronous from now on: every commit waits for the standby.
        cls.primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY}'",
                         dbname="postgres")
        cls.primary.psql("SELECT pg_reload_conf()", dbname="postgres")
        harness.wait_for(lambda: cls.primary.psql(
            "SELECT sync_state FROM pg_stat_replication "
            f"WHERE application_name = '{STANDBY}'", dbname="postgres") == "sync", 20,
            what="the standby to be synchronous")

    def test_primary_killed_standby_promoted(self):
        community = ss.SlotCommunity(self.primary, "reliability-failover")
        self.community = community
        ports = f"{self.primary.env['PGPORT']},{self.standby.env['PGPORT']}"
        dsn = (f"host=127.0.0.1,127.0.0.1 port={ports} user=postgres dbname=referral "
               "target_session_attrs=read-write")
        daemon = harness.Daemon(dsn, name="reliability_failover",
                                settings={"db_pool_size": "4", "log_level": "info"})
        self.addCleanup(daemon.kill)
        daemon.start()
        pid = daemon.pid
        _, load = ls.round_robin_load(self, daemon, community, WORKERS, SESSIONS, CAPACITY,
                                      pace=0.02)

        load.wait_settled(40, what="bookings before the failover")
        self.primary.pgstop("immediate")
        booked_before = len(load.booked)
        # The clients meet the cluster without a primary for a moment.
        time.sleep(0.5)
        self.standby.promote()
        # From here on the standby is the database of record.
        community.pg = self.standby
        load.wait_settled(load.definite + SESSIONS * CAPACITY, timeout=90,
                          what="bookings after the failover")
        load.finish()
        print(load.summary())

        self.assertEqual(ls.exactly_once_problems(community, load), [])
        self.assertEqual(load.replay_problems(), [])
        self.assertTrue(daemon.running())
        self.assertEqual(daemon.pid, pid)
        self.assertGreater(len(load.booked), booked_before)
        self.assertEqual(len(load.booked), SESSIONS * CAPACITY, load.summary())
        self.assertIn("session is read-only", daemon.log(),
                      "the standby was tried and refused before its promotion")
        daemon.stop()


if __name__ == "__main__":
    unittest.main()
