#!/usr/bin/python3
"""Publishing sessions: the reserved floor of each province, explicit and
percentage shares, weekly patterns in the community's time zone, argument
checks, who may publish for which institution, capacity changes, cancelling
a session (its bookings flagged, never dropped) and searching with pages and
filters."""

import datetime
import secrets
import unittest

import harness
from harness import pb
import slots_support as ss
from slots_support import DAY, HOUR, future


class FloorTest(ss.SlotsTestCase):
    """Henan (this class's community), Yunnan, Fujian and a custom floor."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.yunnan = ss.SlotCommunity(cls.pg, "publish-yunnan", province="yunnan")
        cls.fujian = ss.SlotCommunity(cls.pg, "publish-fujian", province="fujian")
        cls.custom = ss.SlotCommunity(cls.pg, "publish-custom", province="custom", floor_pct=30)
        cls.zero = ss.SlotCommunity(cls.pg, "publish-zero", province="custom", floor_pct=0)

    def desk_of(self, community):
        c = self.connect()
        self.assertOk(c.hello(community["desk"]), "hello")
        return c

    def assertFloorRefused(self, resp, pct, minimum, capacity):
        self.assertError(resp, pb.INVALID_ARGUMENT, field="reserved_slots")
        msg = resp.error.message
        self.assertIn(f"{pct}%", msg, "the message names the floor")
        self.assertRegex(msg, rf"\bat least {minimum}\b", "the message names the minimum")
        self.assertRegex(msg, rf"\b{capacity}\b", "the message names the capacity")

    def assertShare(self, session, capacity, reserved):
        self.assertEqual(
            (session.capacity, session.reserved_capacity, session.reserved_initial,
             session.reserved_left, session.public_left, session.released, session.cancelled),
            (capacity, reserved, reserved, reserved, capacity - reserved, False, False),
            session)

    def test_henan_floor_is_40_percent_rounded_up(self):
        desk = self.authed("desk")
        self.assertFloorRefused(desk.publish(capacity=7, reserved_slots=2), 40, 3, 7)
        self.assertFloorRefused(desk.publish(capacity=10, reserved_slots=3), 40, 4, 10)
        # Neither reserved_slots nor reserved_pct: the floor itself.
        for capacity, reserved in ((7, 3), (10, 4), (1, 1), (5, 2), (3, 2), (100, 40)):
            with self.subTest(capacity=capacity):
                s = self.publish_one(desk, capacity=capacity)
                self.assertShare(s, capacity, reserved)
        # Exactly the floor, and above it, are accepted.
        self.assertShare(self.publish_one(desk, capacity=7, reserved_slots=3), 7, 3)
        self.assertShare(self.publish_one(desk, capacity=7, reserved_slots=5), 7, 5)
        self.assertShare(self.publish_one(desk, capacity=7, reserved_slots=7), 7, 7)
        # More reserved than capacity is refused.
        self.assertError(desk.publish(capacity=7, reserved_slots=8), pb.INVALID_ARGUMENT,
                         field="reserved_slots")

    def test_henan_reserved_pct(self):
        desk = self.authed("desk")
        self.assertShare(self.publish_one(desk, capacity=10, reserved_pct=50), 10, 5)
        # 45% of 7 = 3.15, rounded up.
        self.assertShare(self.publish_one(desk, capacity=7, reserved_pct=45), 7, 4)
        self.assertShare(self.publish_one(desk, capacity=9, reserved_pct=100), 9, 9)
        # A share below the floor: 30% of 10 = 3 < 4.
        self.assertFloorRefused(desk.publish(capacity=10, reserved_pct=30), 40, 4, 10)
        self.assertError(desk.publish(capacity=10, reserved_pct=101), pb.INVALID_ARGUMENT,
                         field="reserved_pct")

    def test_yunnan_and_fujian_floor_is_20_percent(self):
        for community in (self.yunnan, self.fujian):
            with self.subTest(province=community.province):
                desk = self.desk_of(community)
                self.assertFloorRefused(desk.publish(capacity=12, reserved_slots=2), 20, 3, 12)
                self.assertShare(self.publish_one(desk, capacity=12), 12, 3)
                self.assertShare(self.publish_one(desk, capacity=5), 5, 1)
                self.assertShare(self.publish_one(desk, capacity=12, reserved_slots=6), 12, 6)
                self.assertShare(self.publish_one(desk, capacity=12, reserved_pct=25), 12, 3)
                self.assertFloorRefused(desk.publish(capacity=12, reserved_pct=10), 20, 3, 12)

    def test_custom_floor(self):
        desk = self.desk_of(self.custom)
        self.assertShare(self.publish_one(desk, capacity=7), 7, 3)     # 2.1 -> 3
        self.assertShare(self.publish_one(desk, capacity=10), 10, 3)
        self.assertFloorRefused(desk.publish(capacity=10, reserved_slots=2), 30, 3, 10)
        # A floor of 0: no reserved share at all is allowed, more is too.
        desk0 = self.desk_of(self.zero)
        self.assertShare(self.publish_one(desk0, capacity=10), 10, 0)
        self.assertShare(self.publish_one(desk0, capacity=10, reserved_slots=2), 10, 2)

    def test_province_presets_cannot_go_below_the_policy(self):
        c = harness.sql_literal(self.yunnan.community_id)
        with self.assertRaisesRegex(AssertionError, "at least 20%"):
            self.pg.psql(f"UPDATE communities SET reserve_floor_pct = 10 WHERE community_id = {c}")
        c = harness.sql_literal(self.community.community_id)
        with self.assertRaisesRegex(AssertionError, "at least 40%"):
            self.pg.psql(f"UPDATE communities SET reserve_floor_pct = 39 WHERE community_id = {c}")


class PublishArgumentsTest(ss.SlotsTestCase):

    def test_weekly_pattern_in_shanghai_time(self):
        desk = self.authed("desk")
        monday = ss.next_monday()
        weeks = 3
        weekly = pb.WeeklyPattern(first_date=monday.isoformat(), weeks=weeks, weekdays=[1, 4],
                                  start_time="08:00", end_time="11:30")
        resp = desk.publish(capacity=20, resource="dr-li", department="internal", weekly=weekly)
        self.assertOk(resp, "publish")
        got = [(s.starts_at, s.ends_at) for s in resp.publish.sessions]
        want = []
        for w in range(weeks):
            for offset in (0, 3):    # Monday, Thursday
                day = monday + datetime.timedelta(days=7 * w + offset)
                want.append((ss.shanghai_ts(day, "08:00"), ss.shanghai_ts(day, "11:30")))
        self.assertEqual(sorted(got), want, "2 sessions a week at 08:00-11:30 Shanghai time")
        self.assertEqual(len(set(s.session_id for s in resp.publish.sessions)), 2 * weeks)
        for s in resp.publish.sessions:
            local = datetime.datetime.fromtimestamp(s.starts_at, ss.SHANGHAI)
            self.assertIn(local.isoweekday(), (1, 4))
            self.assertEqual((local.hour, local.minute), (8, 0))
            # 08:00 in Shanghai (UTC+8) is midnight UTC.
            self.assertEqual(s.starts_at % DAY, 0)
            self.assertEqual((s.capacity, s.reserved_capacity, s.resource_id, s.department_id,
                              s.institution_id, s.kind),
                             (20, 8, "dr-li", "internal", "county-hospital", pb.KIND_EXPERT))
        # They are real sessions: search finds every one of them.
        resp2 = desk.search(resource_id="dr-li", department_id="internal",
                            until=ss.shanghai_ts(monday + datetime.timedelta(days=7 * weeks),
                                                 "00:00"),
                            page_size=500)
        self.assertOk(resp2, "sessions")
        self.assertLessEqual({s.session_id for s in resp.publish.sessions},
                             {s.session_id for s in resp2.sessions.sessions})

    def test_weekly_pattern_sunday_and_single_day(self):
        desk = self.authed("desk")
        monday = ss.next_monday()
        weekly = pb.WeeklyPattern(first_date=monday.isoformat(), weeks=2, weekdays=[7],
                                  start_time="14:00", end_time="17:00")
        resp = desk.publish(capacity=5, kind=pb.KIND_EXAM, department="radiology",
                            resource="ct-1", weekly=weekly)
        self.assertOk(resp, "publish")
        starts = sorted(s.starts_at for s in resp.publish.sessions)
        self.assertEqual(starts, [ss.shanghai_ts(monday + datetime.timedelta(days=6), "14:00"),
                                  ss.shanghai_ts(monday + datetime.timedelta(days=13), "14:00")])

    def test_validation_errors(self):
        desk = self.authed("desk")
        s = future()
        monday = ss.next_monday()
        weekly = pb.WeeklyPattern(first_date=monday.isoformat(), weeks=1, weekdays=[1],
                                  start_time="08:00", end_time="12:00")
        cases = [
            ("kind missing", ss.publish_request(kind=pb.KIND_UNSPECIFIED),
             pb.INVALID_ARGUMENT, "kind"),
            ("kind unknown", ss.publish_request(kind=9), pb.INVALID_ARGUMENT, "kind"),
            ("department missing", ss.publish_request(department=""),
             pb.INVALID_ARGUMENT, "department_id"),
            ("resource missing", ss.publish_request(resource=""),
             pb.INVALID_ARGUMENT, "resource_id"),
            ("times and weekly", ss.publish_request(times=[(s, s + HOUR)], weekly=weekly),
             pb.INVALID_ARGUMENT, "times"),
            ("neither times nor weekly", ss.publish_request(times=[], weekly=None),
             pb.INVALID_ARGUMENT, "times"),
            ("past start", ss.publish_request(start=future(days=-1)),
             pb.INVALID_ARGUMENT, "when"),
            ("one past start among future ones",
             ss.publish_request(times=[(s, s + HOUR), (future(days=-2), future(days=-2) + HOUR)]),
             pb.INVALID_ARGUMENT, "when"),
            ("ends before it starts", ss.publish_request(times=[(s, s - HOUR)]),
             pb.INVALID_ARGUMENT, "when"),
            ("ends when it starts", ss.publish_request(times=[(s, s)]),
             pb.INVALID_ARGUMENT, "when"),
            ("capacity 0", ss.publish_request(capacity=0), pb.INVALID_ARGUMENT, "capacity"),
            ("capacity too large", ss.publish_request(capacity=10001),
             pb.INVALID_ARGUMENT, "capacity"),
            ("unknown department", ss.publish_request(department="dermatology"),
             pb.NOT_FOUND, "department_id"),
            ("department of another institution", ss.publish_request(department="acupuncture"),
             pb.NOT_FOUND, "department_id"),
            ("expert of another institution", ss.publish_request(resource="dr-zhao"),
             pb.NOT_FOUND, "resource_id"),
            ("family doctor is no expert", ss.publish_request(resource="fd-a"),
             pb.NOT_FOUND, "resource_id"),
            ("weekly: 0 weeks",
             ss.publish_request(weekly=pb.WeeklyPattern(first_date=monday.isoformat(), weeks=0,
                                                        weekdays=[1], start_time="08:00",
                                                        end_time="12:00")),
             pb.INVALID_ARGUMENT, "weekly"),
            ("weekly: 53 weeks",
             ss.publish_request(weekly=pb.WeeklyPattern(first_date=monday.isoformat(), weeks=53,
                                                        weekdays=[1], start_time="08:00",
                                                        end_time="12:00")),
             pb.INVALID_ARGUMENT, "weekly"),
            ("weekly: no weekday",
             ss.publish_request(weekly=pb.WeeklyPattern(first_date=monday.isoformat(), weeks=1,
                                                        start_time="08:00", end_time="12:00")),
             pb.INVALID_ARGUMENT, "weekly"),
            ("weekly: weekday 8",
             ss.publish_request(weekly=pb.WeeklyPattern(first_date=monday.isoformat(), weeks=1,
                                                        weekdays=[1, 8], start_time="08:00",
                                                        end_time="12:00")),
             pb.INVALID_ARGUMENT, "weekly.weekdays"),
            ("weekly: in the past",
             ss.publish_request(weekly=pb.WeeklyPattern(
                 first_date=(monday - datetime.timedelta(days=28)).isoformat(), weeks=1,
                 weekdays=[1], start_time="08:00", end_time="12:00")),
             pb.INVALID_ARGUMENT, "when"),
            ("weekly: ends before it starts",
             ss.publish_request(weekly=pb.WeeklyPattern(first_date=monday.isoformat(), weeks=1,
                                                        weekdays=[1], start_time="12:00",
                                                        end_time="08:00")),
             pb.INVALID_ARGUMENT, "when"),
        ]
        count_sql = ("SELECT count(*) FROM sessions WHERE community_id = "
                     f"{harness.sql_literal(self.community.community_id)}")
        before = self.community.psql(count_sql)
        for what, req, code, field in cases:
            with self.subTest(what):
                self.assertError(desk.call(req), code, field=field)
        # Nothing of the above was published.
        self.assertEqual(self.community.psql(count_sql), before)
        # Malformed pattern values are refused, never INTERNAL.
        for first_date, start in (("2026-13-40", "08:00"), ("tomorrow-ish", "08:00"),
                                  (monday.isoformat(), "25:99")):
            with self.subTest(first_date=first_date, start=start):
                resp = desk.publish(weekly=pb.WeeklyPattern(
                    first_date=first_date, weeks=1, weekdays=[1], start_time=start,
                    end_time="12:00"))
                self.assertError(resp, pb.INVALID_ARGUMENT)

    def test_many_explicit_times_in_one_request(self):
        desk = self.authed("desk")
        base = future(days=4)
        times = [(base + i * HOUR, base + i * HOUR + 1800) for i in range(24)]
        resp = desk.publish(capacity=3, resource="dr-wang", times=times)
        self.assertOk(resp, "publish")
        self.assertEqual(sorted((s.starts_at, s.ends_at) for s in resp.publish.sessions), times)
        self.assertTrue(all(s.reserved_capacity == 2 for s in resp.publish.sessions))


class PublishPermissionTest(ss.SlotsTestCase):

    def test_desk_publishes_for_its_own_institution_only(self):
        desk = self.authed("desk")
        resp = desk.publish(institution="tcm-hospital", department="acupuncture",
                            resource="dr-zhao")
        self.assertError(resp, pb.PERMISSION_DENIED, field="institution_id")
        # Naming its own institution is fine.
        s = self.publish_one(desk, institution="county-hospital")
        self.assertEqual(s.institution_id, "county-hospital")
        # The TCM hospital's desk publishes its own sessions.
        tcm = self.authed("desk-tcm")
        s = self.publish_one(tcm, department="acupuncture", resource="dr-zhao")
        self.assertEqual((s.institution_id, s.department_id), ("tcm-hospital", "acupuncture"))
        self.assertError(tcm.publish(institution="county-hospital"), pb.PERMISSION_DENIED,
                         field="institution_id")

    def test_roles_that_may_not_publish(self):
        for name in ("clinic", "monitor", "billing"):
            with self.subTest(role=name):
                c = self.authed(name)
                self.assertError(c.publish(), pb.PERMISSION_DENIED)
                self.assertError(c.change_capacity(1, 5), pb.PERMISSION_DENIED)
                self.assertError(c.cancel_session(1, "no"), pb.PERMISSION_DENIED)

    def test_admin_names_the_institution(self):
        admin = self.authed("admin")
        self.assertError(admin.publish(), pb.INVALID_ARGUMENT, field="institution_id")
        s = self.publish_one(admin, institution="tcm-hospital", department="acupuncture",
                             resource="dr-zhao")
        self.assertEqual(s.institution_id, "tcm-hospital")
        self.assertError(admin.publish(institution="no-such-hospital"), pb.NOT_FOUND,
                         field="department_id")


class CapacityTest(ss.SlotsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")
        self.clinic = self.authed("clinic")

    def test_grow_keeps_the_share(self):
        s = self.publish_one(self.desk, capacity=10, reserved_slots=5)   # 50%
        resp = self.desk.change_capacity(s.session_id, 15)
        self.assertOk(resp, "session")
        # 50% of 15 = 7.5, rounded up; the share as published is kept.
        self.assertEqual((resp.session.capacity, resp.session.reserved_capacity,
                          resp.session.reserved_initial, resp.session.reserved_left,
                          resp.session.public_left), (15, 8, 5, 8, 7), resp)
        s2 = self.publish_one(self.desk, capacity=10)   # the floor: 4
        resp = self.desk.change_capacity(s2.session_id, 20)
        self.assertOk(resp, "session")
        self.assertEqual((resp.session.capacity, resp.session.reserved_capacity),
                         (20, 8), resp)
        self.assertCounters(s2.session_id, capacity=20, reserved_capacity=8,
                            reserved_initial=4)

    def test_repeated_changes_do_not_drift(self):
        """Each change applies the share as first published (rounded up
        once), not the share left by the previous change."""
        s = self.publish_one(self.desk, capacity=10, reserved_slots=5)
        for capacity, reserved in ((15, 8), (10, 5), (15, 8), (7, 4), (10, 5), (3, 2), (10, 5)):
            with self.subTest(capacity=capacity):
                resp = self.desk.change_capacity(s.session_id, capacity)
                self.assertOk(resp, "session")
                self.assertEqual((resp.session.capacity, resp.session.reserved_capacity,
                                  resp.session.reserved_initial), (capacity, reserved, 5))
        # Never below the floor: 40% of 4 = 1.6 -> 2 = 50% of 4.
        t = self.publish_one(self.desk, capacity=10, reserved_slots=4)
        resp = self.desk.change_capacity(t.session_id, 9)    # 40% of 9 = 3.6 -> 4
        self.assertOk(resp, "session")
        self.assertEqual(resp.session.reserved_capacity, 4)
        resp = self.desk.change_capacity(t.session_id, 10)
        self.assertOk(resp, "session")
        self.assertEqual(resp.session.reserved_capacity, 4)

    def test_shrink_never_below_what_is_booked(self):
        s = self.publish_one(self.desk, capacity=10)      # reserved 4, public 6
        patients = self.community.patients(5)
        for p in patients[:2]:
            self.assertBooked(self.clinic.book(s.session_id, p), pb.POOL_RESERVED)
        for p in patients[2:]:
            self.assertBooked(self.desk.book(s.session_id, p), pb.POOL_PUBLIC)
        # 4: reserved ceil(1.6) = 2 (>= 2 booked) but public 2 < 3 booked.
        resp = self.desk.change_capacity(s.session_id, 4)
        self.assertError(resp, pb.FAILED_PRECONDITION, field="capacity")
        self.assertCounters(s.session_id, capacity=10, reserved_capacity=4, reserved_booked=2,
                            public_booked=3)
        # 5: reserved 2, public 3: exactly what is booked.
        resp = self.desk.change_capacity(s.session_id, 5)
        self.assertOk(resp, "session")
        self.assertEqual((resp.session.capacity, resp.session.reserved_capacity,
                          resp.session.reserved_left, resp.session.public_left), (5, 2, 0, 0))
        # Now full in both pools.
        p = self.community.patient()
        self.assertError(self.desk.book(s.session_id, p), pb.FULL)
        self.assertError(self.clinic.book(s.session_id, p, fallback=True), pb.FULL)
        self.assertConsistent()

    def test_capacity_argument_and_scope(self):
        s = self.publish_one(self.desk, capacity=10)
        self.assertError(self.desk.change_capacity(s.session_id, 0), pb.INVALID_ARGUMENT,
                         field="capacity")
        self.assertError(self.desk.change_capacity(s.session_id, 10001), pb.INVALID_ARGUMENT,
                         field="capacity")
        self.assertError(self.desk.change_capacity(999999999, 5), pb.NOT_FOUND,
                         field="session_id")
        # Another hospital's desk does not see it.
        tcm = self.authed("desk-tcm")
        self.assertError(tcm.change_capacity(s.session_id, 12), pb.NOT_FOUND, field="session_id")
        # An admin may change any session of the community.
        admin = self.authed("admin")
        resp = admin.change_capacity(s.session_id, 12)
        self.assertOk(resp, "session")
        self.assertEqual(resp.session.capacity, 12)
        # A cancelled session cannot be changed.
        self.assertOk(self.desk.cancel_session(s.session_id, "expert ill"), "cancel_session")
        self.assertError(self.desk.change_capacity(s.session_id, 14), pb.FAILED_PRECONDITION)


class CancelSessionTest(ss.SlotsTestCase):

    def test_cancel_flags_bookings(self):
        desk = self.authed("desk")
        clinic = self.authed("clinic")
        s = self.publish_one(desk, capacity=6)
        p = self.community.patients(4)
        b1 = self.assertBooked(clinic.book(s.session_id, p[0]), pb.POOL_RESERVED)
        b2 = self.assertBooked(desk.book(s.session_id, p[1]), pb.POOL_PUBLIC)
        b3 = self.assertBooked(desk.book(s.session_id, p[2]), pb.POOL_PUBLIC)
        # A booking cancelled before stays 'cancelled', not flagged.
        resp = desk.cancel(b3.booking_id, "patient called")
        self.assertOk(resp, "booking")
        self.assertEqual(resp.booking.status, "cancelled")

        self.assertError(desk.cancel_session(s.session_id, ""), pb.INVALID_ARGUMENT,
                         field="reason")
        resp = desk.cancel_session(s.session_id, "expert on leave")
        self.assertOk(resp, "cancel_session")
        self.assertEqual((resp.cancel_session.session_id, resp.cancel_session.bookings_flagged),
                         (s.session_id, 2))

        # The bookings are kept, flagged, and visible with include_cancelled.
        resp = desk.list_bookings(session_id=s.session_id, include_cancelled=True)
        self.assertOk(resp, "bookings")
        got = {b.booking_id: (b.status, b.cancel_reason, b.patient_id)
               for b in resp.bookings.bookings}
        self.assertEqual(got, {
            b1.booking_id: ("session_cancelled", "expert on leave", p[0]),
            b2.booking_id: ("session_cancelled", "expert on leave", p[1]),
            b3.booking_id: ("cancelled", "patient called", p[2]),
        })
        # The clinic sees the booking it made, flagged too.
        resp = clinic.list_bookings(session_id=s.session_id, include_cancelled=True)
        self.assertOk(resp, "bookings")
        self.assertEqual([(b.booking_id, b.status) for b in resp.bookings.bookings],
                         [(b1.booking_id, "session_cancelled")])
        # Without include_cancelled: nothing live.
        resp = desk.list_bookings(session_id=s.session_id)
        self.assertOk(resp, "bookings")
        self.assertEqual(len(resp.bookings.bookings), 0)

        # Later bookings are refused, whoever asks.
        self.assertError(desk.book(s.session_id, p[3]), pb.FAILED_PRECONDITION,
                         field="session_id")
        self.assertError(clinic.book(s.session_id, p[3], fallback=True), pb.FAILED_PRECONDITION,
                         field="session_id")
        self.assertError(desk.emergency(s.session_id, p[3]), pb.FAILED_PRECONDITION)
        # Cancelling a flagged booking is harmless.
        resp = clinic.cancel(b1.booking_id)
        self.assertOk(resp, "booking")
        self.assertEqual((resp.booking.status, resp.booking.replayed), ("session_cancelled", True))
        # Cancelling the session again flags nothing more.
        resp = desk.cancel_session(s.session_id, "again")
        self.assertOk(resp, "cancel_session")
        self.assertEqual(resp.cancel_session.bookings_flagged, 0)
        # Search no longer offers it.
        self.assertIsNone(desk.session(s.session_id, "dr-wang"))
        # The patients are free for another session at the same time.
        s2 = self.publish_one(desk, capacity=6, resource="dr-li", department="internal",
                              start=s.starts_at)
        self.assertBooked(clinic.book(s2.session_id, p[0]), pb.POOL_RESERVED)

    def test_cancel_session_scope(self):
        desk = self.authed("desk")
        s = self.publish_one(desk, capacity=6)
        tcm = self.authed("desk-tcm")
        self.assertError(tcm.cancel_session(s.session_id, "not mine"), pb.NOT_FOUND,
                         field="session_id")
        self.assertError(desk.cancel_session(999999999, "no such"), pb.NOT_FOUND,
                         field="session_id")
        self.assertCounters(s.session_id, capacity=6)
        self.assertEqual(self.community.session_row(s.session_id)["status"], "open")
        admin = self.authed("admin")
        resp = admin.cancel_session(s.session_id, "admin cancels")
        self.assertOk(resp, "cancel_session")
        self.assertEqual(self.community.session_row(s.session_id)["status"], "cancelled")


class SearchTest(ss.SlotsTestCase):

    def setUp(self):
        self.desk = self.authed("desk")

    def page_through(self, client, **fields):
        pages, token = [], ""
        for _ in range(20):
            resp = client.search(page_token=token, **fields)
            self.assertOk(resp, "sessions")
            pages.append([s.session_id for s in resp.sessions.sessions])
            token = resp.sessions.next_page_token
            if not token:
                return pages
        self.fail(f"page tokens do not end: {pages}")

    def test_paging_chains_every_session_once(self):
        device = f"ct-{secrets.token_hex(4)}"
        base = future(days=5)
        # Two share a start time: the token must break the tie by id.
        times = [(base, base + HOUR), (base + 2 * HOUR, base + 3 * HOUR),
                 (base + 2 * HOUR, base + 3 * HOUR), (base + DAY, base + DAY + HOUR),
                 (base - DAY, base - DAY + HOUR)]
        resp = self.desk.publish(kind=pb.KIND_EXAM, department="radiology", resource=device,
                                 capacity=4, times=times)
        self.assertOk(resp, "publish")
        published = sorted(((s.starts_at, s.session_id) for s in resp.publish.sessions))
        clinic = self.authed("clinic")
        pages = self.page_through(clinic, resource_id=device, page_size=2)
        self.assertEqual([len(p) for p in pages], [2, 2, 1])
        flat = [i for p in pages for i in p]
        self.assertEqual(len(flat), len(set(flat)), "no session twice")
        self.assertEqual(flat, [i for _, i in published], "all five, by start time then id")
        # A page size equal to the count: the second page is empty and last.
        pages = self.page_through(clinic, resource_id=device, page_size=5)
        self.assertEqual(pages[0], [i for _, i in published])
        self.assertEqual([i for p in pages for i in p], [i for _, i in published])
        # Default page size covers them all at once.
        self.assertEqual(self.page_through(clinic, resource_id=device),
                         [[i for _, i in published]])
        self.assertError(clinic.search(resource_id=device, page_token="garbage"),
                         pb.INVALID_ARGUMENT, field="page_token")

    def test_filters(self):
        tag = secrets.token_hex(3)
        ct, mri = f"ct-{tag}", f"mri-{tag}"
        base = future(days=6)
        s_ct = self.publish_one(self.desk, kind=pb.KIND_EXAM, department="radiology",
                                resource=ct, capacity=2, start=base)
        s_mri = self.publish_one(self.desk, kind=pb.KIND_EXAM, department="radiology",
                                 resource=mri, capacity=2, start=base + HOUR)
        s_bed = self.publish_one(self.desk, kind=pb.KIND_BED, department="internal",
                                 resource=f"ward-{tag}", capacity=2, start=base + 2 * HOUR)
        s_exp = self.publish_one(self.desk, resource="dr-wang", capacity=2,
                                 start=base + 3 * HOUR)
        tcm = self.authed("desk-tcm")
        s_tcm = self.publish_one(tcm, department="acupuncture", resource="dr-zhao",
                                 capacity=2, start=base + 4 * HOUR)
        s_late = self.publish_one(self.desk, kind=pb.KIND_EXAM, department="radiology",
                                  resource=ct, capacity=2, start=base + 20 * DAY)
        mine = {s.session_id for s in (s_ct, s_mri, s_bed, s_exp, s_tcm, s_late)}
        window = dict(**{"from": base - HOUR}, until=base + 5 * HOUR)

        def ids(**fields):
            merged = dict(window, page_size=500)
            merged.update(fields)
            resp = self.desk.search(**merged)
            self.assertOk(resp, "sessions")
            return {s.session_id for s in resp.sessions.sessions} & mine

        self.assertEqual(ids(), {s_ct.session_id, s_mri.session_id, s_bed.session_id,
                                 s_exp.session_id, s_tcm.session_id})
        self.assertEqual(ids(institution_id="tcm-hospital"), {s_tcm.session_id})
        self.assertEqual(ids(department_id="radiology"), {s_ct.session_id, s_mri.session_id})
        self.assertEqual(ids(kind=pb.KIND_EXAM), {s_ct.session_id, s_mri.session_id})
        self.assertEqual(ids(kind=pb.KIND_BED), {s_bed.session_id})
        self.assertEqual(ids(kind=pb.KIND_EXPERT, institution_id="county-hospital"),
                         {s_exp.session_id})
        self.assertEqual(ids(resource_id=mri), {s_mri.session_id})
        # The window: from is inclusive, until exclusive.
        self.assertEqual(ids(**{"from": base + HOUR}, until=base + 2 * HOUR), {s_mri.session_id})
        self.assertEqual(ids(resource_id=ct, until=base + 21 * DAY),
                         {s_ct.session_id, s_late.session_id})
        # Default window: from now, 14 days: the late one is not in it.
        resp = self.desk.search(resource_id=ct)
        self.assertOk(resp, "sessions")
        self.assertEqual({s.session_id for s in resp.sessions.sessions}, {s_ct.session_id})
        self.assertError(self.desk.search(**{"from": base}, until=base), pb.INVALID_ARGUMENT,
                         field="until")
        self.assertError(self.desk.search(kind=7), pb.INVALID_ARGUMENT, field="kind")

        # only_available: a session with nothing left disappears.
        clinic = self.authed("clinic")
        p = self.community.patients(2)
        self.assertBooked(clinic.book(s_ct.session_id, p[0]), pb.POOL_RESERVED)
        self.assertBooked(self.desk.book(s_ct.session_id, p[1]), pb.POOL_PUBLIC)
        self.assertNotIn(s_ct.session_id, ids(only_available=True))
        self.assertIn(s_mri.session_id, ids(only_available=True))
        self.assertIn(s_ct.session_id, ids(only_available=False))
        # Cancelled sessions are not offered.
        self.assertOk(self.desk.cancel_session(s_mri.session_id, "device broken"),
                      "cancel_session")
        self.assertNotIn(s_mri.session_id, ids())
        # Search shows the counters.
        got = clinic.session(s_ct.session_id, ct)
        self.assertEqual((got.capacity, got.reserved_capacity, got.reserved_left, got.public_left),
                         (2, 1, 0, 0))

    def test_roles(self):
        for name in ("clinic", "desk", "monitor", "admin"):
            with self.subTest(role=name):
                self.assertOk(self.authed(name).search(), "sessions")
        self.assertError(self.authed("billing").search(), pb.PERMISSION_DENIED)


if __name__ == "__main__":
    unittest.main()
