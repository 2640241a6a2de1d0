"""The OpenAI API on the wire, for `model.llm.server.endpoint`: server-sent events, the text and
log-probabilities of a choice, error replies in one line, and a connection that is shut down
when its request is cancelled. Standard library only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from model.text import one_line

DONE = "[DONE]"  # the OpenAI stream's last event (not every server sends it)
COMPLETIONS = "/completions"
CHAT = "/chat/completions"
MAX_LINE = 1 << 20  # one line of a stream, and one event's data lines together
MAX_BODY = 16 << 20
POLL_S = 0.05  # how often a request's watcher looks at its cancel event


class Malformed(Exception):
    """A reply that is not what the OpenAI API sends; the message is an excerpt of it."""


class Shutter:
    """Shuts a request's socket down once `cancel` is set or at `deadline` (time.monotonic;
    `expired` then): a read blocked on a slow server returns at once (closing alone does not
    wake it), and the server sees the client go. The deadline bounds a server that trickles
    its answer, which the socket's timeout (a silence) does not.

    The socket itself, not its connection's: http.client hands a response that ends with the
    connection over to it and forgets the socket."""

    def __init__(self, sock: socket.socket, cancel: threading.Event | None,
                 deadline: float = math.inf) -> None:
        self._done = threading.Event()
        self.expired = False
        if cancel is not None or deadline < math.inf:
            threading.Thread(target=self._watch, args=(sock, cancel, deadline), daemon=True,
                             name="endpoint-cancel").start()

    def _watch(self, sock: socket.socket, cancel: threading.Event | None,
               deadline: float) -> None:
        while not self._done.wait(POLL_S):
            self.expired = time.monotonic() > deadline
            if self.expired or (cancel is not None and cancel.is_set()):
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)
                return

    def stop(self) -> None:
        self._done.set()


def events(response: http.client.HTTPResponse,
           stopped: Callable[[], bool] = lambda: False) -> Iterator[Any]:
    """The JSON payloads of a server-sent event stream, then `DONE` if the server sends it;
    a reply that is no stream (a server that ignores `stream`) is one payload. Ends early
    once `stopped()`: Linux still delivers what arrives on a socket shut down for reading."""
    if "text/event-stream" not in (response.getheader("Content-Type") or ""):
        yield parse_json(response.read(MAX_BODY).decode("utf-8", "replace"))
        return
    data: list[str] = []
    size = 0
    while (raw := response.readline(MAX_LINE + 1)) and not stopped():
        if len(raw) > MAX_LINE:  # never read on: the rest would be taken for another line
            raise Malformed(f"a line longer than {MAX_LINE >> 10} KiB")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line:
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value.removeprefix(" "))
                size += len(raw)
                if size > MAX_LINE:  # an event that never ends
                    raise Malformed(f"an event longer than {MAX_LINE >> 10} KiB")
            continue  # an event goes on until a blank line; comments and other fields skipped
        if data:
            payload, data, size = "\n".join(data), [], 0
            yield DONE if payload.strip() == DONE else parse_json(payload)
    if data:
        payload = "\n".join(data)
        yield DONE if payload.strip() == DONE else parse_json(payload)


def parse_json(text: str) -> Any:
    """`text` as JSON; `Malformed` with an excerpt when it is not."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise Malformed(repr(one_line(text)[:80])) from None


def choice_text(choice: dict[str, Any], route: str) -> str:
    """A choice's text: `text` from completions, the message's or delta's `content` from
    chat (None in a role-only delta: "")."""
    if route == COMPLETIONS:
        text = choice.get("text")
    else:
        part = choice.get("delta") or choice.get("message") or {}
        text = part.get("content") if isinstance(part, dict) else 0
    if text is None:
        return ""
    if not isinstance(text, str):
        raise Malformed(json.dumps(choice)[:80])
    return text


def token_logprobs(choice: dict[str, Any]) -> list[float]:
    """The log-probabilities of a choice's tokens (completions' `token_logprobs`, chat's
    `content[].logprob`), streamed or whole; [] when the server reports none."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return []
    values = logprobs.get("token_logprobs")
    if values is None and isinstance(logprobs.get("content"), list):
        values = [t.get("logprob") for t in logprobs["content"] if isinstance(t, dict)]
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def mean_logprob(choice: dict[str, Any]) -> float | None:
    """The mean log-probability of a choice's tokens; None when the server reports none."""
    numbers = token_logprobs(choice)
    return sum(numbers) / len(numbers) if numbers else None


def server_message(body: bytes) -> str:
    """The message in an error reply (OpenAI's `error.message`, FastAPI's `detail`), or the
    reply's text, in one short line."""
    text = body.decode("utf-8", "replace")
    try:
        reply = json.loads(text)
    except (ValueError, RecursionError):
        return one_line(text)[:200]
    if isinstance(reply, dict):
        for key in ("error", "detail", "message"):
            if key in reply:
                return error_text(reply[key])
    return one_line(text)[:200]


def error_text(error: Any) -> str:
    """An error object (`{"message": ...}`) or string in one short line."""
    if isinstance(error, dict):
        error = error.get("message", error)
    return one_line(error if isinstance(error, str) else json.dumps(error))[:200]


def reason(error: BaseException) -> str:
    """Why a connection failed, in a few words."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(error, socket.gaierror):
        return "unknown host"
    if isinstance(error, TimeoutError):
        return "timed out"
    return one_line(error)
