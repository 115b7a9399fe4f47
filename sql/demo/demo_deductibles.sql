-- Inpatient stays and their deductible decisions for the demo community, made
-- by the same functions the daemon calls. Loaded after demo_referrals.sql.
--
-- demo-county follows Fujian's rule (policy waive, window 15 days; the
-- amounts are in demo_community.sql): a stay reached by a referral from
-- another stay of the community pays no second deductible.
BEGIN;
SET LOCAL client_encoding = 'UTF8';

-- Patient 4 lay five days in the East Township Health Centre's ward,
-- recorded by the centre's billing office; full township deductible.
SELECT stay_id, replayed FROM record_stay('demo-county', 'billing-east', 'billing', 'township-east',
    '', '00000000-0000-4000-8000-000000000004', '',
    extract(epoch FROM now() - interval '5 days')::bigint,
    extract(epoch FROM now() - interval '2 hours')::bigint, NULL, 'demo-stay-1');

-- The same day the family doctor sends him up to the county hospital as an
-- emergency; the desk accepts and admits him: the county stay is waived.
SELECT referral_id FROM refer_up('demo-county', 'clinic-east', 'township-east', 'fd-zhang',
    '00000000-0000-4000-8000-000000000004', 'county-hospital', 'cardiology', 'I21.1',
    'inferior STEMI on the township ward; thrombolysis given, for PCI', 'emergency',
    NULL, 'auto', false, false, 'demo-referral-4') AS referral_id \gset
SELECT referral_id FROM referral_act('demo-county', 'desk-county', 'county-hospital', 'desk',
    'desk-yang', :'referral_id', 'accept', '', 0, NULL, '', NULL);
SELECT referral_id FROM referral_act('demo-county', 'desk-county', 'county-hospital', 'desk',
    'desk-yang', :'referral_id', 'admit', 'for PCI', 0, NULL, '', NULL);

-- Patient 6 (employee scheme) came to the county hospital's ward by himself
-- two days ago: no referral, the full county deductible for employees.
SELECT stay_id, replayed FROM record_stay('demo-county', 'billing-county', 'billing', 'county-hospital',
    '', '00000000-0000-4000-8000-000000000006', '',
    extract(epoch FROM now() - interval '2 days')::bigint, 0, NULL, 'demo-stay-2');
COMMIT;
