#!/usr/bin/python3
"""referrald --check-config, --help-config and the command line: good files
pass and print the effective settings, bad ones fail with exit 1 and say
what and where. None of this needs a database."""

import os
import re
import subprocess
import unittest

import harness


def run(*args):
    return subprocess.run([harness.REFERRALD, *args], env=harness.binary_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)


def settings_of(text):
    """The `name = value` lines of --check-config output, as a dict."""
    return dict(m.groups() for m in re.finditer(r"^(\w+) = (.*)$", text, re.M))


class CheckConfigTest(harness.IntegrationCase):

    def setUp(self):
        self.dir = harness.scratch_dir("config")

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_defaults(self):
        p = run("--check-config")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("# configuration OK", p.stdout)
        s = settings_of(p.stdout)
        self.assertEqual(s["listen_port"], "7420")
        self.assertEqual(s["max_frame_bytes"], "1048576")
        self.assertEqual(s["log_level"], "info")

    def test_good_file(self):
        path = self.write("good.conf", """
; a comment
# another
listen_addr = 127.0.0.1
listen_port = 7555
[referrald]
db_dsn = host=db.example port=5433 dbname=referral
max_frame_bytes = 2048
log_level = warn
""")
        p = run("-c", path, "--check-config")
        self.assertEqual(p.returncode, 0, p.stderr)
        s = settings_of(p.stdout)
        self.assertEqual(s["listen_port"], "7555")
        self.assertEqual(s["db_dsn"], "host=db.example port=5433 dbname=referral")
        self.assertEqual(s["max_frame_bytes"], "2048")
        self.assertEqual(s["log_level"], "warn")
        self.assertEqual(s["idle_timeout_ms"], "600000")   # untouched default

    def test_set_overrides_file(self):
        path = self.write("f.conf", "max_frame_bytes = 2048\n")
        p = run("-c", path, "-s", "max_frame_bytes=4096", "-s", "log_level=debug",
                "--check-config")
        self.assertEqual(p.returncode, 0, p.stderr)
        s = settings_of(p.stdout)
        self.assertEqual((s["max_frame_bytes"], s["log_level"]), ("4096", "debug"))

    def test_bad_files(self):
        cases = {
            "unknown setting": ("max_frame_bytes = 2048\nbogus_setting = 1\n",
                                r"unknown setting 'bogus_setting'.*line 2"),
            "unknown section": ("[elsewhere]\nlisten_port = 1\n",
                                r"unknown section \[elsewhere\]"),
            "not an integer": ("listen_port = eighty\n", r"listen_port: 'eighty'"),
            "out of range": ("listen_port = 70000\n", r"listen_port: '70000'.*\[-1, 65535\]"),
            "below minimum": ("max_frame_bytes = 10\n", r"max_frame_bytes: '10'"),
            "trailing junk": ("db_pool_size = 4x\n", r"db_pool_size: '4x'"),
            "bad log level": ("log_level = loud\n", r"log_level: 'loud'"),
            "syntax error": ("[referrald\nlisten_port = 1\n", r"syntax error.*line 1"),
        }
        for what, (text, message) in cases.items():
            with self.subTest(case=what):
                path = self.write(what.replace(" ", "_") + ".conf", text)
                p = run("-c", path, "--check-config")
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertRegex(p.stderr, "configuration error: " + message)
                self.assertNotIn("configuration OK", p.stdout)

    def test_missing_file(self):
        p = run("-c", os.path.join(self.dir, "absent.conf"), "--check-config")
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"cannot read .*absent\.conf")

    def test_bad_set(self):
        for arg, message in (("noequals", "expects key=value"),
                             ("=5", "expects key=value"),
                             ("nope=1", "unknown setting 'nope'"),
                             ("idle_timeout_ms=-1", "idle_timeout_ms: '-1'")):
            with self.subTest(arg=arg):
                p = run("-s", arg, "--check-config")
                self.assertEqual(p.returncode, 1)
                self.assertIn(message, p.stderr)

    def test_help_config_documents_every_setting(self):
        p = run("--help-config")
        self.assertEqual(p.returncode, 0)
        documented = set(re.findall(r"^(\w+) = ", p.stdout, re.M))
        effective = set(settings_of(run("--check-config").stdout))
        self.assertEqual(documented, effective)
        # Each says whether SIGHUP changes it.
        self.assertEqual(p.stdout.count("changes on SIGHUP") + p.stdout.count("needs a restart"),
                         len(documented))
        # The help itself is a valid config file.
        path = self.write("help.conf", p.stdout)
        self.assertEqual(run("-c", path, "--check-config").returncode, 0)

    def test_command_line_errors(self):
        self.assertEqual(run("--no-such-option").returncode, 2)
        self.assertEqual(run("stray-argument").returncode, 2)
        v = run("--version")
        self.assertEqual(v.returncode, 0)
        self.assertRegex(v.stdout, r"^referrald \d+\.\d+\.\d+ \(protocol 1, schema \d+\)")


if __name__ == "__main__":
    unittest.main()
