/*
 * wire.h: encoding and decoding of protocol messages over frames, shared by
 * the daemon and the clients.
 */
#ifndef REFERRAL_WIRE_H
#define REFERRAL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "referral.pb-c.h"

struct evbuffer;

#define REFERRAL_PROTOCOL_VERSION 1u

/* Appends `msg` to `out` as one frame. Returns -1 if the packed message would
 * not fit a frame of max_body bytes (nothing is appended then). */
int wire_write(struct evbuffer *out, const ProtobufCMessage *msg, uint32_t max_body);

/* Unpacks a message. Returns NULL when the bytes are not a valid message of
 * that type; protobuf-c does not say why, so the caller answers MALFORMED. */
ProtobufCMessage *wire_unpack(const ProtobufCMessageDescriptor *desc,
			      const uint8_t *body, size_t len);

/* Looks for fields the descriptors do not know, anywhere in the message tree.
 * Returns 1 and writes a path such as "hello.#99" when one is found,
 * 0 otherwise. */
int wire_find_unknown_field(const ProtobufCMessage *msg, char *path, size_t pathlen);

/* protobuf-c neither checks that strings are UTF-8 nor keeps bytes after an
 * embedded NUL (it hands out C strings, so "token\0junk" would read as
 * "token"). This walks the raw bytes of a message that unpacked cleanly and
 * returns 1 with a path such as "hello.token" when a string field holds
 * invalid UTF-8 or a NUL byte, 0 otherwise. */
int wire_find_bad_string(const ProtobufCMessageDescriptor *desc, const uint8_t *body,
			 size_t len, char *path, size_t pathlen);

/* "INVALID_ARGUMENT" etc. */
const char *wire_error_code_name(Referral__ErrorCode code);
const char *wire_role_name(Referral__Role role); /* "clinic", ... */
Referral__Role wire_role_from_name(const char *name);

#endif
