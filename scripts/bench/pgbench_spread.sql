-- The pgbench baseline, spread: one durable booking per transaction, through
-- the project's own book_slot(), on a session drawn at random, for a fresh
-- patient with a key of its own (what referrald does for one Book).
-- Variables (pgbench -D): community, first, last.
\set s random(:first, :last)
SELECT b.outcome
  FROM (SELECT nextval('bench_patient_seq') AS i) AS x,
       LATERAL book_slot(:community, 'pgbench-01', 'village-a', 'clinic', 'fd-a', :s,
                         bench_patient(x.i), 'auto', true, NULL, 'pgb-' || x.i) AS b;
