/*
 * frame.h: the wire framing shared by the daemon and every client.
 *
 * A frame is a 4-byte big-endian body length followed by the body (one
 * protobuf message). The length is checked against the receiver's maximum
 * before a single byte of the body is buffered or allocated.
 */
#ifndef REFERRAL_FRAME_H
#define REFERRAL_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define FRAME_HEADER_BYTES 4u
#define FRAME_DEFAULT_MAX (1024u * 1024u)

enum frame_result {
	FRAME_NEED_MORE,  /* not enough bytes buffered yet */
	FRAME_READY,      /* a whole frame is buffered */
	FRAME_EMPTY,      /* length prefix 0: never valid in protocol v1 */
	FRAME_TOO_LARGE,  /* length prefix above the maximum */
};

/* Decides on the first `avail` bytes of a stream (hdr may be shorter than 4
 * when avail < 4). On FRAME_READY and FRAME_TOO_LARGE, *body_len is the
 * announced body length. */
enum frame_result frame_parse_header(const uint8_t *hdr, size_t avail,
				     uint32_t max_body, uint32_t *body_len);

/* Looks at the front of `in`. On FRAME_READY, *body points at the contiguous
 * body inside `in` (valid until `in` is changed) and *body_len is its size;
 * call frame_consume() once done with it. */
enum frame_result frame_next(struct evbuffer *in, uint32_t max_body,
			     const uint8_t **body, uint32_t *body_len);

/* Drops a frame of body_len bytes (and its header) from the front of `in`. */
void frame_consume(struct evbuffer *in, uint32_t body_len);

void frame_put_header(uint8_t out[FRAME_HEADER_BYTES], uint32_t body_len);

const char *frame_result_name(enum frame_result r);

#endif
