"""A small local "risk API" for the example: GET /score?amount=..&country=.. → {"score": 0..1}.

Deterministic, so training and serving see the same answers. ``--slow-ms`` delays every answer
(to show timeouts). Usage: ``python risk_api.py --port 8765``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HIGH_RISK = {"BR": 0.3, "US": 0.1}


def score(amount: float, country: str) -> float:
    return round(1 / (1 + math.exp(-(math.log1p(amount) - 5.0 + 3 * HIGH_RISK.get(country, 0.0)))), 6)


def serve(port: int, slow_ms: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path != "/score":
                self.send_response(404)
                self.end_headers()
                return
            query = parse_qs(url.query)
            try:
                amount = float(query["amount"][0])
            except (KeyError, ValueError):
                self.send_response(400)
                self.end_headers()
                return
            if slow_ms:
                time.sleep(slow_ms / 1000)
            body = json.dumps({"score": score(amount, query.get("country", [""])[0])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # resolvers call it concurrently; the default backlog of 5 drops connects
        daemon_threads = True

    return Server(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--slow-ms", type=int, default=0)
    args = parser.parse_args()
    serve(args.port, args.slow_ms).serve_forever()
