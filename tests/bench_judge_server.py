"""A scripted OpenAI-compatible judge on 127.0.0.1 for the ParaBench tests."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What the server does for a request: answer well, answer text without a score, answer a body
# that is not a chat completion, answer an HTTP status, answer late (after `slow_s`), send its
# good answer one byte every `slow_s` (drip), or stream 64 MiB without a length (huge).
BEHAVIOURS = ("good", "malformed", "not_json", "429", "500", "400", "slow", "drip", "huge")


class JudgeServer:
    """`with JudgeServer(script=[...]) as server:` — the i-th request follows script[i] (then
    "good"); a good answer gives `scores[metric]` (default 7) after a short reasoning.
    `server.requests` holds every request body received, `server.metrics()` their metrics."""

    def __init__(self, script=(), scores=None, slow_s: float = 1.0) -> None:
        self.script, self.scores, self.slow_s = list(script), dict(scores or {}), slow_s
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    behaviour = server.script.pop(0) if server.script else "good"
                    server.requests.append(
                        {**body, "path": self.path, "auth": self.headers.get("Authorization")}
                    )
                metric = re.search(r"Metric: (\w+)", body["messages"][0]["content"])[1]
                if behaviour.isdigit():
                    self.send_error(int(behaviour))
                    return
                if behaviour == "slow":
                    time.sleep(server.slow_s)
                content = {
                    "malformed": "The image looks fine. Score: high",
                    "not_json": None,
                }.get(behaviour, f'Judged {metric}.\n{{"score": {server.scores.get(metric, 7)}}}')
                reply = (
                    b"<html>oops</html>"
                    if behaviour == "not_json"
                    else json.dumps(
                        {"choices": [{"message": {"role": "assistant", "content": content}}]}
                    ).encode()
                )
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    if behaviour == "huge":
                        self.end_headers()
                        for _ in range(1024):
                            self.wfile.write(b" " * (1 << 16))
                        return
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    if behaviour == "drip":
                        for byte in reply:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(server.slow_s)
                        return
                    self.wfile.write(reply)
                except OSError:  # the client gave up (timeout)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def metrics(self) -> list[str]:
        return [re.search(r"Metric: (\w+)", r["messages"][0]["content"])[1] for r in self.requests]

    def __enter__(self) -> JudgeServer:
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
