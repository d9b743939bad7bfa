"""Session credentials for links beyond one machine: the session key and its own CA.

Each session makes a certificate authority of its own (an ECDSA P-256 key and a
self-signed certificate, with the ``cryptography`` package), and signs with it one
certificate for the coordinator and one that every worker of the session shares. Every
remote link is mutual TLS 1.3 that trusts *only* that CA (never the system's store),
and the session key's HMAC challenge still runs inside it. The CA's private key never
leaves the kernel's memory; it is dropped once the two certificates are signed.

Host names are not checked (workers connect by whatever address reaches the
coordinator, often an IP): the trust is "holds a certificate of this session", as in
Dask's ``Security`` with ``require_encryption``.

A *credentials file* holds what a worker needs: the session key, the worker
certificate and its private key, and the CA certificate. It is created 0600 and is the
only secret a worker is handed; a command line never holds one. ``--insecure``
sessions have no certificates: the file then holds the key alone.
"""

from __future__ import annotations

import datetime
import os
import re
import ssl
import tempfile
from dataclasses import dataclass

KEY_LABEL = "IPYWORKERS SESSION KEY"
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----\r?\n?", re.S)
VALID_DAYS = 7


@dataclass(frozen=True)
class Credentials:
    """A session's secrets as one party holds them. ``cert``/``private_key`` are that
    party's own (PEM); ``ca`` is the session CA's certificate. All None when insecure."""

    key: bytes
    ca: bytes | None = None
    cert: bytes | None = None
    private_key: bytes | None = None

    @property
    def secure(self) -> bool:
        return self.ca is not None

    # -- files ----------------------------------------------------------------------------

    def dumps(self, address: str | None = None) -> str:
        lines = ["# ipyworkers session credentials. Secret: whoever holds this file can run code in the session.",
                 "# python -m ipyworkers.worker --connect ADDRESS --credentials THIS_FILE"]
        if address:
            lines.append(f"# address: {address}")
        text = "\n".join(lines) + "\n" + _pem(KEY_LABEL, self.key.hex().encode())
        for block in (self.cert, self.private_key, self.ca):
            if block:
                text += block.decode()
        return text

    @classmethod
    def loads(cls, text: str) -> Credentials:
        blocks = [(label, match.group(0).encode()) for match in _BLOCK.finditer(text) for label in [match.group(1)]]
        keys = [body for label, body in blocks if label == KEY_LABEL]
        if len(keys) != 1:
            raise ValueError("not an ipyworkers credentials file (no session key in it)")
        key = bytes.fromhex(_BLOCK.match(keys[0].decode()).group(2).strip())
        certs = [body for label, body in blocks if label == "CERTIFICATE"]
        private = [body for label, body in blocks if label.endswith("PRIVATE KEY")]
        if not certs:
            return cls(key)
        if len(certs) != 2 or len(private) != 1:
            raise ValueError("credentials file: expected a certificate, its key and the CA certificate")
        return cls(key, ca=certs[1], cert=certs[0], private_key=private[0])

    def write(self, path: str, address: str | None = None) -> str:
        """Write the file, readable by its owner only (created 0600, never widened)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.dumps(address))
        return path

    @classmethod
    def read(cls, path: str) -> Credentials:
        with open(path) as source:
            return cls.loads(source.read())

    # -- TLS contexts ---------------------------------------------------------------------

    def context(self, server: bool) -> ssl.SSLContext | None:
        """Mutual TLS 1.3 trusting only the session CA; None for an insecure session."""
        if not self.secure:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        if server:
            ctx.num_tickets = 0  # no resumption; and no post-handshake writes from the reading side
        ctx.load_verify_locations(cadata=self.ca.decode())
        _load_chain(ctx, self.cert + self.private_key)
        return ctx


def _pem(label: str, body: bytes) -> str:
    return f"-----BEGIN {label}-----\n{body.decode()}\n-----END {label}-----\n"


def _load_chain(ctx: ssl.SSLContext, pem: bytes) -> None:
    """``ssl`` loads a certificate chain only from a file: an anonymous memory file on
    Linux (never on disk), else a file in a fresh 0700 directory, removed at once."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("ipyworkers-cert", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
            return
        except OSError:
            pass
        finally:
            os.close(fd)
    with tempfile.TemporaryDirectory(prefix="ipyworkers-cert-") as tmp:
        path = os.path.join(tmp, "chain.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        ctx.load_cert_chain(path)


# -- a session's CA ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """What the coordinator holds: its own credentials and the workers'."""

    coordinator: Credentials
    worker: Credentials


def new_session(key: bytes, insecure: bool = False) -> Session:
    """A session CA and two certificates signed by it (coordinator, workers)."""
    if insecure:
        return Session(Credentials(key), Credentials(key))
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    session_id = os.urandom(8).hex()

    def name(role: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipyworkers"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"ipyworkers {role} {session_id}")])

    def builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("session CA")
    ca_cert = (builder(ca_name, ca_name, ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=True, crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)

    def member(role: str) -> Credentials:
        private = ec.generate_private_key(ec.SECP256R1())
        cert = (builder(name(role), ca_name, private.public_key())
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        return Credentials(key, ca=ca_pem, cert=cert.public_bytes(serialization.Encoding.PEM),
                           private_key=private_pem)

    return Session(member("coordinator"), member("worker"))
