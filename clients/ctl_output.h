/*
 * ctl_output.h: referralctl's output. Any protocol message is turned into
 * JSON by walking its descriptor, so every command gets --json for free; the
 * human form prints the same tree as indented "key: value" lines.
 */
#ifndef REFERRALCTL_OUTPUT_H
#define REFERRALCTL_OUTPUT_H

#include <stdio.h>

#include <json-c/json.h>
#include <protobuf-c/protobuf-c.h>

/* Field names as in the .proto; enums as their names; 64-bit integers as
 * JSON numbers; bytes as base64 is not needed yet, so as a length. */
json_object *ctl_message_to_json(const ProtobufCMessage *msg);
void ctl_print_json(FILE *out, json_object *obj);
void ctl_print_human(FILE *out, json_object *obj, int indent);

/* "2026-11-23 21:11:56" in the local time of this machine (its TZ); "-" for
 * 0. */
void ctl_local_time(char *buf, size_t len, int64_t at);
/* A duration at a glance: "45m", "3h05m", "2d04h". */
void ctl_format_age(char *buf, size_t len, long long seconds);

#endif
