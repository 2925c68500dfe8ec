"""A stand-in OTLP/HTTP endpoint for making fixtures: it keeps every request body as
``NNNNN_<signal>.json`` in arrival order and answers 200 with an empty JSON body."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class OtlpCapture:
    """Listens on a free loopback port (``url``) until ``server.shutdown()``; ``n`` bodies kept so far."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.n = 0
        self.lock = threading.Lock()
        cap = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                signal = self.path.rstrip("/").rsplit("/", 1)[-1]
                with cap.lock:
                    (cap.out / f"{cap.n:05d}_{signal}.json").write_bytes(body)
                    cap.n += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
