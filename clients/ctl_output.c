/* ctl_output.c: see ctl_output.h. */
#include "ctl_output.h"

#include <string.h>
#include <time.h>

static json_object *field_value(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_object_new_int(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_object_new_int64(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return json_object_new_int64(*(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return json_object_new_uint64(*(const uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT:
		return json_object_new_double(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return json_object_new_double(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_object_new_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
			f->descriptor, *(const int *)p);
		return v ? json_object_new_string(v->name) : json_object_new_int(*(const int *)p);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return json_object_new_string(s ? s : "");
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		return json_object_new_string_len((const char *)b->data, (int)b->len);
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(const ProtobufCMessage *const *)p;
		return m ? ctl_message_to_json(m) : NULL;
	}
	}
	return NULL;
}

static size_t type_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	default:
		return 4;
	}
}

json_object *ctl_message_to_json(const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	const char *base = (const char *)msg;
	json_object *obj = json_object_new_object();
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
				continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const char *arr = *(const char *const *)(base + f->offset);
			json_object *a = json_object_new_array();
			for (size_t k = 0; k < n; k++) {
				json_object *v = field_value(f, arr + k * type_size(f->type));
				json_object_array_add(a, v ? v : json_object_new_null());
			}
			json_object_object_add(obj, f->name, a);
			continue;
		}
		json_object *v = field_value(f, base + f->offset);
		if (v)
			json_object_object_add(obj, f->name, v);
	}
	return obj;
}

void ctl_print_json(FILE *out, json_object *obj)
{
	fprintf(out, "%s\n", json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
								    JSON_C_TO_STRING_NOSLASHESCAPE));
}

void ctl_print_human(FILE *out, json_object *obj, int indent)
{
	if (json_object_get_type(obj) == json_type_array) {
		size_t n = json_object_array_length(obj);
		for (size_t i = 0; i < n; i++) {
			json_object *v = json_object_array_get_idx(obj, i);
			fprintf(out, "%*s- ", indent, "");
			if (json_object_get_type(v) == json_type_object) {
				fprintf(out, "\n");
				ctl_print_human(out, v, indent + 2);
			} else {
				fprintf(out, "%s\n", json_object_get_string(v));
			}
		}
		return;
	}
	json_object_object_foreach(obj, key, val) {
		enum json_type t = json_object_get_type(val);
		if (t == json_type_object || t == json_type_array) {
			fprintf(out, "%*s%s:\n", indent, "", key);
			ctl_print_human(out, val, indent + 2);
		} else {
			fprintf(out, "%*s%s: %s\n", indent, "", key, json_object_get_string(val));
		}
	}
}

void ctl_local_time(char *buf, size_t len, int64_t at)
{
	time_t t = (time_t)at;
	struct tm tm;
	if (at <= 0 || !localtime_r(&t, &tm))
		snprintf(buf, len, "-");
	else
		strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

void ctl_format_age(char *buf, size_t len, long long seconds)
{
	long long m = seconds > 0 ? seconds / 60 : 0;
	if (m < 60)
		snprintf(buf, len, "%lldm", m);
	else if (m < 24 * 60)
		snprintf(buf, len, "%lldh%02lldm", m / 60, m % 60);
	else
		snprintf(buf, len, "%lldd%02lldh", m / (24 * 60), m % (24 * 60) / 60);
}
