#!/usr/bin/python3
"""TLS on the client port: the version floor, token and client-certificate
authentication, refused certificates (another CA, expired, naming another
terminal, revoked), a plain client on the TLS port, a new certificate on
SIGHUP, the loopback-only plain port, and referralctl over TLS."""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import unittest

import harness
import tls_support
from harness import pb

E = pb.ErrorCode


class TlsTest(harness.IntegrationCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.Postgres.shared()
        cls.community = harness.Community(cls.pg, "tls")
        cls.pki = tls_support.Pki()
        cls.daemon = harness.Daemon(cls.pg.dsn(), name="tls", tls=cls.pki)
        cls.addClassCleanup(cls.daemon.stop)
        cls.daemon.start()

    def tls_client(self, **ctx_kw):
        c = harness.Client(self.daemon.port, tls=self.pki.client_context(**ctx_kw))
        self.addCleanup(c.close)
        return c

    def test_token_over_tls(self):
        c = self.tls_client()
        self.assertEqual(c.sock.version(), "TLSv1.3")
        resp = c.hello(self.community["clinic"])
        self.assertOk(resp, "hello")
        self.assertEqual(resp.hello.authenticated_by, "token")
        self.assertOk(c.ping(b"x"), "ping")

    def test_tls12_accepted(self):
        c = self.tls_client(maximum=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(c.sock.version(), "TLSv1.2")
        self.assertOk(c.hello(self.community["monitor"]), "hello")

    def test_versions_below_tls12_refused(self):
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with self.subTest(version=version.name):
                with self.assertRaises(ssl.SSLError) as cm:
                    self.tls_client(minimum=version, maximum=version)
                # The server's alert, not a refusal on our side.
                self.assertIn("PROTOCOL_VERSION", str(cm.exception).upper().replace(" ", "_"))

    def test_client_certificate_authenticates(self):
        t = self.community["desk"]
        cert, key = self.pki.client_cert(t)
        c = self.tls_client(cert=cert, key=key)
        # No names and no token: the certificate says who this is.
        resp = c.call(pb.Request(hello=pb.Hello(protocol_version=1)))
        self.assertOk(resp, "hello")
        h = resp.hello
        self.assertEqual((h.community_id, h.terminal_id, h.role, h.authenticated_by),
                         (t.community_id, t.terminal_id, pb.ROLE_DESK, "certificate"))
        self.assertOk(c.call(harness.ping_request(b"y")), "ping")

    def test_certificate_and_hello_must_agree(self):
        cert, key = self.pki.client_cert(self.community["desk"])
        c = self.tls_client(cert=cert, key=key)
        # Another terminal's token does not make a desk certificate an admin.
        resp = c.hello(self.community["admin"])
        self.assertError(resp, E.UNAUTHENTICATED, field="hello")
        c.wait_closed()

    def test_certificate_with_the_wrong_token_is_refused(self):
        t = self.community["desk"]
        cert, key = self.pki.client_cert(t)
        c = self.tls_client(cert=cert, key=key)
        self.assertError(c.hello(t, token="wrong"), E.UNAUTHENTICATED, field="hello")

    def test_revoked_terminal_certificate_refused(self):
        cert, key = self.pki.client_cert(self.community["revoked"])
        c = self.tls_client(cert=cert, key=key)
        resp = c.call(pb.Request(hello=pb.Hello(protocol_version=1)))
        self.assertError(resp, E.UNAUTHENTICATED, field="hello")

    def assertHandshakeRefused(self, cert, key):
        with self.assertRaises((ssl.SSLError, ConnectionError, harness.ConnectionClosed)):
            c = self.tls_client(cert=cert, key=key)
            # TLS 1.3: the client finishes first and hears of the refusal
            # on its first read.
            c.hello(self.community["desk"])

    def test_certificate_of_another_ca_refused(self):
        other = tls_support.Pki(name="other-ca")
        cert, key = other.client_cert(self.community["desk"])
        self.assertHandshakeRefused(cert, key)
        self.daemon.wait_log(r"TLS handshake failed: .*certificate verify failed "
                             r"\(unable to get local issuer certificate\)")

    def test_expired_certificate_refused(self):
        t = self.community["desk"]
        cert, key = self.pki.issue_expired("expired", t.terminal_id, t.community_id)
        self.assertHandshakeRefused(cert, key)
        self.daemon.wait_log(r"TLS handshake failed: .*\(certificate has expired\)")

    def test_plain_client_on_the_tls_port_gets_nothing(self):
        with harness.Client(self.daemon.port) as c:
            c.send(harness.hello_request(self.community["clinic"]))
            with self.assertRaises((harness.ConnectionClosed, AssertionError)):
                c.recv()
        self.daemon.wait_log(r"TLS handshake failed: .*wrong version number")

    def test_referralctl_over_tls(self):
        t = self.community["monitor"]
        env = harness.binary_env({"REFERRAL_HOST": "127.0.0.1", "REFERRAL_PORT": str(self.daemon.port),
                                  "REFERRAL_CA": self.pki.ca_cert})
        for k in ("REFERRAL_CERT", "REFERRAL_KEY", "REFERRAL_TOKEN"):
            env.pop(k, None)
        token_env = dict(env, REFERRAL_COMMUNITY=t.community_id, REFERRAL_TERMINAL=t.terminal_id,
                         REFERRAL_TOKEN=t.token)
        p = subprocess.run([harness.REFERRALCTL, "ping"], env=token_env, capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(t.terminal_id, p.stdout)
        cert, key = self.pki.client_cert(t)
        p = subprocess.run([harness.REFERRALCTL, "--cert", cert, "--key", key, "ping"], env=env,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(t.terminal_id, p.stdout)
        # A CA that did not issue the server's certificate: refused (exit 3).
        other = tls_support.Pki(name="client-side-other")
        p = subprocess.run([harness.REFERRALCTL, "--ca", other.ca_cert, "ping"], env=token_env,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("certificate", p.stderr)
        # Without a CA, referralctl speaks plain TCP to loopback only; it
        # refuses before connecting anywhere else.
        plain_env = dict(token_env, REFERRAL_HOST="192.0.2.1")
        plain_env.pop("REFERRAL_CA")
        p = subprocess.run([harness.REFERRALCTL, "ping"], env=plain_env, capture_output=True, text=True)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("not a loopback address", p.stderr)


class TlsReloadTest(harness.IntegrationCase):
    """SIGHUP loads the certificate again: new connections get the new one,
    open connections go on with theirs."""

    def test_reload_picks_up_a_new_certificate(self):
        pg = harness.Postgres.shared()
        community = harness.Community(pg, "tls-reload")
        pki = tls_support.Pki()
        cert_path = os.path.join(pki.dir, "live.crt")
        key_path = os.path.join(pki.dir, "live.key")
        shutil.copy(pki.server_cert, cert_path)
        shutil.copy(pki.server_key, key_path)
        d = harness.Daemon(pg.dsn(), name="tls-reload", tls=pki,
                           settings={"tls_cert_file": cert_path, "tls_key_file": key_path})
        self.addCleanup(d.kill)
        d.start()
        old = harness.Client(d.port, tls=pki.client_context())
        self.addCleanup(old.close)
        self.assertOk(old.hello(community["monitor"]), "hello")
        first = old.sock.getpeercert(binary_form=True)

        new_cert, new_key = pki.issue("server-2", "127.0.0.1", server=True)
        shutil.copy(new_cert, cert_path)
        shutil.copy(new_key, key_path)
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"TLS certificate and key loaded", count=1)
        fresh = harness.Client(d.port, tls=pki.client_context())
        self.addCleanup(fresh.close)
        self.assertNotEqual(fresh.sock.getpeercert(binary_form=True), first)
        with open(new_cert) as f:
            self.assertEqual(fresh.sock.getpeercert(binary_form=True),
                             ssl.PEM_cert_to_DER_cert(f.read()))
        self.assertOk(fresh.hello(community["monitor"]), "hello")
        self.assertOk(old.ping(b"still"), "ping")

        # A broken certificate keeps the running one, and says so.
        with open(cert_path, "w") as f:
            f.write("not a certificate\n")
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"reload failed, keeping the running configuration: cannot load tls_cert_file")
        again = harness.Client(d.port, tls=pki.client_context())
        self.addCleanup(again.close)
        self.assertEqual(again.sock.getpeercert(binary_form=True), fresh.sock.getpeercert(binary_form=True))
        d.stop()


class PlainPortTest(harness.IntegrationCase):
    """The port without TLS listens on loopback or not at all."""

    def refused_start(self, settings, message):
        pg = harness.Postgres.shared()
        d = harness.Daemon(pg.dsn(), name="plain-refused", settings=settings)
        self.addCleanup(d.kill)
        d.spawn()
        self.assertEqual(d.wait_exit(20), 1, d.log_tail())
        self.assertIn(message, d.log())
        self.assertFalse(os.path.exists(d.port_file), "it listened before refusing")

    def test_non_loopback_plain_port_refused(self):
        for addr in ("0.0.0.0", "::"):
            with self.subTest(addr=addr):
                self.refused_start({"plain_addr": addr},
                                   f"plain_addr '{addr}' is not a loopback address")

    def test_tls_port_without_certificate_refused(self):
        self.refused_start({"listen_port": "0", "tls_cert_file": "", "plain_port": "-1"},
                           "listen_port is the TLS port and needs tls_cert_file")

    def test_missing_certificate_file_refused(self):
        self.refused_start({"listen_port": "0", "plain_port": "-1",
                            "tls_cert_file": "/nonexistent/server.crt",
                            "tls_key_file": "/nonexistent/server.key"},
                           "cannot load tls_cert_file /nonexistent/server.crt")


if __name__ == "__main__":
    unittest.main()
