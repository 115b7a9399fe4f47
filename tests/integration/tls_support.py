"""Throwaway certificates for the TLS tests, made with the openssl command
line at test time (no key is ever committed).

Pki(dir) makes a CA (the community's), a server certificate for 127.0.0.1
and localhost, and on request client certificates naming a terminal
(subject CN = terminal id, O = community id), expired ones, and ones from
another CA.
"""

import os
import ssl
import subprocess

import harness

OPENSSL = "openssl"


def run(*args, cwd=None):
    p = subprocess.run([OPENSSL, *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {p.stderr}")
    return p.stdout


def subject(cn, org=None):
    return f"/CN={cn}" + (f"/O={org}" if org else "")


class Pki:
    def __init__(self, directory=None, name="ca"):
        self.dir = directory or harness.scratch_dir("pki")
        self.name = name
        self.ca_key = self.path(f"{name}.key")
        self.ca_cert = self.path(f"{name}.crt")
        self.serial = 1
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2",
            "-subj", subject(f"Test community CA {name}"),
            "-addext", "basicConstraints=critical,CA:true",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.server_cert, self.server_key = self.issue("server", "127.0.0.1", server=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _request(self, stem, subj):
        key, csr = self.path(stem + ".key"), self.path(stem + ".csr")
        run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", csr, "-subj", subj)
        return key, csr

    def issue(self, stem, cn, org=None, server=False, days=2):
        """A certificate signed by this CA; returns (cert path, key path)."""
        key, csr = self._request(stem, subject(cn, org))
        cert, ext = self.path(stem + ".crt"), self.path(stem + ".ext")
        with open(ext, "w") as f:
            if server:
                f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                        "extendedKeyUsage=serverAuth\n")
            else:
                f.write("extendedKeyUsage=clientAuth\n")
        self.serial += 1
        run("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
            "-set_serial", str(self.serial), "-days", str(days), "-extfile", ext, "-out", cert)
        return cert, key

    def issue_expired(self, stem, cn, org):
        """A client certificate whose validity ended in 2020 (openssl ca
        is the one command that takes explicit dates)."""
        key, csr = self._request(stem, subject(cn, org))
        cert = self.path(stem + ".crt")
        db = self.path(stem + ".index")
        open(db, "w").close()
        conf = self.path(stem + ".cnf")
        with open(conf, "w") as f:
            f.write(f"""[ca]
default_ca = test
[test]
database = {db}
new_certs_dir = {self.dir}
serial = {self.path(stem + '.serial')}
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
organizationName = optional
[ext]
extendedKeyUsage = clientAuth
""")
        with open(self.path(stem + ".serial"), "w") as f:
            f.write("1000\n")
        run("ca", "-batch", "-config", conf, "-cert", self.ca_cert, "-keyfile", self.ca_key,
            "-in", csr, "-out", cert, "-startdate", "20200101000000Z",
            "-enddate", "20200201000000Z", "-extensions", "ext", "-notext")
        return cert, key

    def client_cert(self, terminal):
        """A certificate naming a harness Terminal."""
        return self.issue(f"client-{terminal.terminal_id}-{self.serial}", terminal.terminal_id,
                          terminal.community_id)

    def client_context(self, cert=None, key=None, minimum=None, maximum=None):
        """An ssl context that trusts this CA (and checks the server's
        address), optionally with a client certificate and version bounds."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_cert)
        if cert:
            ctx.load_cert_chain(cert, key)
        if minimum is not None or maximum is not None:
            # Let this side offer old versions, so that the server's floor
            # is what refuses them (OpenSSL 3 forbids them at level 1+).
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = minimum or ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = maximum or ssl.TLSVersion.MAXIMUM_SUPPORTED
        return ctx
