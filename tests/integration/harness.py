"""Shared helpers of the referrald integration tests.

What is here, top to bottom:
  * paths handed over by CTest (environment) and the generated protocol code;
  * the PostgreSQL side: the fixture's env file, psql, private databases and
    clusters, a psql session kept open (to hold locks);
  * Community: an isolated community per test module, with terminals of every
    role and known tokens;
  * Daemon: referrald on a free port, its log captured, stopped with SIGTERM
    and required to exit 0 with a clean log (the suite also runs under
    ASan/UBSan, where a leak or UB turns into a non-zero exit or a report);
  * Client: a raw socket client speaking the framing by hand, so that tests
    can send anything, valid or not;
  * IntegrationCase / DaemonTestCase: unittest bases with typed assertions.

Only the standard library and google.protobuf are used.
"""

import contextlib
import ctypes
import http.client
import json
import os
import queue
import re
import secrets
import shlex
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# ---- paths -------------------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("REFERRAL_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
_BUILD = os.path.join(SOURCE_DIR, "build")
REFERRALD = os.environ.get("REFERRALD") or os.path.join(_BUILD, "referrald")
REFERRALCTL = os.environ.get("REFERRALCTL") or os.path.join(_BUILD, "referralctl")
REFERRAL_BENCH = os.environ.get("REFERRAL_BENCH") or os.path.join(_BUILD, "referral-bench")
PY_DIR = os.environ.get("REFERRAL_PY_DIR") or os.path.join(_BUILD, "tests", "integration", "python")
FIXTURE_FILE = os.environ.get("REFERRAL_PGFIXTURE") or os.path.join(
    _BUILD, "tests", "integration", "pgfixture.path")
TEST_TMP = os.environ.get("REFERRAL_TEST_TMP") or os.path.join(_BUILD, "tests", "integration", "tmp")
PGCLUSTER = os.path.join(SOURCE_DIR, "scripts", "pgcluster.sh")

sys.path.insert(0, PY_DIR)
import referral_pb2 as pb  # noqa: E402  (generated into the build tree)

# Sanitizer defaults for every binary we start; the caller's settings win.
# Harmless for an uninstrumented build.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=0",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")

# Under the sanitizer build everything is slower; waits scale with this.
SLOW = float(os.environ.get("REFERRAL_TEST_SLOWDOWN", "1"))


def binary_env(extra=None):
    env = dict(os.environ)
    for k, v in SANITIZER_ENV.items():
        env.setdefault(k, v)
    if extra:
        env.update(extra)
    return env


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies (a CTest
    timeout kills the test, and must not leave daemons behind)."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


def scratch_dir(prefix):
    """A directory for logs and files of one test, kept after the run."""
    os.makedirs(TEST_TMP, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix + ".", dir=TEST_TMP)


def wait_for(predicate, timeout, interval=0.02, what="condition"):
    """Polls predicate() until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * SLOW:.1f}s waiting for {what}")
        time.sleep(interval)


def rss_kib(pid):
    """Resident memory of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def is_sanitized(pid):
    """True when the process runs with AddressSanitizer's runtime."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def free_port():
    """A TCP port nothing listens on (for 'unreachable' cases)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- PostgreSQL ----------------------------------------------------------------

def read_env_file(path):
    """Parses the `export KEY='value'` lines scripts/pgcluster.sh writes."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("export "):
                continue
            key, _, value = line[len("export "):].partition("=")
            words = shlex.split(value)
            env[key] = words[0] if words else ""
    return env


# Durability is not under test in most modules: fsync off for speed.
FAST_PG_OPTS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200")
# For the modules that crash PostgreSQL under load and count what survived:
# the server's defaults, so that a commit is durable when it is reported.
DURABLE_PG_OPTS = "-c fsync=on -c synchronous_commit=on -c max_connections=200"


def start_cluster(cluster_dir, opts=FAST_PG_OPTS, command="start", *args):
    """Starts a private cluster in cluster_dir (made by mktemp) with the
    server options opts; returns its env file. command "standby" (with the
    primary's port in args) makes it a streaming standby instead."""
    env = dict(os.environ)
    env["PGCLUSTER_OPTS"] = opts
    out = subprocess.run([PGCLUSTER, command, cluster_dir, *args], check=True, env=env,
                         stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def remove_cluster(cluster_dir):
    subprocess.run([PGCLUSTER, "remove", cluster_dir], check=True, stdout=subprocess.DEVNULL)


def migrate(dsn):
    """Applies the schema with `referrald --migrate`; returns its log."""
    p = subprocess.run([REFERRALD, "-s", f"db_dsn={dsn}", "--migrate"], env=binary_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise AssertionError(f"referrald --migrate failed ({p.returncode}):\n{p.stdout}")
    return p.stdout


def sql_literal(value):
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


def sql_array(values, cast):
    """An ARRAY[...] of the values as SQL literals, cast to cast[]."""
    return "ARRAY[" + ",".join(sql_literal(v) for v in values) + f"]::{cast}[]"


def auto_explain_plans(text):
    """The JSON plans auto_explain wrote into text: a server log (LOG, a
    header line ending in "plan:" followed by the plan's lines, each after a
    tab) or psql's stderr (NOTICE, the plan's lines as they are, up to the
    closing brace)."""
    plans = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if re.search(r"(?:LOG|NOTICE):\s+duration: [\d.]+ ms\s+plan:$", lines[i]):
            body = []
            i += 1
            if i < len(lines) and lines[i].startswith("\t"):
                while i < len(lines) and lines[i].startswith("\t"):
                    body.append(lines[i][1:])
                    i += 1
            else:
                while i < len(lines):
                    body.append(lines[i])
                    i += 1
                    if body[-1] == "}":
                        break
            plans.append(json.loads("\n".join(body)))
            continue
        i += 1
    return plans


class Postgres:
    """One cluster, described by its pgcluster env file."""

    def __init__(self, env_file):
        self.env_file = env_file
        self.env = read_env_file(env_file)
        self.cluster_dir = self.env["PGCLUSTER_DIR"]
        self.bin_dir = self.env["PGCLUSTER_BIN"]

    @classmethod
    def shared(cls):
        """The suite's cluster, started by the pg_setup fixture."""
        try:
            with open(FIXTURE_FILE) as f:
                return cls(f.read().strip())
        except FileNotFoundError:
            raise RuntimeError(f"{FIXTURE_FILE} missing: run the suite through ctest "
                               "(the integration.pg_setup fixture starts the cluster)")

    @classmethod
    def private(cls, opts=FAST_PG_OPTS):
        """A cluster of one's own (for tests that stop the server). Call
        .remove() when done."""
        cluster_dir = tempfile.mkdtemp(prefix="referral-it-pg.")
        try:
            pg = cls(start_cluster(cluster_dir, opts))
        except BaseException:
            remove_cluster(cluster_dir)
            raise
        migrate(pg.dsn())
        return pg

    def standby(self, name, opts=DURABLE_PG_OPTS):
        """A streaming standby of this cluster (pg_basebackup -R), reporting
        to the primary as `name` (its cluster_name). Call .remove() when done."""
        cluster_dir = tempfile.mkdtemp(prefix="referral-it-pg-standby.")
        try:
            return Postgres(start_cluster(cluster_dir, f"{opts} -c cluster_name={name}",
                                          "standby", self.env["PGPORT"]))
        except BaseException:
            remove_cluster(cluster_dir)
            raise

    def promote(self):
        subprocess.run([PGCLUSTER, "promote", self.cluster_dir], check=True)

    def remove(self):
        remove_cluster(self.cluster_dir)

    def dsn(self, dbname="referral"):
        return f"host=127.0.0.1 port={self.env['PGPORT']} user=postgres dbname={dbname}"

    def psql_cmd(self, dbname="referral"):
        return [os.path.join(self.bin_dir, "psql"), "-X", "-q", "-A", "-t",
                "-v", "ON_ERROR_STOP=1", "-h", self.env["PGHOST"], "-p", self.env["PGPORT"],
                "-U", "postgres", "-d", dbname]

    def psql(self, sql, dbname="referral"):
        """Runs SQL (one or more statements); returns psql's unaligned output."""
        p = subprocess.run(self.psql_cmd(dbname), input=sql, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise AssertionError(f"psql failed ({p.returncode}): {p.stderr}\nSQL:\n{sql}")
        return p.stdout.strip()

    def create_database(self, prefix, migrated=True):
        """A throwaway database in this cluster, for tests that must lock or
        damage one. Drop it with drop_database()."""
        name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
        self.psql(f'CREATE DATABASE "{name}"', dbname="postgres")
        if migrated:
            migrate(self.dsn(name))
        return name

    def drop_database(self, name):
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', dbname="postgres")

    def pgstop(self, mode="fast"):
        subprocess.run([PGCLUSTER, "pgstop", self.cluster_dir, mode], check=True)

    def pgstart(self):
        subprocess.run([PGCLUSTER, "pgstart", self.cluster_dir], check=True)


class PsqlSession:
    """A psql kept open on a pipe: statements run as they are written, so a
    transaction (and the locks it holds) lives until we end it."""

    def __init__(self, pg, dbname="referral"):
        self.proc = subprocess.Popen(pg.psql_cmd(dbname), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, preexec_fn=_die_with_parent)
        self.lines = queue.Queue()
        self.serial = 0
        self.reader = threading.Thread(target=self._reader, daemon=True)
        self.reader.start()

    def _reader(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def run(self, sql, timeout=10):
        """Runs sql and waits until psql has done it; returns its output lines."""
        self.serial += 1
        marker = f"__done_{self.serial}__"
        self.proc.stdin.write(f"{sql}\nSELECT '{marker}';\n")
        self.proc.stdin.flush()
        out = []
        deadline = time.monotonic() + timeout * SLOW
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"psql did not finish {sql!r}; output so far: {out}")
            if line is None:
                raise AssertionError(f"psql exited running {sql!r}: {out}")
            if line == marker:
                return out
            out.append(line)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()


def lock_terminals(pg, dbname):
    """Holds ACCESS EXCLUSIVE on terminals in dbname, so that every Hello
    lookup there waits; returns the session (run("ROLLBACK;") releases)."""
    locker = PsqlSession(pg, dbname)
    locker.run("BEGIN; LOCK TABLE terminals IN ACCESS EXCLUSIVE MODE;")
    return locker


def wait_lookups_blocked(pg, dbname, count=1):
    """Waits until `count` of the daemon's sessions wait on a lock."""
    # pg_stat_activity is cluster-wide: other modules lock their own databases.
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'referrald'"
           " AND datname = current_database() AND wait_event_type = 'Lock'")
    wait_for(lambda: pg.psql(sql, dbname=dbname) == str(count), 10,
             what=f"{count} daemon queries to wait on the lock")


def patient_key_file():
    """The server secret for resident ID hashes, one for the whole run (all
    daemons of a database must share it); readable by the owner only."""
    path = os.path.join(TEST_TMP, "patient_id.key")
    if not os.path.exists(path):
        os.makedirs(TEST_TMP, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32).hex().encode() + b"\n")
        try:
            os.link(tmp, path)   # the first writer wins; the others use its key
        except FileExistsError:
            pass
        os.unlink(tmp)
    return path


# ---- communities and terminals ------------------------------------------------

def hash_token(token):
    """The stored form of a token, made by the daemon binary itself."""
    p = subprocess.run([REFERRALD, "--hash-token"], input=token + "\n", env=binary_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0 or not p.stdout.startswith("pbkdf2-sha256$"):
        raise AssertionError(f"referrald --hash-token failed ({p.returncode}): {p.stderr}")
    return p.stdout.strip()


class Terminal:
    def __init__(self, community_id, terminal_id, role, institution_id, practitioner_id, token):
        self.community_id = community_id
        self.terminal_id = terminal_id
        self.role = role                      # the SQL name: "clinic", ...
        self.institution_id = institution_id
        self.practitioner_id = practitioner_id
        self.token = token

    @property
    def role_enum(self):
        return pb.Role.Value("ROLE_" + self.role.upper())


class Community:
    """A community of its own for one test module: two institutions, two
    practitioners and one terminal per role, plus a revoked one.

    terminals: name -> Terminal, names "clinic", "desk", "billing", "monitor",
    "admin" (active) and "revoked" (a clinic terminal with revoked_at set).

    setup_sql(c), given the community id as an SQL literal, returns more SQL
    to run in the same transaction: settings the community has from its
    very creation.
    """

    TERMINALS = [
        # name, role, institution, practitioner, revoked
        ("clinic", "clinic", "village-a", "fd-a", False),
        ("desk", "desk", "county-hospital", "desk-clerk", False),
        ("billing", "billing", "county-hospital", None, False),
        ("monitor", "monitor", "county-hospital", None, False),
        ("admin", "admin", "county-hospital", None, False),
        ("revoked", "clinic", "village-a", "fd-a", True),
    ]

    def __init__(self, pg, label, dbname="referral", setup_sql=None):
        slug = re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:30] or "t"
        self.pg = pg
        self.dbname = dbname
        self.community_id = f"it-{slug}-{os.getpid()}-{secrets.token_hex(3)}"
        self.terminals = {}
        rows = []
        for name, role, inst, prac, revoked in self.TERMINALS:
            token = secrets.token_urlsafe(24)
            t = Terminal(self.community_id, f"{name}-01", role, inst, prac, token)
            self.terminals[name] = t
            rows.append("({}, {}, {}, {}, {}, {}, {})".format(
                sql_literal(self.community_id), sql_literal(t.terminal_id), sql_literal(inst),
                sql_literal(role), sql_literal(prac), sql_literal(hash_token(token)),
                "now()" if revoked else "NULL"))
        c = sql_literal(self.community_id)
        pg.psql(f"""
BEGIN;
INSERT INTO communities (community_id, name, province, reserve_floor_pct,
                         reserved_requires_referral, deductible_policy)
VALUES ({c}, 'Integration test community', 'henan', 40, false, 'waive');
INSERT INTO institutions (community_id, institution_id, name, level) VALUES
    ({c}, 'county-hospital', 'County Hospital', 'county'),
    ({c}, 'village-a', 'Village A Clinic', 'village');
INSERT INTO practitioners (community_id, practitioner_id, institution_id, name, kind) VALUES
    ({c}, 'fd-a', 'village-a', 'Family Doctor A', 'family_doctor'),
    ({c}, 'desk-clerk', 'county-hospital', 'Desk Clerk', 'desk_clerk');
INSERT INTO terminals (community_id, terminal_id, institution_id, role, practitioner_id,
                       token_hash, revoked_at) VALUES
    {",".join(rows)};
{setup_sql(c) if setup_sql else ""}
COMMIT;
""", dbname=dbname)

    def __getitem__(self, name):
        return self.terminals[name]


# ---- the daemon --------------------------------------------------------------

class Daemon:
    """referrald on a free loopback port, in a scratch directory.

    By default it serves its loopback port without TLS (plain_port) and has
    no TLS port. With tls (a tls_support.Pki), the TLS port is the one
    `port` names, with the Pki's server certificate and CA, and the plain
    port is off.

    settings: key -> value passed as `-s key=value` after the defaults below
    (a value of None drops a default, e.g. to let a config file decide).
    """

    DEFAULTS = {
        "listen_addr": "127.0.0.1",
        "listen_port": "-1",
        "plain_addr": "127.0.0.1",
        "plain_port": "0",
        "admin_port": "0",
        "db_pool_size": "2",
        "log_level": "debug",
        # Tests hammer the daemon from a few terminals: the per-terminal
        # limits are off unless a test sets them (test_terminal_limits.py).
        "terminal_rate_per_s": "0",
        "max_connections_per_terminal": "100000",
    }

    def __init__(self, dsn, settings=None, config_text=None, name="referrald", tls=None,
                 env=None):
        self.env = env or {}
        self.dir = scratch_dir(name)
        self.port_file = os.path.join(self.dir, "port")
        self.admin_port_file = os.path.join(self.dir, "admin_port")
        self.log_path = os.path.join(self.dir, "referrald.log")
        self.config_path = None
        self.tls = tls
        if config_text is not None:
            self.config_path = os.path.join(self.dir, "referrald.conf")
            self.write_config(config_text)
        ports = {"plain_port_file": self.port_file}
        if tls is not None:
            ports = {"listen_port": "0", "plain_port": "-1", "port_file": self.port_file,
                     "tls_cert_file": tls.server_cert, "tls_key_file": tls.server_key,
                     "tls_ca_file": tls.ca_cert}
        merged = dict(self.DEFAULTS, admin_port_file=self.admin_port_file, db_dsn=dsn,
                      patient_id_key_file=patient_key_file(), **ports)
        merged.update(settings or {})
        self.settings = {k: v for k, v in merged.items() if v is not None}
        self.proc = None
        self.port = None
        self.returncode = None

    def write_config(self, text):
        # Written whole then renamed: a reload never reads half a file.
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def argv(self):
        args = [REFERRALD]
        if self.config_path:
            args += ["-c", self.config_path]
        for k, v in self.settings.items():
            args += ["-s", f"{k}={v}"]
        return args

    @property
    def pid(self):
        return self.proc.pid

    def spawn(self):
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=binary_env(self.env),
                                     preexec_fn=_die_with_parent)
        print(f"referrald pid {self.proc.pid}, log {self.log_path}", file=sys.stderr)

    def start(self, timeout=20):
        """Starts the daemon and waits until it listens (port file written)."""
        self.spawn()

        def listening():
            if os.path.exists(self.port_file):
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"referrald exited with {self.proc.returncode} before "
                                     f"listening:\n{self.log_tail()}")
            return False

        wait_for(listening, timeout, what="referrald's port file")
        with open(self.port_file) as f:
            self.port = int(f.read().strip())
        return self

    @property
    def admin_port(self):
        """The admin HTTP endpoint's port (written just after the client port)."""
        wait_for(lambda: os.path.exists(self.admin_port_file), 5, what="the admin port file")
        with open(self.admin_port_file) as f:
            return int(f.read().strip())

    def http_get(self, path, method="GET"):
        """(status, headers, body text) of a request to the admin endpoint."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode()
        finally:
            conn.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=60):
        text = self.log().splitlines()
        return "\n".join(text[-lines:]) + f"\n(full log: {self.log_path})"

    def wait_log(self, pattern, count=1, timeout=10):
        """Waits until the log holds `count` lines matching the regex."""
        rx = re.compile(pattern)

        def seen():
            return sum(1 for line in self.log().splitlines() if rx.search(line)) >= count

        try:
            wait_for(seen, timeout, what=f"log line /{pattern}/ x{count}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log_tail()}") from None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=30):
        """Waits for the process to end; returns its exit code."""
        try:
            self.returncode = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"referrald (pid {self.proc.pid}) did not exit within "
                                 f"{timeout * SLOW:.0f}s; killed.\n{self.log_tail()}")
        finally:
            if self.proc.poll() is not None:
                self.log_file.close()
        return self.returncode

    def check_clean_exit(self, rc):
        """Exit 0 and no sanitizer report: anything else is a daemon bug."""
        log = self.log()
        reports = [m for m in SANITIZER_MARKERS if m in log]
        if rc != 0 or reports:
            raise AssertionError(
                f"referrald exited with {rc}{' and sanitizer reports ' + str(reports) if reports else ''}"
                f":\n{self.log_tail(200)}")

    def kill(self):
        """For cleanups after a failed test: no questions asked."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and not self.log_file.closed:
            self.log_file.close()

    def crash(self):
        """kill -9: no drain, no goodbye, nothing flushed."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log_file.close()

    def restart(self, timeout=20):
        """Starts the daemon again on the port it had (clients reconnect to
        the address they know), after crash() or an exit."""
        if self.running():
            raise AssertionError("restart() of a running daemon")
        # The port it served on: the TLS port with tls, else the plain one.
        self.settings["listen_port" if self.tls else "plain_port"] = str(self.port)
        for path in (self.port_file, self.admin_port_file):
            if os.path.exists(path):
                os.unlink(path)
        return self.start(timeout)

    def stop(self, timeout=30):
        """SIGTERM, then require exit code 0 and a clean log."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        self.check_clean_exit(rc)

    def client(self, **kw):
        if self.tls is not None and "tls" not in kw:
            kw["tls"] = self.tls.client_context()
        return Client(self.port, **kw)


# ---- the raw client --------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3 | 0) + varint(value)


def field_bytes(number, data):
    return varint(number << 3 | 2) + varint(len(data)) + data


def frame(body):
    return struct.pack(">I", len(body)) + body


def hello_request(terminal=None, *, community_id=None, terminal_id=None, token=None,
                  protocol_version=1, client_name="integration-tests", request_id=0):
    """A Hello; fields default to the terminal's (any may be overridden)."""
    h = pb.Hello(protocol_version=protocol_version, client_name=client_name)
    h.community_id = community_id if community_id is not None else terminal.community_id
    h.terminal_id = terminal_id if terminal_id is not None else terminal.terminal_id
    h.token = token if token is not None else terminal.token
    return pb.Request(request_id=request_id, hello=h)


def ping_request(payload=b"", request_id=0):
    return pb.Request(request_id=request_id, ping=pb.Ping(payload=payload))


def status_request(request_id=0):
    req = pb.Request(request_id=request_id)
    req.status.SetInParent()   # an empty message still selects the oneof
    return req


class ConnectionClosed(Exception):
    pass


class Client:
    """A blocking socket client speaking referrald's framing by hand; over
    TLS when given an ssl.SSLContext."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, tls=None):
        self.timeout = timeout * SLOW
        self.sock = socket.create_connection((host, port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        self.buf = b""
        self.next_id = 1

    # -- sending
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, body):
        self.send_raw(frame(body))

    def send(self, req):
        """Sends a Request, giving it the next id when it has none; returns the id."""
        if req.request_id == 0:
            req.request_id = self.next_id
            self.next_id += 1
        self.send_frame(req.SerializeToString())
        return req.request_id

    # -- receiving
    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out waiting for the server")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        if not data:
            raise ConnectionClosed(f"server closed the connection ({len(self.buf)} bytes unread)")
        self.buf += data

    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (timeout * SLOW if timeout else self.timeout)
        while len(self.buf) < 4:
            self._fill(deadline)
        (n,) = struct.unpack(">I", self.buf[:4])
        while len(self.buf) < 4 + n:
            self._fill(deadline)
        body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return body

    def recv(self, timeout=None):
        resp = pb.Response()
        resp.ParseFromString(self.recv_frame(timeout))
        return resp

    def call(self, req, timeout=None):
        """Sends req and returns its response, which must be the next one."""
        rid = self.send(req)
        resp = self.recv(timeout)
        if resp.request_id != rid:
            raise AssertionError(f"expected the response to request {rid}, got {resp}")
        return resp

    def hello(self, terminal=None, **kw):
        return self.call(hello_request(terminal, **kw))

    def ping(self, payload=b""):
        return self.call(ping_request(payload))

    def status(self):
        return self.call(status_request())

    def wait_closed(self, timeout=5):
        """Asserts the server closes the connection without sending anything
        more; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout * SLOW
        try:
            while True:
                self._fill(deadline)
                if len(self.buf) >= 4:
                    raise AssertionError(f"expected the connection to close, got data "
                                         f"{self.buf[:64]!r}")
        except ConnectionClosed:
            if self.buf:
                raise AssertionError(f"connection closed after a partial frame {self.buf!r}")
            return time.monotonic() - start
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout * SLOW:.1f}s")

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- unittest bases ----------------------------------------------------------------

def code_name(code):
    try:
        return pb.ErrorCode.Name(code)
    except ValueError:
        return str(code)


def module_label(cls):
    """'handshake' for a class of test_handshake.py, even when run as __main__."""
    path = getattr(sys.modules.get(cls.__module__), "__file__", None) or cls.__module__
    name = os.path.splitext(os.path.basename(path))[0]
    return name[len("test_"):] if name.startswith("test_") else name


class IntegrationCase(unittest.TestCase):
    maxDiff = None

    def open_client(self, daemon, **kw):
        """A client of daemon, closed when the test ends."""
        c = daemon.client(**kw)
        self.addCleanup(c.close)
        return c

    @contextlib.contextmanager
    def known_bug(self, what):
        """Wraps the checks that fail because of a known, reported daemon bug.
        Their failure skips the test (with the reason) instead of failing the
        suite; their success fails it, so that the marker goes with the fix.
        Everything outside the block must pass as usual."""
        try:
            yield
        except (AssertionError, OSError, ConnectionClosed) as e:
            self.skipTest(f"known daemon bug: {what} [{type(e).__name__}: {str(e)[:200]}]")
        else:
            self.fail(f"fixed? the known bug '{what}' no longer shows: remove known_bug()")

    def assertError(self, resp, code, field=None, request_id=None):
        """resp is an error with exactly this code (and field, and id)."""
        self.assertTrue(resp.HasField("error"), f"expected {code_name(code)}, got success: {resp}")
        self.assertEqual(code_name(resp.error.code), code_name(code), f"response: {resp}")
        self.assertNotEqual(resp.error.message, "", "errors carry a message")
        if field is not None:
            self.assertEqual(resp.error.field, field, f"response: {resp}")
        if request_id is not None:
            self.assertEqual(resp.request_id, request_id, f"response: {resp}")
        self.assertEqual(resp.WhichOneof("body"), None, "an error carries no body")

    def assertOk(self, resp, body):
        """resp is a success carrying the named body."""
        self.assertFalse(resp.HasField("error"), f"expected success, got {resp}")
        self.assertEqual(resp.WhichOneof("body"), body, f"response: {resp}")


class DaemonTestCase(IntegrationCase):
    """A daemon (one per test class) on the shared cluster, with a community
    of the module's own. Subclasses tune it with daemon_settings."""

    daemon_settings = {}
    _communities = {}

    @classmethod
    def setUpClass(cls):
        cls.pg = Postgres.shared()
        label = module_label(cls)
        # One community per module, shared by its classes.
        key = (label, cls.pg.env_file)
        if key not in DaemonTestCase._communities:
            DaemonTestCase._communities[key] = Community(cls.pg, label)
        cls.community = DaemonTestCase._communities[key]
        cls.daemon = Daemon(cls.pg.dsn(), settings=cls.daemon_settings, name=label)
        cls.addClassCleanup(cls.daemon.stop)
        cls.daemon.start()

    def connect(self, **kw):
        return self.open_client(self.daemon, **kw)

    def authed(self, name="monitor"):
        """A connection that completed Hello as the named terminal."""
        c = self.connect()
        self.assertOk(c.hello(self.community[name]), "hello")
        return c

    def wait_db_up(self, client=None):
        """Waits until status says the pool is fully connected."""
        c = client or self.authed("monitor")

        def up():
            st = c.status()
            return st.status if st.status.database_state == "up" else None

        return wait_for(up, 15, interval=0.05, what="database_state up")
