"""A real HTTP server on a loopback port, whose replies a test scripts: the peer for the
endpoint client's error paths (a 500, a malformed or cut stream, a slow server, a server
without the completions route) without loading a model. The standard library's http.server,
in a thread; each request recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[["Handler", dict[str, Any]], None]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class ScriptedServer:
    """Replies by path ("/v1/completions" ...); an unscripted path is a 404, as on a server
    without that route. `gone` is set when a reply found the client gone."""

    replies: dict[str, Reply]
    requests: list[Request] = field(default_factory=list)
    gone: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)  # ends slow replies
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def hits(self, path: str) -> int:
        return sum(r.path == path for r in self.requests)


class Handler(BaseHTTPRequestHandler):
    server: Any  # a ThreadingHTTPServer with `script` set

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass  # quiet test output

    def _handle(self) -> None:
        script: ScriptedServer = self.server.script
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        script.requests.append(Request(self.command, self.path, dict(self.headers), body))
        reply = script.replies.get(self.path)
        if reply is None:
            self.json({"detail": "Not Found"}, status=404)
            return
        try:
            reply(self, body)
        except (BrokenPipeError, ConnectionResetError):
            script.gone.set()

    do_GET = do_POST = _handle

    def json(self, payload: Any, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def sse(self, events: list[Any], delay: float = 0.0) -> None:
        """A server-sent event stream (HTTP/1.0: it ends when the connection closes); a str
        event is written as it is, anything else as one `data:` line of JSON."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event in events:
            text = event if isinstance(event, str) else f"data: {json.dumps(event)}\n\n"
            self.wfile.write(text.encode())
            self.wfile.flush()
            time.sleep(delay)

    def trickle(self, first: list[Any], limit_s: float = 30.0) -> None:
        """`first` as events, then a comment line every 0.1 s (nothing an answer has) until
        the client goes, the test ends or `limit_s` passes: a server slow to answer."""
        self.sse(first)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and not self.server.script.stop.wait(0.1):
            self.wfile.write(b": still thinking\n")
            self.wfile.flush()


def completion(text: str = "", finish: str | None = None) -> dict[str, Any]:
    return {"object": "text_completion",
            "choices": [{"index": 0, "text": text, "finish_reason": finish}]}


def chat_delta(content: str | None = None, finish: str | None = None,
               role: str | None = None) -> dict[str, Any]:
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    return {"object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def models(*names: str) -> Reply:
    return lambda h, body: h.json({"object": "list", "data": [{"id": n} for n in names]})


def answering(pieces: list[str], logprob: float | None = None) -> Reply:
    """A completions route that streams `pieces` (each token with `logprob`, when given), then
    the finishing event and [DONE]; asked for `n` answers without streaming (the candidates,
    the vote's draws), `n` times the same."""
    events: list[Any] = [completion(p) for p in pieces]
    if logprob is not None:
        for event in events:
            event["choices"][0]["logprobs"] = {"token_logprobs": [logprob]}

    def reply(h: Handler, body: dict[str, Any]) -> None:
        if body.get("stream", True):
            h.sse([*events, completion(finish="stop"), "data: [DONE]\n\n"])
            return
        h.json({"choices": [{"index": i, "text": "".join(pieces), "finish_reason": "stop",
                             "logprobs": None} for i in range(body.get("n", 1))]})

    return reply


@contextmanager
def scripted_server(replies: dict[str, Reply]) -> Iterator[ScriptedServer]:
    script = ScriptedServer(replies)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.script = script  # type: ignore[attr-defined]
    script.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield script
    finally:
        script.stop.set()
        httpd.shutdown()
        httpd.server_close()
