#!/usr/bin/python3
"""The admin HTTP endpoint: /metrics in the Prometheus text format, parsed by
the Prometheus client library, and /healthz (with the database down:
test_db_outage.py)."""

import os
import unittest

import harness
from metrics_support import sample, scrape
from harness import pb

E = pb.ErrorCode


class MetricsTest(harness.DaemonTestCase):
    daemon_settings = {"db_pool_size": "2"}

    def test_requests_are_counted_by_type_and_code(self):
        mon = self.authed("monitor")
        self.wait_db_up(mon)
        before = scrape(self.daemon)
        for _ in range(3):
            self.assertOk(mon.ping(), "ping")
        self.assertError(self.authed("clinic").status(), E.PERMISSION_DENIED)
        after = scrape(self.daemon)
        # The Prometheus parser strips _total from counter family names.
        fam = "referrald_requests"
        self.assertEqual(sample(after, fam, "referrald_requests_total", type="ping", code="ok")
                         - sample(before, fam, "referrald_requests_total", type="ping", code="ok"), 3)
        self.assertEqual(sample(after, fam, "referrald_requests_total", type="status",
                                code="PERMISSION_DENIED")
                         - sample(before, fam, "referrald_requests_total", type="status",
                                  code="PERMISSION_DENIED"), 1)
        self.assertEqual(after[fam].type, "counter")

    def test_latency_histogram_is_consistent(self):
        mon = self.authed("monitor")
        self.wait_db_up(mon)
        for _ in range(5):
            self.assertOk(mon.ping(), "ping")
        fams = scrape(self.daemon)
        h = fams["referrald_request_duration_seconds"]
        self.assertEqual(h.type, "histogram")
        buckets = [(s.labels["le"], s.value) for s in h.samples
                   if s.name.endswith("_bucket") and s.labels["type"] == "ping"]
        count = sample(fams, "referrald_request_duration_seconds",
                       "referrald_request_duration_seconds_count", type="ping")
        total = sample(fams, "referrald_request_duration_seconds",
                       "referrald_request_duration_seconds_sum", type="ping")
        self.assertGreaterEqual(count, 5)
        self.assertEqual(buckets[-1], ("+Inf", count))
        values = [v for _, v in buckets]
        self.assertEqual(values, sorted(values), "buckets are cumulative")
        self.assertGreater(total, 0)
        self.assertLess(total / count, 1.0, "a ping takes well under a second")

    def test_gauges_follow_connections_and_database(self):
        mon = self.authed("monitor")
        self.wait_db_up(mon)
        clinics = [self.authed("clinic") for _ in range(2)]
        fams = scrape(self.daemon)
        self.assertGreaterEqual(sample(fams, "referrald_connections", role="clinic"), 2)
        self.assertGreaterEqual(sample(fams, "referrald_connections", role="monitor"), 1)
        self.assertEqual(sample(fams, "referrald_db_connections"), 2)
        self.assertEqual(sample(fams, "referrald_db_connections_up"), 2)
        self.assertEqual(sample(fams, "referrald_build_info",
                                version=mon.status().status.server_version), 1)
        for c in clinics:
            c.close()

    def test_every_metric_is_documented(self):
        """Each family the daemon exports is described in docs/monitoring.md."""
        mon = self.authed("monitor")
        self.assertOk(mon.ping(), "ping")
        _, _, body = self.daemon.http_get("/metrics")
        names = {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE ")}
        self.assertGreater(len(names), 20)
        with open(os.path.join(harness.SOURCE_DIR, "docs", "monitoring.md")) as f:
            doc = f.read()
        missing = sorted(n for n in names if f"`{n}" not in doc)
        self.assertEqual(missing, [], "metrics missing from docs/monitoring.md")

    def test_healthz_ok_and_other_paths(self):
        self.wait_db_up(self.authed("monitor"))
        status, _, body = self.daemon.http_get("/healthz")
        self.assertEqual(status, 200, body)
        self.assertTrue(body.startswith("ok: database up"), body)
        self.assertEqual(self.daemon.http_get("/nope")[0], 404)
        self.assertEqual(self.daemon.http_get("/metrics", method="POST")[0], 405)


if __name__ == "__main__":
    unittest.main()
