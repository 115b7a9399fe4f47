#!/usr/bin/python3
"""docs/referrals.md draws the state machine that the database enforces:
its transitions table must be the referral_transitions table, row for row,
so that neither can change without the other."""

import os
import unittest

import harness


def documented_transitions():
    with open(os.path.join(harness.SOURCE_DIR, "docs", "referrals.md")) as f:
        text = f.read()
    begin, end = "<!-- transitions:begin -->", "<!-- transitions:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1, "markers missing"
    block = text[text.index(begin) + len(begin):text.index(end)]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in block.strip().splitlines()]
    assert rows[0] == ["direction", "action", "from", "to", "side", "reason required"], rows[0]
    return [tuple(r) for r in rows[2:]]


class TransitionsDocTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()

    def test_doc_table_is_the_database_table(self):
        out = self.pg.psql(
            "SELECT direction, action, from_state, to_state, side,"
            " CASE WHEN reason_required THEN 'yes' ELSE 'no' END"
            " FROM referral_transitions")
        in_db = sorted(tuple(line.split("|")) for line in out.strip().splitlines())
        in_doc = documented_transitions()
        self.assertEqual(len(in_doc), len(set(in_doc)), "a row appears twice in the doc")
        self.assertGreater(len(in_db), 20)
        self.assertEqual(sorted(in_doc), in_db)


if __name__ == "__main__":
    unittest.main()
