#!/usr/bin/python3
"""SIGHUP reloads the configuration file: live settings change, settings that
need a restart are kept (with a warning), --set overrides still win, and a
bad file leaves the running configuration in place."""

import os
import signal
import unittest

import harness
from harness import pb
import load_support as ls
import slots_support as ss

E = pb.ErrorCode


def conf(**settings):
    return "[referrald]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())


class ReloadTest(harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.community = harness.Community(cls.pg, "reload")

    def setUp(self):
        # log_level=debug comes from --set (harness default) and must survive
        # reloads whatever the file says.
        self.daemon = harness.Daemon(self.pg.dsn(), name="reload",
                                     config_text=conf(max_frame_bytes=2048))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.reloads = 0

    def hup(self, outcome="configuration reloaded"):
        """Sends SIGHUP and waits for the daemon to log the outcome."""
        self.reloads += 1
        before = self.daemon.log().count(outcome)
        self.daemon.send_signal(signal.SIGHUP)
        self.daemon.wait_log(outcome, count=before + 1)

    def frame_limit(self):
        with self.daemon.client() as c:
            resp = c.hello(self.community["clinic"])
            self.assertOk(resp, "hello")
            return resp.hello.max_frame_bytes

    def big_ping(self, c, size):
        """A ping whose Request encodes to exactly size bytes."""
        req = harness.ping_request(request_id=5)
        req.ping.payload = b"b" * size
        while req.ByteSize() > size:
            req.ping.payload = req.ping.payload[:-1]
        return req

    def test_live_setting_changes(self):
        self.assertEqual(self.frame_limit(), 2048)
        with self.daemon.client() as c:
            self.assertOk(c.hello(self.community["clinic"]), "hello")
            c.send_frame(self.big_ping(c, 5000).SerializeToString())
            self.assertError(c.recv(), E.FRAME_TOO_LARGE, request_id=0)

        self.daemon.write_config(conf(max_frame_bytes=8192))
        self.hup()
        self.assertIn("max_frame_bytes changed from '2048' to '8192'", self.daemon.log())
        self.assertEqual(self.frame_limit(), 8192)
        with self.daemon.client() as c:
            self.assertOk(c.hello(self.community["clinic"]), "hello")
            resp = c.call(self.big_ping(c, 5000))
            self.assertOk(resp, "ping")
            self.assertEqual(len(resp.ping.payload), len(self.big_ping(c, 5000).ping.payload))

    def test_raised_frame_limit_applies_to_open_connections(self):
        """A connection opened before the limit was raised may send frames up
        to the new limit. (Each connection's read buffer is sized from
        max_frame_bytes: if a reload did not resize it, a larger frame would
        never fit, reading would stop, and the connection would hang past
        even the idle timeout.)"""
        c = self.daemon.client()
        self.addCleanup(c.close)
        self.assertOk(c.hello(self.community["clinic"]), "hello")
        self.daemon.write_config(conf(max_frame_bytes=65536))
        self.hup()
        req = self.big_ping(c, 20000)
        resp = c.call(req, timeout=3)
        self.assertOk(resp, "ping")
        self.assertEqual(resp.ping.payload, req.ping.payload)

    def test_live_timeout_applies_to_new_connections(self):
        self.daemon.write_config(conf(max_frame_bytes=2048, handshake_timeout_ms=300))
        self.hup()
        with self.daemon.client() as c:
            self.assertLess(c.wait_closed(timeout=5), 3)

    def test_bad_file_keeps_running_configuration(self):
        broken = {
            "unknown setting": conf(max_frame_bytes=4096, no_such_setting=1),
            "value out of range": conf(max_frame_bytes=1),
            "not an integer": conf(max_frame_bytes="lots"),
            "syntax error": "[referrald\nmax_frame_bytes = 4096\n",
        }
        survivor = self.daemon.client()
        self.addCleanup(survivor.close)
        self.assertOk(survivor.hello(self.community["monitor"]), "hello")
        for what, text in broken.items():
            with self.subTest(file=what):
                self.daemon.write_config(text)
                self.hup("reload failed, keeping the running configuration")
                self.assertTrue(self.daemon.running())
                self.assertEqual(self.frame_limit(), 2048)
                self.assertOk(survivor.ping(), "ping")
        # A file that vanished is no different.
        os.unlink(self.daemon.config_path)
        self.hup("reload failed, keeping the running configuration")
        self.assertEqual(self.frame_limit(), 2048)
        # And a good file afterwards is taken.
        self.daemon.write_config(conf(max_frame_bytes=4096))
        self.hup()
        self.assertEqual(self.frame_limit(), 4096)
        self.assertOk(survivor.status(), "status")

    def test_restart_only_setting_is_kept(self):
        # (listen_addr and friends come from --set here, which wins anyway.)
        self.daemon.write_config(conf(max_frame_bytes=2048, db_statement_timeout_ms=1234))
        self.hup()
        self.assertIn("db_statement_timeout_ms changed but needs a restart; keeping '10000'",
                      self.daemon.log())
        with self.daemon.client() as c:
            self.assertOk(c.hello(self.community["monitor"]), "hello")

    def test_set_overrides_survive_reload(self):
        # The file asks for log_level=error; --set log_level=debug wins.
        self.daemon.write_config(conf(max_frame_bytes=2048, log_level="error"))
        self.hup()
        marker = self.community["desk"].terminal_id
        before = self.daemon.log().count(f"/{marker} (desk)")
        with self.daemon.client() as c:
            self.assertOk(c.hello(self.community["desk"]), "hello")
        # "authenticated as ..." is a debug line.
        self.daemon.wait_log(f"authenticated as .*/{marker} \\(desk\\)", count=before + 1)

    def test_reload_under_load(self):
        """Reloads while clients book: nobody notices. No connection is
        dropped, no request refused or answered twice, every booking there."""
        slots = ss.SlotCommunity(self.pg, "reload-load")
        with ss.SlotClient(self.daemon.port) as desk:
            self.assertOk(desk.hello(slots["desk"]), "hello")
            sessions = ls.publish(desk, 3, 100)
        jobs = [(sessions[i % 3], p) for i, p in enumerate(slots.patients(300))]
        workers = [slots[n] for n in ("clinic", "clinic-b") * 2]
        load = ls.BookingLoad(self.daemon, workers, jobs, pace=0.005).start()
        self.addCleanup(load.stop_new.set)
        for i in range(5):
            load.wait_settled(40 * (i + 1))
            self.daemon.write_config(conf(max_frame_bytes=2048 + 1024 * i,
                                          db_queue_max=1000 + i, idle_timeout_ms=60000 + i))
            self.hup()
        load.finish(every_job=True)
        self.assertEqual(ls.exactly_once_problems(slots, load), [])
        self.assertEqual(len(load.booked), 300, load.summary())
        self.assertEqual(load.counts["retried"], 0, load.summary())
        self.assertEqual(load.counts["connects"], len(workers), load.summary())
        self.assertIn("db_queue_max changed from '1003' to '1004'", self.daemon.log())


if __name__ == "__main__":
    unittest.main()
