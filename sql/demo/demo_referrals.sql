-- A few referrals for the demo community, made by the same functions the
-- daemon calls, so the desk's worklist and the history have something to show.
-- Loaded after demo_sessions.sql.
BEGIN;
SET LOCAL client_encoding = 'UTF8';

-- An urgent up-referral from Dongcun village clinic with a reserved slot in
-- Dr Wang's first cardiology clinic.
SELECT outcome FROM refer_up('demo-county', 'clinic-dongcun', 'village-dongcun', 'fd-sun',
    '00000000-0000-4000-8000-000000000001', 'county-hospital', 'cardiology', 'I20.0',
    'unstable angina despite nitrates; needs cardiology review', 'urgent',
    (SELECT min(session_id) FROM sessions WHERE resource_id = 'dr-wang'), 'auto', false, false,
    'demo-referral-1');

-- A routine one without a slot yet: it waits on the desk's worklist.
SELECT outcome FROM refer_up('demo-county', 'clinic-east', 'township-east', 'fd-zhang',
    '00000000-0000-4000-8000-000000000004', 'county-hospital', 'radiology', 'R91',
    'shadow on chest film at the township centre; CT requested', 'routine',
    NULL, 'auto', false, false, 'demo-referral-2');

-- A down-referral for recovery after a heart attack, follow-up within a week.
SELECT outcome FROM refer_down('demo-county', 'desk-county', 'county-hospital', 'desk-yang',
    '00000000-0000-4000-8000-000000000003', 'township-east', 'cardiology', 'I21.4',
    'stable after NSTEMI, discharged for recovery near home',
    'aspirin and statin daily; walk 30 minutes a day; blood pressure weekly; back at once on chest pain',
    current_date + 7, NULL, 'demo-referral-3');
COMMIT;
