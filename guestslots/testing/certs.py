"""Certificates for a test's own TLS servers, made by ``openssl``: a CA, and a server
certificate for 127.0.0.1 that the CA signed, laid out as QEMU's ``tls-creds-x509``
wants them."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def x509_dirs(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A server's certificate directory (``ca-cert.pem``, ``server-cert.pem``,
    ``server-key.pem``) and a client's (``ca-cert.pem``: it checks the server's),
    under *directory*."""
    server, client = directory / "server", directory / "client"
    server.mkdir(parents=True)
    client.mkdir(parents=True)
    ca_key, ca_cert = directory / "ca-key.pem", directory / "ca-cert.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=guestslots test CA", "-keyout", str(ca_key), "-out", str(ca_cert))
    csr, ext = directory / "server.csr", directory / "server.ext"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
             "-keyout", str(server / "server-key.pem"), "-out", str(csr))
    ext.write_text(f"subjectAltName=IP:{host}\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext),
             "-out", str(server / "server-cert.pem"))
    for d in (server, client):
        (d / "ca-cert.pem").write_bytes(ca_cert.read_bytes())
    return server, client
