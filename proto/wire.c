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
