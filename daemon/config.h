/*
 * config.h: referrald's settings, one struct, parsed afresh and swapped whole.
 *
 * Every setting is one row of the table in config.c: its name, type, default,
 * bounds, whether SIGHUP can change it live, and its documentation (which
 * `referrald --help-config` prints and docs/configuration.md mirrors).
 */
#ifndef REFERRALD_CONFIG_H
#define REFERRALD_CONFIG_H

#include <stdio.h>

#include "log.h"

struct config {
	char *listen_addr;
	int listen_port;
	char *port_file;
	char *tls_cert_file;
	char *tls_key_file;
	char *tls_ca_file;
	char *plain_addr;
	int plain_port;
	char *plain_port_file;
	char *admin_addr;
	int admin_port;
	char *admin_port_file;
	char *db_dsn;
	int db_pool_size;
	int db_queue_max;
	int db_queue_timeout_ms;
	int db_reconnect_max_ms;
	int db_statement_timeout_ms;
	int max_frame_bytes;
	int max_connections;
	int max_inflight_per_conn;
	int max_connections_per_terminal;
	int terminal_rate_per_s;
	int terminal_rate_burst;
	int max_output_bytes;
	int handshake_timeout_ms;
	int idle_timeout_ms;
	int shutdown_timeout_ms;
	int pbkdf2_iterations;
	int auth_threads;
	char *patient_id_key_file;
	int release_interval_ms;
	int events_poll_ms;
	int booking_batch_max;
	int booking_batches_in_flight;
	int booking_batches_per_session;
	char *db_replica_dsn;
	int db_replica_pool_size;
	int db_replica_max_lag_ms;
	int credentials_check_ms;
	int figures_pool_size;
	int figures_queue_max;
	int figures_statement_timeout_ms;
	int figures_metrics_interval_ms;
	enum log_level log_level;
};

/* Fills `cfg` from the defaults, then the file at `path` (may be NULL), then
 * the "key=value" overrides in order. On error returns -1 with a message in
 * err and leaves `cfg` freed. */
int config_load(struct config *cfg, const char *path, char *const *overrides,
		int n_overrides, char *err, size_t errlen);
void config_free(struct config *cfg);

/* For a reload: copies into `next` the value of every setting that cannot
 * change live and differs, logging a warning for each. Logs the live changes. */
void config_carry_restart_only(struct config *next, const struct config *cur);

/* 1 when addr is an IPv4 or IPv6 loopback address literal. */
int config_is_loopback(const char *addr);

/* Prints the effective settings in config-file syntax. */
void config_print(FILE *out, const struct config *cfg);
/* Prints every setting with its documentation, default and reload class. */
void config_print_help(FILE *out);

#endif
