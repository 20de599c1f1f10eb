"""Where a slot's disk comes from: a local file, or a URL (NBD, HTTP(S), SSH).

Pure: parsing and checking a source, and the block options QEMU opens it with.
The URL forms are the ones qemu-img, nbdkit and libguestfs users write:

- ``nbd://HOST[:PORT][/EXPORT]`` and ``nbd+unix:///[EXPORT]?socket=PATH`` (the NBD
  URI standard); ``nbds://`` and ``nbds+unix://`` with TLS, the client's
  certificate directory in ``?tls-certificates=DIR`` (``ca-cert.pem``, and
  ``client-cert.pem`` / ``client-key.pem`` if the server asks for them), default
  ``~/.pki/qemu`` as QEMU's;
- ``http://`` and ``https://`` (read-only; the server must serve byte ranges;
  the certificate is checked unless the drive says ``sslverify=False``);
- ``ssh://[USER@]HOST[:PORT]/PATH`` (the host key checked against
  ``~/.ssh/known_hosts`` of QEMU's user, or against the fingerprint in
  ``?host_key_check=sha256:HEX`` as QEMU's own URL form has it; the key from an ssh
  agent or ``~/.ssh/id_*``).

A password in a URL is refused (it would be kept in runtime records and shown in
messages): NBD and SSH use certificates and keys, and an HTTP URL's query (which
may hold a signed token) is never shown: :func:`shown` is what messages print.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

#: Schemes a slot takes, and their default ports.
SCHEMES = {"nbd": 10809, "nbds": 10809, "nbd+unix": None, "nbds+unix": None,
           "http": 80, "https": 443, "ssh": 22}
_NBD_QUERY = {"socket", "tls-certificates"}


class SourceError(ValueError):
    """A source URL cannot be used; ``str()`` says why (the URL is not in it)."""


def is_url(path: str) -> bool:
    """Whether *path* is a URL (``scheme://...``) rather than a file name."""
    head, sep, _ = path.partition("://")
    return bool(sep) and head.replace("+", "").isalnum()


def shown(url: str) -> str:
    """*url* as messages show it: no password, no query (an HTTP query may be a
    signed token), no fragment.  A file name is shown as it is."""
    if not is_url(url):
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        user = parts.username
    except ValueError:
        return url.partition("://")[0] + "://..."
    if user:
        netloc = f"{user}@{netloc}"
    query = parts.query
    if parts.scheme.startswith("nbd"):  # the socket and certificate names are not secret
        query = "&".join(f"{k}={v[0]}" for k, v in parse_qs(query).items())
    elif query:
        query = "..."
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class Remote:
    """A disk behind a URL: what QEMU's protocol driver needs to open it."""

    url: str
    #: ``nbd``, ``http``, ``https`` or ``ssh`` (an ``nbds`` URL is ``nbd`` with ``tls``).
    protocol: str
    host: str = ""
    port: int | None = None
    #: An NBD server's Unix socket.
    socket: str = ""
    #: An NBD export name ("": the server's default export).
    export: str = ""
    #: The file on an SSH server.
    path: str = ""
    user: str = ""
    #: NBD over TLS: the client's certificate directory.
    tls_certificates: str = ""
    tls: bool = False
    #: HTTPS: check the server's certificate.
    sslverify: bool = True
    #: SSH: how the host key is checked: ``yes`` (known_hosts), ``no``, or
    #: ``TYPE:HEX`` (its md5, sha1 or sha256 fingerprint).
    host_key: str = "yes"

    @property
    def writable_protocol(self) -> bool:
        """Whether the protocol can take the guest's writes (HTTP cannot)."""
        return self.protocol in ("nbd", "ssh")

    def qemu_options(self, node_name: str | None = None, read_only: bool = True,
                     tls_creds: str | None = None) -> dict[str, Any]:
        """QEMU's ``BlockdevOptions`` of the protocol layer (what ``blockdev-add``'s
        ``file`` takes, and ``qemu-img``'s ``json:`` names).  *tls_creds*: the id of
        the ``tls-creds-x509`` object an ``nbds`` source needs."""
        opts: dict[str, Any] = {"driver": self.protocol}
        if self.protocol == "nbd":
            opts["server"] = ({"type": "unix", "path": self.socket} if self.socket else
                              {"type": "inet", "host": self.host, "port": str(self.port)})
            if self.export:
                opts["export"] = self.export
            if self.tls:
                if tls_creds is None:
                    raise ValueError("an nbds source needs its tls-creds object")
                opts["tls-creds"] = tls_creds
                if not self.socket:
                    opts["tls-hostname"] = self.host
        elif self.protocol in ("http", "https"):
            opts["url"] = self.url
            if self.protocol == "https":
                opts["sslverify"] = self.sslverify
        else:
            opts["server"] = {"host": self.host, "port": str(self.port)}
            opts["path"] = self.path
            if self.user:
                opts["user"] = self.user
            if self.host_key == "yes":
                opts["host-key-check"] = {"mode": "known_hosts"}
            elif self.host_key == "no":
                opts["host-key-check"] = {"mode": "none"}
            else:
                kind, _, digits = self.host_key.partition(":")
                opts["host-key-check"] = {"mode": "hash", "type": kind, "hash": digits}
        if node_name is not None:
            opts["node-name"] = node_name
        opts["read-only"] = read_only
        return opts

    def tls_object(self, object_id: str) -> dict[str, Any]:
        """The ``tls-creds-x509`` object (``object-add`` / ``--object``) of an ``nbds``
        source: a client that checks the server's certificate against the CA in the
        certificate directory."""
        return {"qom-type": "tls-creds-x509", "id": object_id, "endpoint": "client",
                "dir": self.tls_certificates, "verify-peer": True}


def parse(url: str, sslverify: bool = True) -> Remote:
    """Check source URL *url* and return its :class:`Remote`, or raise
    :class:`SourceError` (whose message does not repeat the URL)."""
    try:
        parts = urlsplit(url)
        port = parts.port
        user, password, host = parts.username, parts.password, parts.hostname
    except ValueError as e:
        raise SourceError(f"not a valid URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise SourceError(f"unknown scheme {scheme!r}: a slot takes a file name or one of "
                          f"{known}")
    if password is not None:
        raise SourceError("a password in the URL is refused (it would be kept in "
                          "runtime records): use a certificate, a key or an ssh agent")
    if parts.fragment:
        raise SourceError("a URL with a #fragment names no disk")
    if not sslverify and scheme != "https":
        raise SourceError("sslverify=False is for https:// sources only")
    default_port = SCHEMES[scheme]
    if scheme.startswith("nbd"):
        return _nbd(url, scheme, parts.path, parts.query, host or "", port, default_port,
                    user)
    if not host:
        raise SourceError(f"a {scheme}:// URL needs a host")
    if scheme == "ssh":
        if not parts.path or parts.path == "/":
            raise SourceError("an ssh:// URL needs the image's path")
        return Remote(url, "ssh", host=host, port=port or default_port,
                      path=unquote(parts.path), user=unquote(user or ""),
                      host_key=_host_key_check(parts.query))
    if user:
        raise SourceError("a user name in an http(s):// URL is refused (credentials are "
                          "never kept): the server must serve the image without one")
    return Remote(url, scheme, host=host, port=port or default_port, sslverify=sslverify)


_HASHES = {"md5": 32, "sha1": 40, "sha256": 64}


def _host_key_check(query: str) -> str:
    """An ssh:// URL's ``?host_key_check=`` (QEMU's own URL form): ``yes`` (the
    default: known_hosts), ``no``, or ``md5:``/``sha1:``/``sha256:`` and the host key's
    fingerprint in hex; returned as ``yes``, ``no`` or ``TYPE:HEX``."""
    if not query:
        return "yes"
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise SourceError("its query is not KEY=VALUE&...") from None
    unknown = sorted(set(params) - {"host_key_check"})
    if unknown or any(len(v) > 1 for v in params.values()):
        raise SourceError("an ssh:// URL takes one parameter, host_key_check=yes|no|"
                          "sha256:HEX (QEMU's)")
    value = params["host_key_check"][0]
    if value in ("yes", "no"):
        return value
    kind, _, fingerprint = value.partition(":")
    digits = fingerprint.replace(":", "").lower()
    if kind not in _HASHES or len(digits) != _HASHES[kind] or \
            any(c not in "0123456789abcdef" for c in digits):
        raise SourceError("host_key_check= is yes, no, or md5:, sha1: or sha256: and the "
                          "host key's fingerprint in hex")
    return f"{kind}:{digits}"


def _nbd(url: str, scheme: str, path: str, query: str, host: str, port: int | None,
         default_port: int | None, user: str | None) -> Remote:
    if user:
        raise SourceError("an NBD URL takes no user name")
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise SourceError("its query is not KEY=VALUE&...") from None
    unknown = sorted(set(params) - _NBD_QUERY)
    if unknown:
        raise SourceError(f"unknown NBD URL parameter(s) {', '.join(unknown)} (this takes "
                          f"{', '.join(sorted(_NBD_QUERY))})")
    if any(len(v) > 1 for v in params.values()):
        raise SourceError("a parameter is given twice")
    socket = params.get("socket", [""])[0]
    tls = scheme.startswith("nbds")
    certs = params.get("tls-certificates", [""])[0]
    if certs and not tls:
        raise SourceError("tls-certificates= is for nbds:// sources only")
    if tls and not certs:
        certs = os.path.expanduser("~/.pki/qemu")
    export = unquote(path[1:]) if path.startswith("/") else unquote(path)
    if scheme.endswith("+unix"):
        if host:
            raise SourceError(f"a {scheme}:// URL takes no host (write {scheme}:///EXPORT"
                              "?socket=PATH)")
        if not socket.startswith("/"):
            raise SourceError(f"a {scheme}:// URL needs ?socket=/absolute/path")
        return Remote(url, "nbd", socket=socket, export=export, tls=tls,
                      tls_certificates=certs)
    if socket:
        raise SourceError(f"?socket= is for nbd+unix:// URLs (this is {scheme}://)")
    if not host:
        raise SourceError(f"a {scheme}:// URL needs a host")
    return Remote(url, "nbd", host=host, port=port or default_port, export=export, tls=tls,
                  tls_certificates=certs)
