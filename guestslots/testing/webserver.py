"""A static HTTP(S) server on the host's 127.0.0.1, for tests and benchmarks of ``fetch``
and of http(s):// slots (which need byte ranges: ``ranges=True``)."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for *host* and its key, made by ``openssl`` in *directory*."""
    cert, key = directory / "server-cert.pem", directory / "server-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@contextlib.contextmanager
def serving(root: Path, host: str = "127.0.0.1", ranges: bool = False,
            tls: tuple[Path, Path] | None = None) -> Iterator[int]:
    """Serve directory *root* on *host* (a free port, returned) until the block ends;
    with *ranges*, ``Range: bytes=A-B`` requests get their bytes (206) and every
    file says ``Accept-Ranges: bytes``; with *tls* (certificate, key), over HTTPS."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if not ranges:
                super().do_GET()
                return
            f = self._ranged()
            if f is not None:
                with f:
                    remaining = self._length
                    while remaining > 0:
                        chunk = f.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        remaining -= len(chunk)

        def do_HEAD(self) -> None:
            if not ranges:
                super().do_HEAD()
                return
            f = self._ranged()
            if f is not None:
                f.close()

        def _ranged(self) -> Any:
            path = self.translate_path(self.path)
            try:
                f = open(path, "rb")  # noqa: SIM115 (the caller closes it)
            except OSError:
                self.send_error(404, "File not found")
                return None
            size = os.fstat(f.fileno()).st_size
            start, end = 0, size - 1
            asked = _RANGE.fullmatch(self.headers.get("Range", "").strip())
            if asked and (asked[1] or asked[2]):
                if asked[1]:
                    start = int(asked[1])
                    end = min(int(asked[2]), size - 1) if asked[2] else size - 1
                else:
                    start = max(size - int(asked[2]), 0)
                if start > end:
                    f.close()
                    self.send_error(416, "Range not satisfiable")
                    return None
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(200)
            self._length = end - start + 1
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(self._length))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            f.seek(start)
            return f

    httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()

