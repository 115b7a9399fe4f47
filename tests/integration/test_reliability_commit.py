#!/usr/bin/python3
"""Acknowledged means committed (docs/reliability.md §2): a write whose
statement returned its rows but whose transaction then failed at COMMIT is
answered with the error, never as done.

A deferred constraint trigger, added to a database of this module's own,
refuses one patient's bookings at COMMIT time (with a serialization
failure, which the daemon answers CONFLICT without a field: retry).
"""

import unittest

import harness
from harness import pb
import load_support as ls
import slots_support as ss

E = pb.ErrorCode


class CommitFailureTest(ss.SlotAssertions, harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.dbname = cls.pg.create_database("reliability_commit")
        cls.addClassCleanup(cls.pg.drop_database, cls.dbname)
        cls.community = ss.SlotCommunity(cls.pg, "reliability-commit", dbname=cls.dbname)
        cls.doomed, cls.other = cls.community.patients(2)
        cls.community.psql(f"""
CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.patient_id = '{cls.doomed}' THEN
        RAISE EXCEPTION 'refused at commit' USING ERRCODE = '40001';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON bookings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();""")
        cls.daemon = ss.start_daemon(cls.pg, cls.dbname, name="reliability_commit")
        cls.addClassCleanup(cls.daemon.stop)

    def test_failure_at_commit_is_not_acknowledged(self):
        c = ss.SlotClient(self.daemon.port)
        self.addCleanup(c.close)
        self.assertOk(c.hello(self.community["clinic"]), "hello")
        session = ls.publish(self.desk(), 1, 10)[0]
        resp = c.book(session, self.doomed, fallback=True)
        self.assertError(resp, E.CONFLICT, field="")
        self.assertEqual(self.community.bookings(session), {})
        self.assertBooked(c.book(session, self.other, fallback=True))
        self.assertEqual(len(self.community.bookings(session)), 1)
        self.assertConsistent()

    def desk(self):
        d = ss.SlotClient(self.daemon.port)
        self.addCleanup(d.close)
        self.assertOk(d.hello(self.community["desk"]), "hello")
        return d


if __name__ == "__main__":
    unittest.main()
