/*
 * stats.h: the daemon's counters, declared once.
 *
 * Every output (status reply, and later the metrics endpoint) is fed from
 * this list, so a counter cannot be added to one and forgotten in another.
 */
#ifndef REFERRALD_STATS_H
#define REFERRALD_STATS_H

/* X(field, help) */
#define SERVER_COUNTERS(X)                                                      \
	X(connections_accepted, "client connections accepted")                 \
	X(connections_refused, "client connections refused at the limit")      \
	X(connections_closed, "client connections closed")                     \
	X(handshakes_ok, "successful Hello handshakes")                        \
	X(handshakes_failed, "refused Hello handshakes")                       \
	X(tls_handshakes_failed, "TLS handshakes that failed (bad certificate, old protocol, not TLS)") \
	X(requests_total, "requests answered")                                 \
	X(errors_total, "requests answered with an error")                     \
	X(requests_rate_limited, "requests refused by their terminal's rate limit") \
	X(frames_malformed, "frames that were not a valid Request")            \
	X(frames_too_large, "frames whose length exceeded max_frame_bytes")    \
	X(timeouts_handshake, "connections closed for not completing Hello")   \
	X(timeouts_idle, "connections closed for being idle")                  \
	X(events_pushed, "events pushed to subscribers")                      \
	X(book_batches, "booking batches sent to the database (group commit)") \
	X(book_batch_items, "Book requests sent in booking batches")           \
	X(book_batch_fallbacks, "booking batches refused as a whole and retried one by one") \
	X(book_batch_held, "Book requests that waited for the next batch because their session was in a running one") \
	X(replica_reads, "read-only requests sent to the replica")             \
	X(replica_fallbacks, "read-only requests sent to the primary because the replica was behind or down")

struct server_stats {
#define X(field, help) unsigned long long field;
	SERVER_COUNTERS(X)
#undef X
};

#endif
