/*
 * test_wire.c: unit tests of proto/wire.h: message frames, decoding,
 * unknown-field detection and the name tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "frame.h"
#include "wire.h"

/* ---- helpers ------------------------------------------------------------ */

static struct evbuffer *new_buffer(void)
{
	struct evbuffer *b = evbuffer_new();
	assert_non_null(b);
	return b;
}

/* A Request carrying a Hello; strings point at static storage. */
static void make_hello_request(Referral__Request *req, Referral__Hello *hello)
{
	referral__request__init(req);
	referral__hello__init(hello);
	hello->protocol_version = REFERRAL_PROTOCOL_VERSION;
	hello->client_name = (char *)"test_wire 1.0";
	hello->community_id = (char *)"community-7";
	hello->terminal_id = (char *)"terminal-\xC3\xA9-42";
	hello->token = (char *)"tok_abcdefghijklmnopqrstuvwxyz012345";
	req->request_id = 0x1122334455667788ull;
	req->body_case = REFERRAL__REQUEST__BODY_HELLO;
	req->hello = hello;
}

static Referral__Request *unpack_request(const uint8_t *bytes, size_t len)
{
	return (Referral__Request *)wire_unpack(&referral__request__descriptor, bytes, len);
}

/* ---- wire_write / frame_next / wire_unpack -------------------------------- */

static void test_round_trip_hello(void **state)
{
	(void)state;
	Referral__Request req;
	Referral__Hello hello;
	make_hello_request(&req, &hello);
	size_t packed = protobuf_c_message_get_packed_size(&req.base);
	assert_true(packed > 0);

	struct evbuffer *b = new_buffer();
	/* Something already queued must stay in front, untouched. */
	assert_int_equal(evbuffer_add(b, "xyz", 3), 0);
	assert_int_equal(wire_write(b, &req.base, FRAME_DEFAULT_MAX), 0);
	assert_int_equal(evbuffer_get_length(b), 3 + FRAME_HEADER_BYTES + packed);
	uint8_t front[3 + FRAME_HEADER_BYTES];
	assert_int_equal(evbuffer_remove(b, front, sizeof front), (int)sizeof front);
	assert_memory_equal(front, "xyz", 3);
	uint8_t want_hdr[FRAME_HEADER_BYTES];
	frame_put_header(want_hdr, (uint32_t)packed);
	assert_memory_equal(front + 3, want_hdr, FRAME_HEADER_BYTES);
	/* Put the header back to read the frame as a receiver would. */
	assert_int_equal(evbuffer_prepend(b, want_hdr, sizeof want_hdr), 0);

	const uint8_t *body = NULL;
	uint32_t len = 0;
	assert_int_equal(frame_next(b, FRAME_DEFAULT_MAX, &body, &len), FRAME_READY);
	assert_int_equal(len, packed);
	Referral__Request *got = unpack_request(body, len);
	assert_non_null(got);
	assert_int_equal(got->request_id, 0x1122334455667788ull);
	assert_int_equal(got->body_case, REFERRAL__REQUEST__BODY_HELLO);
	assert_non_null(got->hello);
	assert_int_equal(got->hello->protocol_version, 1);
	assert_string_equal(got->hello->client_name, "test_wire 1.0");
	assert_string_equal(got->hello->community_id, "community-7");
	assert_string_equal(got->hello->terminal_id, "terminal-\xC3\xA9-42");
	assert_string_equal(got->hello->token, "tok_abcdefghijklmnopqrstuvwxyz012345");
	char path[64] = "sentinel";
	assert_int_equal(wire_find_unknown_field(&got->base, path, sizeof path), 0);
	assert_string_equal(path, "");
	protobuf_c_message_free_unpacked(&got->base, NULL);
	frame_consume(b, len);
	assert_int_equal(evbuffer_get_length(b), 0);
	evbuffer_free(b);
}

static void test_round_trip_several_messages(void **state)
{
	(void)state;
	struct evbuffer *b = new_buffer();
	Referral__Request req;
	Referral__Hello hello;
	make_hello_request(&req, &hello);
	Referral__Request ping_req = REFERRAL__REQUEST__INIT;
	Referral__Ping ping = REFERRAL__PING__INIT;
	static const uint8_t payload[5] = { 0, 1, 2, 0xFE, 0xFF };
	ping.payload.data = (uint8_t *)payload;
	ping.payload.len = sizeof payload;
	ping_req.request_id = 2;
	ping_req.body_case = REFERRAL__REQUEST__BODY_PING;
	ping_req.ping = &ping;
	Referral__Request status_req = REFERRAL__REQUEST__INIT;
	Referral__StatusRequest status = REFERRAL__STATUS_REQUEST__INIT;
	status_req.request_id = 3;
	status_req.body_case = REFERRAL__REQUEST__BODY_STATUS;
	status_req.status = &status;

	assert_int_equal(wire_write(b, &req.base, FRAME_DEFAULT_MAX), 0);
	assert_int_equal(wire_write(b, &ping_req.base, FRAME_DEFAULT_MAX), 0);
	assert_int_equal(wire_write(b, &status_req.base, FRAME_DEFAULT_MAX), 0);

	static const uint64_t ids[] = { 0x1122334455667788ull, 2, 3 };
	static const int cases[] = { REFERRAL__REQUEST__BODY_HELLO, REFERRAL__REQUEST__BODY_PING,
				     REFERRAL__REQUEST__BODY_STATUS };
	for (int i = 0; i < 3; i++) {
		const uint8_t *body = NULL;
		uint32_t len = 0;
		assert_int_equal(frame_next(b, FRAME_DEFAULT_MAX, &body, &len), FRAME_READY);
		Referral__Request *got = unpack_request(body, len);
		assert_non_null(got);
		assert_int_equal(got->request_id, ids[i]);
		assert_int_equal(got->body_case, cases[i]);
		if (got->body_case == REFERRAL__REQUEST__BODY_PING) {
			assert_int_equal(got->ping->payload.len, sizeof payload);
			assert_memory_equal(got->ping->payload.data, payload, sizeof payload);
		}
		protobuf_c_message_free_unpacked(&got->base, NULL);
		frame_consume(b, len);
	}
	assert_int_equal(evbuffer_get_length(b), 0);
	evbuffer_free(b);
}

static void test_write_refuses_oversized(void **state)
{
	(void)state;
	Referral__Request req;
	Referral__Hello hello;
	make_hello_request(&req, &hello);
	size_t packed = protobuf_c_message_get_packed_size(&req.base);

	struct evbuffer *b = new_buffer();
	assert_int_equal(evbuffer_add(b, "keep", 4), 0);
	assert_int_equal(wire_write(b, &req.base, (uint32_t)packed - 1), -1);
	assert_int_equal(wire_write(b, &req.base, 1), -1);
	assert_int_equal(wire_write(b, &req.base, 0), -1);
	/* Nothing was appended. */
	assert_int_equal(evbuffer_get_length(b), 4);
	uint8_t got[4];
	assert_int_equal(evbuffer_copyout(b, got, 4), 4);
	assert_memory_equal(got, "keep", 4);

	/* Exactly max_body fits. */
	assert_int_equal(wire_write(b, &req.base, (uint32_t)packed), 0);
	assert_int_equal(evbuffer_get_length(b), 4 + FRAME_HEADER_BYTES + packed);

	/* A big ping: one byte over the frame maximum is refused. */
	Referral__Request big = REFERRAL__REQUEST__INIT;
	Referral__Ping ping = REFERRAL__PING__INIT;
	uint8_t *payload = calloc(1, FRAME_DEFAULT_MAX);
	assert_non_null(payload);
	ping.payload.data = payload;
	ping.payload.len = FRAME_DEFAULT_MAX;
	big.body_case = REFERRAL__REQUEST__BODY_PING;
	big.ping = &ping;
	size_t big_packed = protobuf_c_message_get_packed_size(&big.base);
	assert_true(big_packed > FRAME_DEFAULT_MAX);
	size_t before = evbuffer_get_length(b);
	assert_int_equal(wire_write(b, &big.base, FRAME_DEFAULT_MAX), -1);
	assert_int_equal(evbuffer_get_length(b), before);
	assert_int_equal(wire_write(b, &big.base, (uint32_t)big_packed), 0);
	assert_int_equal(evbuffer_get_length(b), before + FRAME_HEADER_BYTES + big_packed);
	free(payload);
	evbuffer_free(b);
}

/* ---- wire_unpack on bad input --------------------------------------------- */

static void test_unpack_garbage_is_null(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		uint8_t bytes[16];
		size_t len;
	} bad[] = {
		{ "varint value missing", { 0x08 }, 1 },
		{ "varint longer than 10 bytes",
		  { 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, 12 },
		{ "tag varint unterminated", { 0xFF, 0xFF, 0xFF }, 3 },
		{ "field number 0", { 0x00, 0x01 }, 2 },
		{ "wire type 7", { 0x0F, 0x01 }, 2 },
		{ "wire type 6", { 0x0E, 0x01 }, 2 },
		{ "start group", { 0x0B }, 1 },
		{ "length past the end", { 0x52, 0x05, 0x08 }, 3 },
		{ "garbage inside hello", { 0x52, 0x02, 0xFF, 0xFF }, 4 },
		{ "fixed64 truncated", { 0x09, 1, 2, 3 }, 4 },
		{ "fixed32 truncated", { 0x0D, 1, 2 }, 3 },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ProtobufCMessage *m =
			wire_unpack(&referral__request__descriptor, bad[i].bytes, bad[i].len);
		if (m != NULL) {
			protobuf_c_message_free_unpacked(m, NULL);
			fail_msg("wire_unpack accepted: %s", bad[i].what);
		}
	}
	/* Zero bytes are a valid, all-default message: why the framing layer
	 * refuses a zero length prefix itself. */
	Referral__Request *empty = unpack_request((const uint8_t *)"", 0);
	assert_non_null(empty);
	assert_int_equal(empty->request_id, 0);
	assert_int_equal(empty->body_case, REFERRAL__REQUEST__BODY__NOT_SET);
	protobuf_c_message_free_unpacked(&empty->base, NULL);
}

static void test_unpack_random_bytes_does_not_crash(void **state)
{
	(void)state;
	uint64_t s = 0x243F6A8885A308D3ull;
	uint8_t buf[64];
	int rejected = 0;
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = 1 + iter % (int)sizeof buf;
		for (size_t i = 0; i < len; i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			buf[i] = (uint8_t)s;
		}
		ProtobufCMessage *m = wire_unpack(&referral__request__descriptor, buf, len);
		if (m == NULL) {
			rejected++;
			continue;
		}
		char path[64];
		(void)wire_find_unknown_field(m, path, sizeof path);
		assert_true(strlen(path) < sizeof path);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	assert_true(rejected > 1000);
}

/* ---- wire_find_unknown_field ---------------------------------------------- */

static void expect_unknown(const ProtobufCMessageDescriptor *desc, const uint8_t *bytes,
			   size_t len, const char *want_path)
{
	ProtobufCMessage *m = wire_unpack(desc, bytes, len);
	assert_non_null(m);
	char path[64];
	memset(path, 'x', sizeof path);
	int found = wire_find_unknown_field(m, path, sizeof path);
	if (want_path == NULL) {
		assert_int_equal(found, 0);
		assert_string_equal(path, "");
	} else {
		assert_int_equal(found, 1);
		assert_string_equal(path, want_path);
	}
	protobuf_c_message_free_unpacked(m, NULL);
}

/* Hand-encoded bytes. Tags: (field << 3) | wire type, as varints. */
static void test_find_unknown_top_level(void **state)
{
	(void)state;
	/* request_id = 7; field 99 (varint) = 1 */
	static const uint8_t top[] = { 0x08, 0x07, 0x98, 0x06, 0x01 };
	expect_unknown(&referral__request__descriptor, top, sizeof top, "#99");
	Referral__Request *r = unpack_request(top, sizeof top);
	assert_non_null(r);
	assert_int_equal(r->request_id, 7);
	assert_int_equal(r->base.n_unknown_fields, 1);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* field 90 (length-delimited) = "xy", then field 100 (varint): the first wins.
	 * (Request field numbers up to 69 are taken or reserved.) */
	static const uint8_t two[] = { 0xD2, 0x05, 0x02, 'x', 'y', 0xA0, 0x06, 0x05 };
	expect_unknown(&referral__request__descriptor, two, sizeof two, "#90");
}

static void test_find_unknown_in_hello(void **state)
{
	(void)state;
	/* request_id = 5; hello { protocol_version = 1; field 99 = 42 } */
	static const uint8_t in_hello[] = { 0x08, 0x05, 0x52, 0x05,
					    0x08, 0x01, 0x98, 0x06, 0x2A };
	expect_unknown(&referral__request__descriptor, in_hello, sizeof in_hello, "hello.#99");

	/* ping { payload = "ab"; field 7 = 1 } */
	static const uint8_t in_ping[] = { 0x5A, 0x06, 0x0A, 0x02, 'a', 'b', 0x38, 0x01 };
	expect_unknown(&referral__request__descriptor, in_ping, sizeof in_ping, "ping.#7");

	/* A truncating path buffer still yields a terminated prefix. */
	Referral__Request *r = unpack_request(in_hello, sizeof in_hello);
	assert_non_null(r);
	char small[4];
	memset(small, 'x', sizeof small);
	assert_int_equal(wire_find_unknown_field(&r->base, small, sizeof small), 1);
	assert_string_equal(small, "hel");
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_find_unknown_path_resets_between_fields(void **state)
{
	(void)state;
	/* Response: error { code = 1 } (clean), hello { field 77 = 3 }. The
	 * path must not keep "error" from the clean subtree. */
	static const uint8_t resp[] = { 0x08, 0x09, 0x12, 0x02, 0x08, 0x01,
					0x52, 0x03, 0xE8, 0x04, 0x03 };
	expect_unknown(&referral__response__descriptor, resp, sizeof resp, "hello.#77");
	/* error { field 9 = 1 }: a plain (non-oneof) message field. */
	static const uint8_t in_error[] = { 0x12, 0x04, 0x08, 0x01, 0x48, 0x01 };
	expect_unknown(&referral__response__descriptor, in_error, sizeof in_error, "error.#9");
}

static void test_find_unknown_none(void **state)
{
	(void)state;
	static const uint8_t clean[] = { 0x08, 0x05, 0x52, 0x02, 0x08, 0x01 };
	expect_unknown(&referral__request__descriptor, clean, sizeof clean, NULL);
	static const uint8_t clean_resp[] = { 0x08, 0x09, 0x12, 0x02, 0x08, 0x01,
					      0x5A, 0x03, 0x0A, 0x01, 'z' };
	expect_unknown(&referral__response__descriptor, clean_resp, sizeof clean_resp, NULL);
	expect_unknown(&referral__request__descriptor, (const uint8_t *)"", 0, NULL);
}

/* ---- name tables ------------------------------------------------------------ */

static void test_role_names(void **state)
{
	(void)state;
	static const struct {
		Referral__Role role;
		const char *name;
	} roles[] = {
		{ REFERRAL__ROLE__ROLE_CLINIC, "clinic" },
		{ REFERRAL__ROLE__ROLE_DESK, "desk" },
		{ REFERRAL__ROLE__ROLE_BILLING, "billing" },
		{ REFERRAL__ROLE__ROLE_MONITOR, "monitor" },
		{ REFERRAL__ROLE__ROLE_ADMIN, "admin" },
	};
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
		assert_string_equal(wire_role_name(roles[i].role), roles[i].name);
		assert_int_equal(wire_role_from_name(roles[i].name), roles[i].role);
	}
	assert_string_equal(wire_role_name(REFERRAL__ROLE__ROLE_NONE), "none");
	assert_string_equal(wire_role_name((Referral__Role)6), "unknown");
	assert_string_equal(wire_role_name((Referral__Role)1000), "unknown");
	assert_string_equal(wire_role_name((Referral__Role)-1), "unknown");

	assert_int_equal(wire_role_from_name("none"), REFERRAL__ROLE__ROLE_NONE);
	assert_int_equal(wire_role_from_name(""), REFERRAL__ROLE__ROLE_NONE);
	assert_int_equal(wire_role_from_name("Clinic"), REFERRAL__ROLE__ROLE_NONE);
	assert_int_equal(wire_role_from_name("clinic "), REFERRAL__ROLE__ROLE_NONE);
	assert_int_equal(wire_role_from_name("admins"), REFERRAL__ROLE__ROLE_NONE);
	assert_int_equal(wire_role_from_name("unknown"), REFERRAL__ROLE__ROLE_NONE);
}

static void test_error_code_names(void **state)
{
	(void)state;
	static const char *const names[] = {
		"ERROR_NONE", "INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "CONFLICT",
		"FULL", "UNAVAILABLE", "OVERLOADED", "INTERNAL", "UNAUTHENTICATED",
		"VERSION_MISMATCH", "FRAME_TOO_LARGE", "MALFORMED", "UNIMPLEMENTED",
		"FAILED_PRECONDITION",
	};
	for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
		assert_string_equal(wire_error_code_name((Referral__ErrorCode)i), names[i]);
	assert_string_equal(wire_error_code_name(REFERRAL__ERROR_CODE__MALFORMED), "MALFORMED");
	assert_string_equal(wire_error_code_name((Referral__ErrorCode)15), "UNKNOWN_ERROR");
	assert_string_equal(wire_error_code_name((Referral__ErrorCode)-1), "UNKNOWN_ERROR");
	assert_string_equal(wire_error_code_name((Referral__ErrorCode)100000), "UNKNOWN_ERROR");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_hello),
		cmocka_unit_test(test_round_trip_several_messages),
		cmocka_unit_test(test_write_refuses_oversized),
		cmocka_unit_test(test_unpack_garbage_is_null),
		cmocka_unit_test(test_unpack_random_bytes_does_not_crash),
		cmocka_unit_test(test_find_unknown_top_level),
		cmocka_unit_test(test_find_unknown_in_hello),
		cmocka_unit_test(test_find_unknown_path_resets_between_fields),
		cmocka_unit_test(test_find_unknown_none),
		cmocka_unit_test(test_role_names),
		cmocka_unit_test(test_error_code_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
