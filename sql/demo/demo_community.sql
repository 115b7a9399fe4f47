-- Demo community, loaded after the schema migrations (psql -v ON_ERROR_STOP=1 -f).
--
-- One Henan county medical community ("1+N"): the county hospital leading it,
-- a supporting city hospital in its referral network, three township health
-- centres and five village clinics, each village clinic named after the
-- township it belongs to. All people here are synthetic.
--
-- Not loaded here: terminals (their token hashes are made by the daemon
-- binary when the demo is set up) and sessions (a later migration).

BEGIN;

-- This file is UTF-8, whatever the client's locale says.
SET LOCAL client_encoding = 'UTF8';

INSERT INTO communities (community_id, name, province, reserve_floor_pct,
                         reserved_requires_referral, deductible_policy)
VALUES ('demo-county', '示范县医共体 Demo County Medical Community', 'henan', 40,
        false, 'waive');

-- Deductibles (起付线) in fen: 20000 fen = 200 yuan.
INSERT INTO community_deductibles (community_id, level, scheme, amount_fen) VALUES
    ('demo-county', 'village',  'resident',  20000),
    ('demo-county', 'township', 'resident',  20000),
    ('demo-county', 'county',   'resident',  50000),
    ('demo-county', 'city',     'resident', 100000),
    ('demo-county', 'village',  'employee',  30000),
    ('demo-county', 'township', 'employee',  30000),
    ('demo-county', 'county',   'employee',  60000),
    ('demo-county', 'city',     'employee', 120000);

INSERT INTO institutions (community_id, institution_id, name, level, in_network) VALUES
    ('demo-county', 'county-hospital',  '示范县人民医院 Demo County People''s Hospital',      'county',   true),
    ('demo-county', 'city-hospital',    '示范市第一人民医院 Demo City First People''s Hospital', 'city',  true),
    ('demo-county', 'township-east',    '东乡镇卫生院 East Township Health Centre',            'township', true),
    ('demo-county', 'township-west',    '西乡镇卫生院 West Township Health Centre',            'township', true),
    ('demo-county', 'township-north',   '北乡镇卫生院 North Township Health Centre',           'township', true),
    ('demo-county', 'village-dongcun',  '东乡镇东村卫生室 Dongcun Village Clinic (East Township)',   'village', true),
    ('demo-county', 'village-lizhuang', '东乡镇李庄村卫生室 Lizhuang Village Clinic (East Township)', 'village', true),
    ('demo-county', 'village-xicun',    '西乡镇西村卫生室 Xicun Village Clinic (West Township)',     'village', true),
    ('demo-county', 'village-wangzhai', '西乡镇王寨村卫生室 Wangzhai Village Clinic (West Township)', 'village', true),
    ('demo-county', 'village-beicun',   '北乡镇北村卫生室 Beicun Village Clinic (North Township)',    'village', true);

-- Radiology hosts the bookable exam devices (CT, MRI, ultrasound).
INSERT INTO departments (community_id, institution_id, department_id, name) VALUES
    ('demo-county', 'county-hospital', 'cardiology', '心血管内科 Cardiology'),
    ('demo-county', 'county-hospital', 'radiology',  '放射科 Radiology'),
    ('demo-county', 'city-hospital',   'cardiology', '心血管内科 Cardiology');

INSERT INTO practitioners (community_id, practitioner_id, institution_id, department_id, name, kind) VALUES
    -- Family doctors (家庭医生): one per township centre and village clinic.
    ('demo-county', 'fd-zhang', 'township-east',    NULL, '张敏 Zhang Min',     'family_doctor'),
    ('demo-county', 'fd-liu',   'township-west',    NULL, '刘芳 Liu Fang',      'family_doctor'),
    ('demo-county', 'fd-zhao',  'township-north',   NULL, '赵强 Zhao Qiang',    'family_doctor'),
    ('demo-county', 'fd-sun',   'village-dongcun',  NULL, '孙建国 Sun Jianguo', 'family_doctor'),
    ('demo-county', 'fd-zhou',  'village-lizhuang', NULL, '周丽 Zhou Li',       'family_doctor'),
    ('demo-county', 'fd-wu',    'village-xicun',    NULL, '吴海 Wu Hai',        'family_doctor'),
    ('demo-county', 'fd-zheng', 'village-wangzhai', NULL, '郑秀英 Zheng Xiuying', 'family_doctor'),
    ('demo-county', 'fd-feng',  'village-beicun',   NULL, '冯军 Feng Jun',      'family_doctor'),
    -- Experts (专家) at the county hospital, one at the city hospital.
    ('demo-county', 'dr-wang',  'county-hospital', 'cardiology', '王立新 Wang Lixin', 'expert'),
    ('demo-county', 'dr-li',    'county-hospital', 'cardiology', '李静 Li Jing',      'expert'),
    ('demo-county', 'dr-chen',  'county-hospital', 'radiology',  '陈涛 Chen Tao',     'expert'),
    ('demo-county', 'dr-huang', 'city-hospital',   'cardiology', '黄志明 Huang Zhiming', 'expert'),
    -- Referral desk clerk (双向转诊服务科) at the county hospital.
    ('demo-county', 'desk-yang', 'county-hospital', NULL, '杨洁 Yang Jie', 'desk_clerk');

-- Patients: fixed ids so that demo scripts can name them; id_hash stands in
-- for the daemon's keyed hash of a resident ID number (synthetic input).
INSERT INTO patients (community_id, patient_id, id_hash, display_name, scheme, family_doctor_id)
SELECT 'demo-county', p.patient_id::uuid,
       sha256(convert_to('demo-patient-' || p.n, 'UTF8')),
       p.display_name, p.scheme::insurance_scheme, p.family_doctor_id
FROM (VALUES
    (1,  '00000000-0000-4000-8000-000000000001', '张*华', 'resident', 'fd-sun'),
    (2,  '00000000-0000-4000-8000-000000000002', '李*',   'resident', 'fd-sun'),
    (3,  '00000000-0000-4000-8000-000000000003', '王*芳', 'employee', 'fd-zhou'),
    (4,  '00000000-0000-4000-8000-000000000004', '赵*明', 'resident', 'fd-zhang'),
    (5,  '00000000-0000-4000-8000-000000000005', '刘*英', 'resident', 'fd-wu'),
    (6,  '00000000-0000-4000-8000-000000000006', '陈*',   'employee', 'fd-zheng'),
    (7,  '00000000-0000-4000-8000-000000000007', '杨*兰', 'resident', 'fd-liu'),
    (8,  '00000000-0000-4000-8000-000000000008', '黄*军', 'employee', 'fd-feng'),
    (9,  '00000000-0000-4000-8000-000000000009', '周*梅', 'resident', 'fd-feng'),
    (10, '00000000-0000-4000-8000-00000000000a', '吴*平', 'resident', 'fd-zhao')
) AS p (n, patient_id, display_name, scheme, family_doctor_id);

COMMIT;
