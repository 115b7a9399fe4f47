/*
 * admin_http.h: the admin HTTP endpoint (libevent's evhttp) on its own
 * address, loopback by default: GET /metrics (Prometheus text format) and
 * GET /healthz (200 when the database is reachable and its schema is the
 * one this daemon needs, 503 with a one-line reason otherwise).
 */
#ifndef REFERRALD_ADMIN_HTTP_H
#define REFERRALD_ADMIN_HTTP_H

struct server;
struct admin_http;

/* Starts listening per the admin_* settings; NULL with *failed = 0 when the
 * endpoint is switched off, NULL with *failed = 1 on error (logged). */
struct admin_http *admin_http_start(struct server *srv, int *failed);
void admin_http_free(struct admin_http *a);

#endif
