#!/usr/bin/python3
"""The daemon's live counters (the Live request) and `referralctl top`:
the counters are the ones /metrics shows; top in batch mode prints frames
with rates from the difference between polls; on a terminal (a pty of 80x24)
it draws within the screen, and q or Ctrl-C end it with the terminal as it
was."""

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time
import unittest

import harness
from metrics_support import scrape, value
from harness import pb

E = pb.ErrorCode
ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def live_request():
    req = pb.Request()
    req.live.SetInParent()
    return req


def ctl_env(daemon, terminal):
    return harness.binary_env({
        "REFERRAL_HOST": "127.0.0.1", "REFERRAL_PORT": str(daemon.port),
        "REFERRAL_COMMUNITY": terminal.community_id, "REFERRAL_TERMINAL": terminal.terminal_id,
        "REFERRAL_TOKEN": terminal.token, "TERM": "xterm"})


class LiveCountersTest(harness.DaemonTestCase):

    def test_live_counters_are_the_metrics(self):
        mon = self.authed("monitor")
        self.wait_db_up(mon)
        for _ in range(3):
            self.assertOk(mon.ping(), "ping")
        resp = mon.call(live_request())
        self.assertOk(resp, "live")
        live = resp.live
        fams = scrape(self.daemon)

        def metric(name, **labels):
            return value(fams, name, **labels)

        ping = next(t for t in live.requests if t.type == "ping")
        self.assertGreaterEqual(ping.count, 3)
        self.assertEqual(ping.count, metric("referrald_requests_total", type="ping", code="ok"))
        self.assertEqual({c.name: c.value for c in ping.codes}, {"ok": ping.count})
        self.assertEqual(len(live.bucket_bounds), len(ping.buckets))
        self.assertEqual(list(live.bucket_bounds)[:2], [0.0005, 0.001])
        cumulative = sum(ping.buckets)
        self.assertEqual(cumulative, metric("referrald_request_duration_seconds_bucket",
                                            type="ping", le="10"))
        roles = {c.name: c.value for c in live.connections}
        self.assertEqual(roles["monitor"], metric("referrald_connections", role="monitor"))
        counters = {c.name: c.value for c in live.counters}
        self.assertEqual(counters["handshakes_ok"], metric("referrald_handshakes_ok_total"))
        self.assertEqual((live.database.state, live.database.connections_up,
                          live.database.connections), ("up", 2, 2))
        self.assertEqual(live.figures.connections, 1)
        self.assertEqual(live.server_version, mon.status().status.server_version)

    def test_only_monitor_and_admin(self):
        for name in ("clinic", "desk", "billing"):
            self.assertError(self.authed(name).call(live_request()), E.PERMISSION_DENIED)
        self.assertOk(self.authed("admin").call(live_request()), "live")


class TopBatchTest(harness.DaemonTestCase):

    def test_batch_frames_with_rates(self):
        mon = self.authed("monitor")
        self.wait_db_up(mon)
        stop = threading.Event()

        def pings():
            c = self.authed("monitor")
            while not stop.is_set():
                c.ping()
                time.sleep(0.01)

        t = threading.Thread(target=pings)
        t.start()
        try:
            p = subprocess.run([harness.REFERRALCTL, "top", "-b", "-n", "3", "-d", "0.5"],
                               env=ctl_env(self.daemon, self.community["monitor"]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=30 * harness.SLOW)
        finally:
            stop.set()
            t.join()
        self.assertEqual(p.returncode, 0, p.stderr)
        frames = [f for f in re.split(r"(?m)^(?=referrald )", p.stdout) if f.strip()]
        self.assertEqual(len(frames), 3, p.stdout)
        self.assertIn("(since start)", frames[0].splitlines()[0])
        for frame in frames:
            lines = frame.rstrip("\n").splitlines()
            self.assertLessEqual(max(len(line) for line in lines), 80, frame)
            self.assertTrue(lines[1].startswith("conns "), frame)
            self.assertTrue(any(line.startswith("TYPE ") for line in lines), frame)
            self.assertTrue(lines[-1].startswith("errors/s"), frame)
        # Pings went on all along: a rate above zero, latencies measured.
        ping = next(line for line in frames[2].splitlines() if line.startswith("ping "))
        fields = ping.split()
        self.assertGreater(float(fields[1]), 1.0, ping)
        self.assertGreater(float(fields[3]), 0, ping)           # p50, ms
        self.assertRegex(frames[2], r"database up +2/2 ")

    def test_refused_for_a_clinic(self):
        p = subprocess.run([harness.REFERRALCTL, "top", "-b", "-n", "1"],
                           env=ctl_env(self.daemon, self.community["clinic"]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("PERMISSION_DENIED", p.stderr)


class TopTerminalTest(harness.DaemonTestCase):
    """top on a pseudo-terminal of 80 columns and 24 rows, as over SSH."""

    def start_top(self):
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        before = termios.tcgetattr(slave)

        def controlling_tty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = subprocess.Popen([harness.REFERRALCTL, "top", "-d", "0.2"],
                                env=ctl_env(self.daemon, self.community["monitor"]),
                                stdin=slave, stdout=slave, stderr=slave,
                                preexec_fn=controlling_tty)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc, master, slave, before

    def read_until(self, master, proc, predicate, timeout):
        out = b""
        deadline = time.monotonic() + timeout * harness.SLOW
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
            if predicate(out) or proc.poll() is not None and not r:
                break
        return out

    def check_screens(self, out):
        """Every drawn screen fits in 80x24."""
        # A screen is one write ending in "erase below"; the pty may hand it over in
        # pieces, so a screen still arriving is not judged.
        screens = [s for s in out.split(b"\x1b[H")[1:] if s.endswith(b"\x1b[J")]
        self.assertGreaterEqual(len(screens), 2, out[:500])
        for screen in screens:
            rows = ESCAPE.sub(b"", screen).split(b"\r\n")
            self.assertLessEqual(len(rows), 24, screen)
            for row in rows:
                self.assertLessEqual(len(row.rstrip(b"\r")), 80, row)
        self.assertIn(b"TYPE ", screens[-1])

    def stop_with(self, key):
        self.wait_db_up()
        proc, master, slave, before = self.start_top()
        out = self.read_until(master, proc, lambda o: o.count(b"\x1b[J") >= 3, 15)
        self.assertTrue(out.startswith(b"\x1b[?1049h"), out[:80])   # the alternate screen
        self.check_screens(out)
        self.assertNotEqual(termios.tcgetattr(slave)[3], before[3], "raw mode while running")
        os.write(master, key)
        try:
            rc = proc.wait(5 * harness.SLOW)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            self.fail(f"top did not exit on {key!r}")
        out += self.read_until(master, proc, lambda o: False, 0.5)
        self.assertEqual(rc, 0)
        # The cursor is back, the shell's screen too, and the line settings.
        self.assertTrue(out.endswith(b"\x1b[?25h\x1b[?1049l"), out[-80:])
        self.assertEqual(termios.tcgetattr(slave), before)

    def test_q_quits_and_restores_the_terminal(self):
        self.stop_with(b"q")

    def test_ctrl_c_quits_and_restores_the_terminal(self):
        self.stop_with(b"\x03")


if __name__ == "__main__":
    unittest.main()
