-- 009: a page of bookings reads a page, not the community.
--
-- ListBookings was one prepared statement whose filters were all optional
-- ("$2 = '' OR ..."). Its plan had to serve every combination, so it read
-- every booking of the community, joined each to its session and sorted
-- them all to return one page: half a second for 300,000 bookings, and a
-- county's bookings only grow. Now:
--
--   * bookings_by_time serves the list's order (the appointment's start,
--     then the booking id, as the page token): a page walks the index from
--     the token and stops when it is full;
--   * bookings_not_booked_patient finds a patient's cancelled bookings (the
--     booked ones are in the overlap constraint's index, which holds only
--     those); partial, so that a booking does not pay for it, only a
--     cancellation;
--   * list_bookings() is planned for the filters a call actually has
--     (force_custom_plan): a session's bookings come from bookings_session,
--     a patient's from the overlap constraint's index (led by patient_id
--     since 008), everything else from bookings_by_time.
--
-- A clinic's or a desk's list (bookings it made, or of its hospital's
-- sessions: two tables, so no one index) walks bookings_by_time and skips
-- the others' bookings; it reads about a page divided by the institution's
-- share of the community's bookings.

CREATE INDEX bookings_by_time ON bookings (community_id, lower(period), booking_id);
CREATE INDEX bookings_not_booked_patient ON bookings (community_id, patient_id)
    WHERE status <> 'booked';

CREATE FUNCTION list_bookings(
    p_community text, p_institution text, p_session bigint, p_patient text,
    p_cancelled boolean, p_after_epoch bigint, p_after_id uuid, p_limit integer)
RETURNS TABLE (booking_id uuid, session_id bigint, patient_id uuid, pool booking_pool,
               status booking_status, booked_by_institution text, created_epoch bigint,
               starts_epoch bigint, referral_id text, cancel_reason text)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT b.booking_id, b.session_id, b.patient_id, b.pool, b.status, b.booked_by_institution,
           extract(epoch FROM b.created_at)::bigint, extract(epoch FROM lower(b.period))::bigint,
           coalesce(b.referral_id::text, ''), coalesce(b.cancel_reason, '')
      FROM bookings b JOIN sessions s USING (community_id, session_id)
     WHERE b.community_id = p_community
       AND (p_institution = '' OR b.booked_by_institution = p_institution
            OR s.institution_id = p_institution)
       AND (p_session = 0 OR b.session_id = p_session)
       -- Said twice, so that each half matches a partial index: booked
       -- bookings are in the overlap constraint's, the others in
       -- bookings_not_booked_patient.
       AND (p_patient = ''
            OR (b.status = 'booked' AND b.patient_id = nullif(p_patient, '')::uuid)
            OR (b.status <> 'booked' AND b.patient_id = nullif(p_patient, '')::uuid))
       AND (p_cancelled OR b.status = 'booked')
       AND (lower(b.period), b.booking_id) > (to_timestamp(p_after_epoch), p_after_id)
     ORDER BY lower(b.period), b.booking_id
     LIMIT p_limit;
END $$;
