/* wire.c: message encoding over frames; see wire.h. */
#include "wire.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "frame.h"

int wire_write(struct evbuffer *out, const ProtobufCMessage *msg, uint32_t max_body)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	if (len > max_body || len > UINT32_MAX - FRAME_HEADER_BYTES)
		return -1;
	struct evbuffer_iovec vec;
	size_t total = FRAME_HEADER_BYTES + len;
	if (evbuffer_reserve_space(out, (ev_ssize_t)total, &vec, 1) < 1)
		return -1;
	/* One vector of at least `total` bytes was asked for and granted. */
	uint8_t *p = vec.iov_base;
	frame_put_header(p, (uint32_t)len);
	protobuf_c_message_pack(msg, p + FRAME_HEADER_BYTES);
	vec.iov_len = total;
	return evbuffer_commit_space(out, &vec, 1);
}

ProtobufCMessage *wire_unpack(const ProtobufCMessageDescriptor *desc,
			      const uint8_t *body, size_t len)
{
	return protobuf_c_message_unpack(desc, NULL, len, body);
}

static int append_path(char *path, size_t pathlen, size_t at, const char *part)
{
	int n = snprintf(path + at, pathlen - at, "%s%s", at ? "." : "", part);
	return (n < 0 || (size_t)n >= pathlen - at) ? (int)(pathlen - at - 1) : n;
}

static int find_unknown(const ProtobufCMessage *msg, char *path, size_t pathlen, size_t at)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	if (msg->n_unknown_fields > 0) {
		char tag[24];
		snprintf(tag, sizeof tag, "#%u", msg->unknown_fields[0].tag);
		append_path(path, pathlen, at, tag);
		return 1;
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const char *base = (const char *)msg;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t which = *(const uint32_t *)(base + f->quantifier_offset);
			if (which != f->id)
				continue;
		}
		size_t count = 1;
		const ProtobufCMessage *const *items;
		const ProtobufCMessage *single;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			count = *(const size_t *)(base + f->quantifier_offset);
			items = *(const ProtobufCMessage *const *const *)(base + f->offset);
		} else {
			single = *(const ProtobufCMessage *const *)(base + f->offset);
			items = &single;
		}
		for (size_t k = 0; k < count; k++) {
			if (items[k] == NULL)
				continue;
			size_t next = at + (size_t)append_path(path, pathlen, at, f->name);
			if (find_unknown(items[k], path, pathlen, next))
				return 1;
			path[at] = '\0';
		}
	}
	return 0;
}

int wire_find_unknown_field(const ProtobufCMessage *msg, char *path, size_t pathlen)
{
	if (pathlen == 0)
		return 0;
	path[0] = '\0';
	return find_unknown(msg, path, pathlen, 0);
}

/* Valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF) without NUL. */
static int good_text(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t need;
		uint32_t cp;
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (n - i <= need)
			return 0;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += need + 1;
	}
	return 1;
}

static int read_varint(const uint8_t *p, size_t len, size_t *at, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64 && *at < len; shift += 7) {
		uint8_t b = p[(*at)++];
		v |= (uint64_t)(b & 0x7F) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

static int bad_string(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
		      char *path, size_t pathlen, size_t at_path)
{
	size_t at = 0;
	while (at < len) {
		uint64_t key, n;
		if (read_varint(p, len, &at, &key) < 0)
			return 0; /* unpack accepted it: nothing more to say */
		unsigned wt = (unsigned)(key & 7);
		uint32_t tag = (uint32_t)(key >> 3);
		switch (wt) {
		case 0:
			if (read_varint(p, len, &at, &n) < 0)
				return 0;
			continue;
		case 1:
			at += 8;
			continue;
		case 5:
			at += 4;
			continue;
		case 2:
			break;
		default:
			return 0;
		}
		if (read_varint(p, len, &at, &n) < 0 || n > len - at)
			return 0;
		const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, tag);
		const uint8_t *v = p + at;
		at += (size_t)n;
		if (!f)
			continue;
		if (f->type == PROTOBUF_C_TYPE_STRING && !good_text(v, (size_t)n)) {
			append_path(path, pathlen, at_path, f->name);
			return 1;
		}
		if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			size_t next = at_path + (size_t)append_path(path, pathlen, at_path, f->name);
			if (bad_string(f->descriptor, v, (size_t)n, path, pathlen, next))
				return 1;
			path[at_path] = '\0';
		}
	}
	return 0;
}

int wire_find_bad_string(const ProtobufCMessageDescriptor *desc, const uint8_t *body,
			 size_t len, char *path, size_t pathlen)
{
	if (pathlen == 0)
		return 0;
	path[0] = '\0';
	return bad_string(desc, body, len, path, pathlen, 0);
}

const char *wire_error_code_name(Referral__ErrorCode code)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&referral__error_code__descriptor, (int)code);
	return v ? v->name : "UNKNOWN_ERROR";
}

static const char *const role_names[] = {
	[REFERRAL__ROLE__ROLE_NONE] = "none",
	[REFERRAL__ROLE__ROLE_CLINIC] = "clinic",
	[REFERRAL__ROLE__ROLE_DESK] = "desk",
	[REFERRAL__ROLE__ROLE_BILLING] = "billing",
	[REFERRAL__ROLE__ROLE_MONITOR] = "monitor",
	[REFERRAL__ROLE__ROLE_ADMIN] = "admin",
};

const char *wire_role_name(Referral__Role role)
{
	if ((unsigned)role < sizeof role_names / sizeof role_names[0] && role_names[role])
		return role_names[role];
	return "unknown";
}

Referral__Role wire_role_from_name(const char *name)
{
	for (unsigned i = 1; i < sizeof role_names / sizeof role_names[0]; i++)
		if (role_names[i] && strcmp(role_names[i], name) == 0)
			return (Referral__Role)i;
	return REFERRAL__ROLE__ROLE_NONE;
}
