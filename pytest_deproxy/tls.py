"""Certificates for the HTTPS endpoints, the MITM endpoint and the clients that trust them.

Rule kept here: this is the only module that imports trustme. The CA's private key stays in
memory unless the caller asks for a file, and any key file written is readable by its owner
alone. Leaf certificates are issued once per set of host names and cached, the most recently
used few hundred of them: a MITM asked to CONNECT to ever new hosts stays the same size.
A server context keeps the sessions it can resume in memory (OpenSSL's cache, bounded).

trustme and cryptography are imported when a CA is first made or loaded, not with this
module: together they are about half of what loading the plugin costs a pytest run (~0.1 s of
CPU), and a suite that never asks for TLS never needs them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import ssl
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trustme


class CertificateAuthority:
    """One certificate authority, made with trustme, that signs every test certificate.

    Clients trust it through :attr:`cert_pem_path` (a PEM file) or :meth:`client_context`::

        ca = CertificateAuthority()
        requests.get(url, verify=ca.cert_pem_path)
    """

    #: How many server contexts are kept, least recently used dropped first. Each costs about
    #: 21 KB (2,000 hosts grew a process by 42 MB) and takes about a millisecond to issue again,
    #: so 256 keeps any test session's hosts cached while a flood of hosts costs at most ~5 MB.
    MAX_SERVER_CONTEXTS = 256

    def __init__(self, ca: trustme.CA | None = None) -> None:
        if ca is None:
            import trustme

            ca = trustme.CA(organization_name="pytest-deproxy")
        self._ca = ca
        self._lock = threading.Lock()
        self._server_contexts: OrderedDict[tuple[str, ...], ssl.SSLContext] = OrderedDict()
        self._client_contexts: dict[tuple[bool, tuple[str, ...]], ssl.SSLContext] = {}
        self._directory: str | None = None
        self._cleanup: weakref.finalize[[str, bool], CertificateAuthority] | None = None

    @classmethod
    def from_files(
        cls, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
    ) -> CertificateAuthority:
        """Load an existing CA from its PEM certificate and key, e.g. one a container trusts."""
        import trustme

        try:
            cert = Path(cert_path).read_bytes()
            key = Path(key_path).read_bytes()
            return cls(trustme.CA.from_pem(cert, key))
        except OSError as exc:
            raise ValueError(f"cannot read the CA files: {exc}") from exc
        except Exception as exc:  # cryptography's parse errors have no common base
            raise ValueError(
                f"{cert_path} and {key_path} are not a PEM CA certificate and its key: {exc}"
            ) from exc

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM-encoded."""
        return self._ca.cert_pem.bytes()

    def _private_directory(self) -> str:
        with self._lock:
            if self._directory is None:
                self._directory = tempfile.mkdtemp(prefix="deproxy-ca-")
                self._cleanup = weakref.finalize(self, shutil.rmtree, self._directory, True)
            return self._directory

    @property
    def cert_pem_path(self) -> str:
        """Path of a PEM file holding the CA certificate, for clients to trust."""
        path = os.path.join(self._private_directory(), "ca.pem")
        if not os.path.exists(path):
            self._ca.cert_pem.write_to_path(path)
        return path

    def write_key(self, path: str | os.PathLike[str]) -> str:
        """Write the CA's private key to ``path``, readable by its owner alone."""
        _write_private(path, self._ca.private_key_pem.bytes())
        return os.fspath(path)

    def write_cert(self, path: str | os.PathLike[str]) -> str:
        """Write the CA certificate (public) to ``path``."""
        Path(path).write_bytes(self.cert_pem)
        return os.fspath(path)

    def write_server_files(
        self, directory: str | os.PathLike[str], *hostnames: str
    ) -> tuple[str, str]:
        """Write a certificate for ``hostnames`` and its key, for a server that reads files (nginx).

        Returns ``(cert_chain_path, key_path)``; the key is readable by its owner alone.
        """
        if not hostnames:
            raise ValueError("write_server_files needs at least one host name or IP address")
        leaf = self._ca.issue_cert(*hostnames)
        name = "-".join(hostnames).replace(":", "_").replace("/", "_")
        cert_path = os.path.join(directory, f"{name}.pem")
        key_path = os.path.join(directory, f"{name}.key")
        Path(cert_path).write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        _write_private(key_path, leaf.private_key_pem.bytes())
        return cert_path, key_path

    def issue_client_cert(self, name: str) -> tuple[str, str]:
        """Write a client certificate for ``name`` (its common name; extended key usage
        clientAuth) signed by this CA, and its key, for a proxy under test to present to an
        endpoint that asks for one (nginx ``proxy_ssl_certificate``, haproxy ``crt``).

        Returns ``(cert_path, key_path)``, PEM files in this CA's private directory; the key is
        readable by its owner alone. Each call issues a new certificate::

            cert, key = deproxy.ca.issue_client_cert("proxy-under-test")
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"issue_client_cert needs a name for the client, got {name!r}")
        if len(name) > 64:
            raise ValueError(
                f"a certificate's common name has at most 64 characters; {name[:20]!r}... has "
                f"{len(name)}"
            )
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key(self._ca.private_key_pem.bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.cert_pem)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pytest-deproxy"),
                        x509.NameAttribute(NameOID.COMMON_NAME, name),
                    ]
                )
            )
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        stem = os.path.join(
            self._private_directory(), "client-" + re.sub(r"[^A-Za-z0-9._-]", "_", name)
        )
        cert_path, key_path = f"{stem}.pem", f"{stem}.key"
        Path(cert_path).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return cert_path, key_path

    def server_context(
        self, *hostnames: str, client_certs: str | None = None, alpn: tuple[str, ...] = ()
    ) -> ssl.SSLContext:
        """A server-side context with a certificate for ``hostnames``, signed by this CA.

        The certificate names the hosts in its subjectAltName only (no common name, which may
        not exceed 64 characters). ``client_certs`` (``"optional"`` or ``"required"``) asks
        the client for a certificate this CA signed (see :meth:`issue_client_cert`).
        ``alpn`` lists the protocols offered over ALPN, preferred first (e.g. ``("h2",
        "http/1.1")``); a client that offers none of them still connects, without ALPN.
        """
        if not hostnames:
            raise ValueError("server_context needs at least one host name or IP address")
        if client_certs not in (None, "optional", "required"):
            raise ValueError(
                f"client_certs is 'optional', 'required' or None, not {client_certs!r}"
            )
        names = tuple(sorted(set(hostnames)))
        if isinstance(alpn, str) or not all(isinstance(p, str) and p for p in alpn):
            raise TypeError(
                f"alpn is a tuple of protocol names like ('h2', 'http/1.1'), not {alpn!r}"
            )
        key = (*names, f"client-certs:{client_certs}", f"alpn:{','.join(alpn)}")
        with self._lock:
            context = self._server_contexts.get(key)
            if context is not None:
                self._server_contexts.move_to_end(key)
                return context
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                self._ca.issue_cert(*names).configure_cert(context)
            except (ValueError, UnicodeError):
                # trustme IDNA-encodes names and refuses ones like "host_a.local" or a label
                # over 63 characters, which test setups use and TLS clients accept: sign those
                # ourselves.
                self._configure_plain_leaf(context, names)
            if client_certs is not None:
                self._ca.configure_trust(context)
                required = client_certs == "required"
                context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
            if alpn:
                context.set_alpn_protocols(list(alpn))
            # Sessions are resumed from OpenSSL's cache on the server, not from tickets
            # encrypted to the client: a resumed handshake then costs ~7% less (no ticket to
            # decrypt, parse, build and encrypt again), and clients resume as before (a TLS
            # 1.3 ticket names the cached session). The cache is OpenSSL's: at most 20,480
            # sessions of ~1 KB each per context, the oldest dropped first.
            context.options |= ssl.OP_NO_TICKET
            self._server_contexts[key] = context
            while len(self._server_contexts) > self.MAX_SERVER_CONTEXTS:
                self._server_contexts.popitem(last=False)
            return context

    def _configure_plain_leaf(self, context: ssl.SSLContext, hostnames: tuple[str, ...]) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key(self._ca.private_key_pem.bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.cert_pem)
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = []
        for name in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                names.append(x509.DNSName(name))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(  # no common name: it is limited to 64 characters; SAN says it all
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pytest-deproxy"),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "test certificate"),
                    ]
                )
            )
            .issuer_name(ca_cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM) + leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # SSLContext reads certificates from files only: a private, short-lived one.
        with tempfile.TemporaryDirectory(prefix="deproxy-leaf-") as directory:
            path = os.path.join(directory, "leaf.pem")
            _write_private(path, pem)
            context.load_cert_chain(path)

    def client_context(
        self, *, include_system: bool = False, alpn: tuple[str, ...] = ()
    ) -> ssl.SSLContext:
        """A client-side context that trusts this CA (and the system store, if asked), and
        offers ``alpn`` (e.g. ``("h2",)``) when given."""
        with self._lock:
            key = (include_system, alpn)
            context = self._client_contexts.get(key)
            if context is None:
                context = ssl.create_default_context()
                if not include_system:
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._ca.configure_trust(context)
                if alpn:
                    context.set_alpn_protocols(list(alpn))
                self._client_contexts[key] = context
            return context

    def close(self) -> None:
        """Remove the files this CA wrote; it stays usable and writes them again if asked."""
        with self._lock:
            if self._cleanup is not None:
                self._cleanup()
            self._cleanup = None
            self._directory = None


def _write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a secret: the file is owner-only before a byte of it is written."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        file.write(data)


_unverified: ssl.SSLContext | None = None


def unverified_client_context() -> ssl.SSLContext:
    """A client context that checks neither the certificate nor the host name."""
    global _unverified
    if _unverified is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _unverified = context
    return _unverified
