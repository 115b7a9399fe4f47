-- A week of sessions for the demo community, starting tomorrow in the
-- community's time zone (not the server's: near midnight they differ).
-- Loaded after demo_community.sql; uses the same functions the daemon calls.
BEGIN;
SELECT count(*) AS expert_sessions FROM (
    SELECT p.* FROM weekly_starts('demo-county', (now() AT TIME ZONE 'Asia/Shanghai')::date + 1, 1, '{1,4}', '08:00', '12:00') w,
         publish_sessions('demo-county', 'demo-loader', 'county-hospital', 'cardiology', 'expert',
                          'dr-wang', 30, 0, 0, w.starts, w.ends) p
    UNION ALL
    SELECT p.* FROM weekly_starts('demo-county', (now() AT TIME ZONE 'Asia/Shanghai')::date + 1, 1, '{2,5}', '14:00', '17:30') w,
         publish_sessions('demo-county', 'demo-loader', 'county-hospital', 'cardiology', 'expert',
                          'dr-li', 20, 10, 0, w.starts, w.ends) p
    UNION ALL
    SELECT p.* FROM weekly_starts('demo-county', (now() AT TIME ZONE 'Asia/Shanghai')::date + 1, 1, '{1,2,3,4,5}', '08:00', '12:00') w,
         publish_sessions('demo-county', 'demo-loader', 'county-hospital', 'radiology', 'exam',
                          'ct-1', 12, 0, 0, w.starts, w.ends) p
    UNION ALL
    SELECT p.* FROM weekly_starts('demo-county', (now() AT TIME ZONE 'Asia/Shanghai')::date + 1, 1, '{1,2,3,4,5,6,7}', '00:00', '23:59') w,
         publish_sessions('demo-county', 'demo-loader', 'county-hospital', 'cardiology', 'bed',
                          'ward-3', 8, 0, 50, w.starts, w.ends) p
) s;
COMMIT;
