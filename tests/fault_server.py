"""A small OpenAI-compatible chat server on 127.0.0.1 that fails on purpose, for the tests of
the LLM failure paths. Bounded: it serves at most ``max_requests`` and stops by itself after
``lifetime_s``; a hanging reply ends when the server stops.

``FaultServerProcess`` runs it in a process of its own (what the tests use: a server inside
the process under test competes with it for the interpreter), steered over HTTP at /control.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

#: What the server does with a chat request.
MODES = ("ok", "429", "500", "nonjson", "html", "401", "hang")

Reply = str | Callable[[list[dict[str, Any]]], str]
#: What /control may set.
SETTABLE = ("mode", "script", "reply", "retry_after")


class FaultServer:
    """``mode`` may be changed while it runs; ``script`` modes, when set, are used first, one
    per request; ``requests`` lists (mode, monotonic time) per chat request received."""

    def __init__(self, mode: str = "ok", *, reply: Reply = "Paris", retry_after: float = 1.0,
                 hang_s: float = 30.0, max_requests: int = 2000,
                 lifetime_s: float = 300.0) -> None:
        self.mode = mode
        self.reply = reply
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.script: list[str] = []
        self.requests: list[tuple[str, float]] = []
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FaultServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, mode: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, _ in self.requests if mode is None or m == mode)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with server._lock:
                    requests = list(server.requests)
                return self._send(200, {"requests": requests})

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))
                                  or b"{}")
                if self.path == "/control":
                    with server._lock:
                        for key, value in body.items():
                            if key in SETTABLE:
                                setattr(server, key, value)
                    return self._send(200, {"ok": True})
                with server._lock:
                    mode = server.script.pop(0) if server.script else server.mode
                    server.requests.append((mode, time.monotonic()))
                    over = len(server.requests) > server.max_requests
                if over:
                    threading.Thread(target=server.stop, daemon=True).start()
                    return self._send(503, {"error": {"message": "fault server: request cap"}})
                if mode == "429":
                    return self._send(429, {"error": {"message": "rate limited",
                                                      "type": "rate_limit_error"}},
                                      {"Retry-After": f"{server.retry_after:g}"})
                if mode == "500":
                    return self._send(500, {"error": {"message": "internal error",
                                                      "type": "server_error"}})
                if mode == "401":
                    return self._send(401, {"error": {"message": "Incorrect API key provided",
                                                      "type": "invalid_request_error",
                                                      "code": "invalid_api_key"}})
                if mode == "html":
                    return self._raw(200, b"<html><body><h1>Welcome to nginx!</h1></body></html>",
                                     "text/html")
                if mode == "hang":
                    server._stopped.wait(server.hang_s)
                    return self._send(504, {"error": {"message": "fault server: hung"}})
                reply = server.reply(body.get("messages", [])) if callable(server.reply) \
                    else server.reply
                if mode == "nonjson":
                    reply = "Sure! I would tune the retrieval, but I cannot write JSON today."
                return self._send(200, _completion(body.get("model", "fault"), reply))

            def _send(self, status: int, payload: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
                self._raw(status, json.dumps(payload).encode(), "application/json", headers)

            def _raw(self, status: int, data: bytes, content_type: str,
                     headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (its timeout): nothing to answer

        return Handler


def _completion(model: str, text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fault", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}


class FaultServerProcess:
    """A FaultServer in a child process, with the same attributes to steer and read."""

    def __init__(self, *, lifetime_s: float = 300.0, hang_s: float = 30.0) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(lifetime_s), str(hang_s)], stdout=subprocess.PIPE,
            text=True)
        self.api_base = self._process.stdout.readline().strip()
        if not self.api_base.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the fault server did not start: {self.api_base!r}")
        self._control = self.api_base.rsplit("/v1", 1)[0] + "/control"

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SETTABLE:
            self._post({name: value})
        else:
            super().__setattr__(name, value)

    @property
    def requests(self) -> list[tuple[str, float]]:
        with urllib.request.urlopen(self._control, timeout=10) as response:
            return [tuple(r) for r in json.loads(response.read())["requests"]]

    def count(self, mode: str | None = None) -> int:
        return sum(1 for m, _ in self.requests if mode is None or m == mode)

    def stop(self) -> None:
        self._process.kill()
        self._process.wait(10)

    def __enter__(self) -> FaultServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _post(self, values: dict[str, Any]) -> None:
        request = urllib.request.Request(self._control, data=json.dumps(values).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


if __name__ == "__main__":
    lifetime, hang = float(sys.argv[1]), float(sys.argv[2])
    child = FaultServer(lifetime_s=lifetime, hang_s=hang).start()
    print(child.api_base, flush=True)
    child._stopped.wait(lifetime + 1)
