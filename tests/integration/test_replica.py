#!/usr/bin/python3
"""Reads from a streaming replica, within a measured staleness bound
(daemon/replica.c, docs/scaling.md).

A private primary and a real hot standby (pg_basebackup, streaming
replication). The daemon sends session searches to the standby while it is
within db_replica_max_lag_ms of the primary, and to the primary otherwise;
bookings always go to the primary. With replay paused on the standby, a
search answered by the standby cannot see a session published since, and
once the bound has passed the searches go to the primary and see it."""

import time
import unittest

import harness
from harness import pb
from metrics_support import sample, scrape
import slots_support as ss

MAX_LAG_MS = 3000


def replica_figures(daemon):
    fams = scrape(daemon)
    return {
        "usable": sample(fams, "referrald_replica_usable"),
        "staleness": sample(fams, "referrald_replica_staleness_seconds"),
        "reads": sample(fams, "referrald_replica_reads", "referrald_replica_reads_total"),
        "fallbacks": sample(fams, "referrald_replica_fallbacks",
                            "referrald_replica_fallbacks_total"),
    }


class ReplicaReadsTest(ss.SlotAssertions, harness.IntegrationCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.private()
        cls.addClassCleanup(cls.pg.remove)
        cls.community = ss.SlotCommunity(cls.pg, "replica")
        # A hot standby needs at least the primary's max_connections.
        cls.standby = cls.pg.standby("replica", opts="-c fsync=off -c max_connections=200")
        cls.addClassCleanup(cls.standby.remove)
        cls.daemon = ss.start_daemon(cls.pg, "referral", {
            "db_replica_dsn": cls.standby.dsn(),
            "db_replica_max_lag_ms": str(MAX_LAG_MS),
            "log_level": "info",
        }, name="replica")
        cls.addClassCleanup(cls.daemon.stop)

    def setUp(self):
        self.clinic = ss.SlotClient(self.daemon.port)
        self.addCleanup(self.clinic.close)
        self.assertOk(self.clinic.hello(self.community["clinic"]), "hello")
        self.desk = ss.SlotClient(self.daemon.port)
        self.addCleanup(self.desk.close)
        self.assertOk(self.desk.hello(self.community["desk"]), "hello")

    def wait_usable(self, usable):
        harness.wait_for(lambda: replica_figures(self.daemon)["usable"] == usable, 30,
                         interval=0.1, what=f"referrald_replica_usable == {usable}")

    def publish(self, resource):
        resp = self.desk.publish(resource=resource, capacity=4, start=ss.future(days=3))
        self.assertOk(resp, "publish")
        return resp.publish.sessions[0].session_id

    def search(self, resource):
        """(session ids found, whether the replica answered)."""
        before = replica_figures(self.daemon)
        resp = self.clinic.search(resource_id=resource, until=ss.future(days=30))
        self.assertOk(resp, "sessions")
        after = replica_figures(self.daemon)
        from_replica = after["reads"] - before["reads"] == 1
        self.assertEqual(after["fallbacks"] - before["fallbacks"], 0 if from_replica else 1)
        return [s.session_id for s in resp.sessions.sessions], from_replica

    def standby_sql(self, sql):
        return self.standby.psql(sql, dbname="postgres")

    def test_searches_use_the_replica_within_the_bound(self):
        self.wait_usable(1)
        self.assertGreaterEqual(replica_figures(self.daemon)["staleness"], 0)
        self.assertLess(replica_figures(self.daemon)["staleness"], MAX_LAG_MS / 1000)
        s = self.publish("dr-wang")
        harness.wait_for(lambda: s in self.search("dr-wang")[0], 10, interval=0.1,
                         what="the session replicated and found")
        found, from_replica = self.search("dr-wang")
        self.assertTrue(from_replica, "a replica within the bound answers searches")

        # Bookings are decided on the primary, replica or not.
        p = self.community.patient()
        resp = self.clinic.call(ss.book_request(s, p))
        self.assertOk(resp, "booking")
        self.assertEqual(self.community.bookings(s)[resp.booking.booking_id][0], "reserved")

    def test_a_replica_behind_the_bound_is_not_read(self):
        self.wait_usable(1)
        self.standby_sql("SELECT pg_wal_replay_pause()")
        self.addCleanup(self.standby_sql, "SELECT pg_wal_replay_resume()")
        s = self.publish("dr-li")
        published = time.monotonic()
        # While within the bound the paused replica may still answer, and
        # then cannot know the new session; the primary always does.
        stale_reads = 0
        while True:
            found, from_replica = self.search("dr-li")
            if not from_replica:
                break
            self.assertNotIn(s, found, "the paused replica cannot have the new session")
            stale_reads += 1
            self.assertLess(time.monotonic() - published, MAX_LAG_MS / 1000 + 5,
                            "the replica is still read well past the bound")
            time.sleep(0.2)
        self.assertGreater(stale_reads, 0, "the replica answered within the bound")
        self.assertIn(s, found, "past the bound, the primary answers")
        self.assertEqual(replica_figures(self.daemon)["usable"], 0)
        self.daemon.wait_log("not used for reads")

        self.standby_sql("SELECT pg_wal_replay_resume()")
        self.wait_usable(1)
        found, from_replica = self.search("dr-li")
        self.assertTrue(from_replica)
        self.assertIn(s, found)


if __name__ == "__main__":
    unittest.main()
