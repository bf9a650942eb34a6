"""A stand-in for the cutout service on 127.0.0.1 (threads) and the FITS bodies it serves: the
network edge of the HTTP client's tests, nothing else is doubled."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from astropy.io import fits


def fits_bytes(cube: np.ndarray, bands: str = "grz") -> bytes:
    """A cutout-service response body: ``cube`` as a float32 (band, y, x) primary HDU with a BANDS card."""
    hdu = fits.PrimaryHDU(np.asarray(cube, dtype=np.float32))
    hdu.header["BANDS"] = bands
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


class CutoutServer:
    """Answers each GET with the next scripted reply (status, body, delay in s), then with ``default``
    (status, body, declared Content-Length or None for the body's own length)."""

    def __init__(self, default: tuple[int, bytes, int | None] = (404, b"no reply scripted", None)) -> None:
        self.replies: list[tuple[int, bytes, float]] = []
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if outer.replies:
                    (status, body, delay), declared = outer.replies.pop(0), None
                else:
                    (status, body, declared), delay = default, 0
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) if declared is None else declared))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/viewer/fits-cutout"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
