-- The pgbench baseline, hot: every client books the first session of the
-- hot range that is not full yet (bench_hot_session() in setup.sql), one
-- durable booking per transaction through book_slot().
-- Variables (pgbench -D): community, first, last.
SELECT b.outcome
  FROM (SELECT nextval('bench_patient_seq') AS i) AS x,
       LATERAL book_slot(:community, 'pgbench-01', 'village-a', 'clinic', 'fd-a',
                         bench_hot_session(:community, :first, :last),
                         bench_patient(x.i), 'auto', true, NULL, 'pgb-' || x.i) AS b;
