/* frame.c: length-prefixed framing; see frame.h. */
#include "frame.h"

#include <event2/buffer.h>

enum frame_result frame_parse_header(const uint8_t *hdr, size_t avail,
				     uint32_t max_body, uint32_t *body_len)
{
	if (avail < FRAME_HEADER_BYTES)
		return FRAME_NEED_MORE;
	uint32_t len = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) |
		       ((uint32_t)hdr[2] << 8) | (uint32_t)hdr[3];
	*body_len = len;
	if (len == 0)
		return FRAME_EMPTY;
	if (len > max_body)
		return FRAME_TOO_LARGE;
	/* Compare in size_t: avail - 4 cannot wrap here, len + 4 could. */
	if (avail - FRAME_HEADER_BYTES < (size_t)len)
		return FRAME_NEED_MORE;
	return FRAME_READY;
}

enum frame_result frame_next(struct evbuffer *in, uint32_t max_body,
			     const uint8_t **body, uint32_t *body_len)
{
	uint8_t hdr[FRAME_HEADER_BYTES];
	size_t avail = evbuffer_get_length(in);
	ev_ssize_t got = evbuffer_copyout(in, hdr, sizeof hdr);
	if (got < 0)
		return FRAME_NEED_MORE;
	enum frame_result r = frame_parse_header(hdr, avail, max_body, body_len);
	if (r != FRAME_READY)
		return r;
	/* Make header and body contiguous; only now, with the length checked. */
	unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)((size_t)FRAME_HEADER_BYTES + *body_len));
	if (p == NULL)
		return FRAME_NEED_MORE;
	*body = p + FRAME_HEADER_BYTES;
	return FRAME_READY;
}

void frame_consume(struct evbuffer *in, uint32_t body_len)
{
	evbuffer_drain(in, FRAME_HEADER_BYTES + (size_t)body_len);
}

void frame_put_header(uint8_t out[FRAME_HEADER_BYTES], uint32_t body_len)
{
	out[0] = (uint8_t)(body_len >> 24);
	out[1] = (uint8_t)(body_len >> 16);
	out[2] = (uint8_t)(body_len >> 8);
	out[3] = (uint8_t)body_len;
}

const char *frame_result_name(enum frame_result r)
{
	switch (r) {
	case FRAME_NEED_MORE: return "need-more";
	case FRAME_READY: return "ready";
	case FRAME_EMPTY: return "empty";
	case FRAME_TOO_LARGE: return "too-large";
	}
	return "?";
}
