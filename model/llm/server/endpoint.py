"""A model served by another program: any OpenAI-compatible server (vLLM, llama.cpp's
llama-server, Ollama's /v1, `transformers serve`) as a `TextEngine`, for a team that shares one
GPU server instead of loading a copy of the model per analyst.

The prompt is ours (`prompting.prompt`), sent as it is to the completions route: the text the
adapter was trained on. A server without that route (404 or 405, found once) gets the prompt's
user turn as the user message of the chat route, whose template puts Gemma's turn markers back.
Answers stream as server-sent events; a cancel shuts the connection down, which also tells the
server to stop. Candidates (`beams`) are `n` samples, ordered by mean log-probability where the
server reports it; a server without `n` gives none (greedy alone). The answers drawn to vote
on (`sample`) come from the same request. Every failure is one line
(`EndpointError`), never a silent fall back to another model.

Standard library only (http.client): importing this stays instant, and the app needs no HTTP
client package.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from model.llm.prompting.prompt import END_OF_TURN, QUESTION_FIRST, read_layout, user_turn
from model.llm.protocol import GenerationStats, Sampled
from model.llm.server.address import (
    API_KEY_ENV,
    Endpoint,
    EndpointError,
    choose_model,
)
from model.llm.server.wire import (
    CHAT,
    COMPLETIONS,
    DONE,
    MAX_BODY,
    MAX_LINE,
    Malformed,
    Shutter,
    choice_text,
    error_text,
    events,
    mean_logprob,
    parse_json,
    reason,
    server_message,
    token_logprobs,
)
from model.llm.weights.registry import check_adapter

CONNECT_TIMEOUT_S = 10.0
# The longest silence allowed between two pieces of an answer: a CPU server reading a
# 1,000-token prompt can take a minute before the first.
READ_TIMEOUT_S = 300.0
# The longest a whole request may take, the answer streamed included: a server that trickles
# (a piece now and then, never silent for READ_TIMEOUT_S) is cut off all the same.
ANSWER_TIMEOUT_S = 900.0
# Pieces a streamed answer may have per token asked for: a server sends one a token or fewer
# (several tokens a piece); one that sends more ignores max_tokens, and is stopped.
PIECES_PER_TOKEN = 4
SAMPLE_TEMPERATURE = 0.7
_MISSING_ROUTE = (404, 405)


class _Refused(Exception):
    """An HTTP error status, with the server's own message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if message else str(status))
        self.status = status


class EndpointEngine:
    """The model behind an OpenAI-compatible server (see the module's docstring).

    Each request has a connection of its own, so threads may ask at the same time (the server
    batches them); `last_stats` is each thread's own last answer's.
    """

    def __init__(self, endpoint: Endpoint, model: str, prompt_layout: str = QUESTION_FIRST,
                 api_key: str | None = None, timeout: float = READ_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.model = model  # the name the server serves it under
        self.device = endpoint.url  # the status bar's "where it runs"
        self.dtype = "server"  # the compute dtype is the server's choice, not ours
        self.prompt_layout = prompt_layout
        self.api_key = api_key
        self.timeout = timeout
        self.deadline_s = ANSWER_TIMEOUT_S  # a whole request's limit (see ANSWER_TIMEOUT_S)
        self.route: str | None = None  # COMPLETIONS or CHAT, once a request has found which
        self.samples: bool | None = None  # whether one request gets `n` answers
        self.scores: bool | None = None  # whether it takes `logprobs` with a streamed answer
        self._local = threading.local()
        self._latest = GenerationStats()

    @property
    def name(self) -> str:
        """The served model's name; a server's local path shortened to its last part."""
        return self.model.rstrip("/").rsplit("/", 1)[-1] if self.model.startswith("/") \
            else self.model

    @property
    def last_stats(self) -> GenerationStats:
        """The figures of this thread's last answer; in a thread that asked nothing (the app's
        own, showing the rate), of the last answer of all."""
        stats: GenerationStats = getattr(self._local, "stats", None) or self._latest
        return stats

    @last_stats.setter
    def last_stats(self, stats: GenerationStats) -> None:
        self._local.stats = self._latest = stats

    def warm(self, shared: str) -> None:
        """Nothing to send ahead: a server keeps a prompt's shared beginning itself (vLLM's
        automatic prefix caching, llama-server's prompt cache)."""

    def review(self, question: str, sqls: Sequence[str], cancel: Any = None) -> list[float]:
        """[]: no portable API gives a prompt's own log-probabilities, under the base model."""
        return []

    def stream(
        self,
        prompt: str,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 256,
        shared: str = "",
    ) -> Generator[str, None, None]:
        """The greedy answer to `prompt`, streamed as the server sends it (see `TextEngine`);
        its least likely token's log-probability kept where the server reports them (vLLM,
        llama-server), so that an answer the model was sure of is taken without a draw."""
        stats = GenerationStats(stop="length")
        self.last_stats = stats
        started = time.perf_counter()
        options = {"max_tokens": max_new_tokens, "temperature": 0, "stream": True}
        most = PIECES_PER_TOKEN * max_new_tokens + 16
        finished = False  # the server said the answer is complete
        try:
            with self._scored_answer(prompt, options, cancel) as (route, response):
                for event in events(response, lambda: _is_set(cancel)):
                    if event == DONE:
                        finished = True
                        break
                    text, finish, usage, logprobs = self._read_event(event, route)
                    if logprobs:
                        stats.min_logprob = min(logprobs if stats.min_logprob is None
                                                else [stats.min_logprob, *logprobs])
                    if usage:
                        stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                        stats.tokens = int(usage.get("completion_tokens") or stats.tokens)
                    if text:
                        if not stats.first_token_s:
                            stats.first_token_s = time.perf_counter() - started
                        stats.tokens += 1
                        if stats.tokens > most:
                            raise EndpointError(
                                f"{self.endpoint.url} sent more than {most} pieces for an "
                                f"answer of at most {max_new_tokens} tokens")
                        yield text
                    if finish:
                        finished = True
                        stats.stop = "eos" if finish == "stop" else str(finish)
                    if _is_set(cancel):
                        break
            if _is_set(cancel) and not finished:
                stats.stop = "cancel"
            elif not finished:
                raise EndpointError(f"{self.endpoint.url}: the answer broke off (the stream "
                                    "ended without its last event)")
        except GeneratorExit:
            stats.stop = "closed"
            raise
        except (OSError, http.client.HTTPException, Malformed) as e:  # or a cut-off reply
            if not _is_set(cancel):
                raise self._broken(e) from None
            stats.stop = "cancel"
        except _Refused as e:
            raise self._refused(e) from None
        finally:
            stats.seconds = time.perf_counter() - started
            decoding = stats.seconds - stats.first_token_s
            if stats.tokens > 1 and decoding > 0:
                stats.tokens_per_s = (stats.tokens - 1) / decoding

    def beams(
        self,
        prompt: str,
        n: int = 4,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 192,
        shared: str = "",
    ) -> list[str]:
        """`n` sampled answers, the likeliest first where the server reports log-probabilities;
        [] when the server does not give several answers to one request (greedy alone)."""
        drawn = self._draw(prompt, n, SAMPLE_TEMPERATURE, cancel, max_new_tokens)
        return list(dict.fromkeys(d.text for d in drawn if d.text))

    def sample(
        self,
        prompt: str,
        n: int = 4,
        temperature: float = SAMPLE_TEMPERATURE,
        cancel: threading.Event | None = None,
        max_new_tokens: int = 128,
        shared: str = "",
        seed: int = 0,
    ) -> list[Sampled]:
        """`n` answers drawn at `temperature` in one request, as `beams` asks for them (see
        `TextEngine`); [] when the server has no `n`, or on `cancel`. `seed` is not sent: not
        every server takes one, so draws may differ from one call to the next."""
        return self._draw(prompt, n, temperature, cancel, max_new_tokens)

    def _draw(self, prompt: str, n: int, temperature: float, cancel: threading.Event | None,
              max_new_tokens: int) -> list[Sampled]:
        """`n` answers of one request with `n`, the likeliest first (unscored ones last, with
        a log-probability of -inf); [] when the server gives no several answers to one."""
        if self.samples is False or n < 1:
            return []
        options = {"max_tokens": max_new_tokens, "temperature": temperature, "n": n,
                   "stream": False}
        try:
            with self._answer(prompt, options, cancel, logprobs=True) as (route, response):
                reply = parse_json(response.read(MAX_BODY).decode("utf-8", "replace"))
        except _Refused as e:
            # The first sampling request refused, right after the same prompt's greedy answer:
            # `n` or `logprobs` (llama-server answers 400 or 500 "Only one completion choice is
            # allowed", depending on its version).
            if self.samples is None:
                self.samples = False
                return []
            raise self._refused(e) from None
        except (OSError, http.client.HTTPException, Malformed) as e:  # or a cut-off reply
            if _is_set(cancel):
                return []
            raise self._broken(e) from None
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise EndpointError(f"{self.endpoint.url} sent a malformed reply: no choices")
        if len({c.get("index") for c in choices}) < n:  # `n` ignored: one sample is no list
            self.samples = False
            return []
        self.samples = True
        scored = [(mean_logprob(c), choice_text(c, route), c.get("finish_reason") != "length")
                  for c in choices]
        scored.sort(key=lambda s: (s[0] is None, -(s[0] or 0.0)))  # unscored last, in order
        return [Sampled(text, -math.inf if score is None else score, finished)
                for score, text, finished in scored]

    # --- the server's routes -------------------------------------------------------------

    def served_models(self) -> list[str]:
        """The names the server lists at /models; [] for a server without that route."""
        try:
            with self._exchange("GET", "/models", None, None) as response:
                reply = parse_json(response.read(MAX_BODY).decode("utf-8", "replace"))
        except _Refused as e:
            if e.status in _MISSING_ROUTE:
                return []
            raise self._refused(e) from None
        except (OSError, http.client.HTTPException) as e:
            raise self._broken(e) from None
        except Malformed as e:
            raise EndpointError(f"{self.endpoint.url}/models is not an OpenAI model list: {e}"
                                ) from None
        data = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(data, list):
            return []
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    @contextmanager
    def _answer(self, prompt: str, options: dict[str, Any], cancel: threading.Event | None,
                logprobs: bool = False) -> Iterator[tuple[str, http.client.HTTPResponse]]:
        """The server's response to `prompt` (with `options`) and the route it came from: the
        completions route, else the chat route when the server has no completions route."""
        missing: list[str] = []
        for route in [self.route] if self.route else [COMPLETIONS, CHAT]:
            body = {"model": self.model, **options}
            if route == COMPLETIONS:
                body.update(prompt=prompt, stop=[END_OF_TURN])
                if logprobs:
                    body["logprobs"] = 1
            else:
                body["messages"] = [{"role": "user", "content": user_turn(prompt)}]
                if logprobs:
                    body["logprobs"] = True
            try:
                with self._exchange("POST", route, body, cancel) as response:
                    self.route = route
                    yield route, response
                    return
            except _Refused as e:
                if self.route is not None or e.status not in _MISSING_ROUTE:
                    raise
                missing.append(f"{self.endpoint.path}{route} {e}")
        raise EndpointError(f"{self.endpoint.url} answers neither text completions nor chat "
                            f"({'; '.join(missing)}): is it an OpenAI-compatible API's root?")

    @contextmanager
    def _scored_answer(self, prompt: str, options: dict[str, Any], cancel: threading.Event | None
                       ) -> Iterator[tuple[str, http.client.HTTPResponse]]:
        """`_answer` with the tokens' log-probabilities asked for, unless the server refused
        them: a first refusal (an error status, not a missing route's or a key's) is asked
        again without them, and they are not asked for again."""
        if self.scores is not False:
            opened = False
            try:
                with self._answer(prompt, options, cancel, logprobs=True) as answer:
                    opened = True
                    yield answer
                self.scores = True
                return
            except _Refused as e:
                if opened or self.scores or e.status in (401, 403, *_MISSING_ROUTE):
                    raise
                self.scores = False
        with self._answer(prompt, options, cancel) as answer:
            yield answer

    @contextmanager
    def _exchange(self, method: str, route: str, body: dict[str, Any] | None,
                  cancel: threading.Event | None) -> Iterator[http.client.HTTPResponse]:
        """One request on a connection of its own, shut down when `cancel` is set and closed
        on leaving. An error status raises `_Refused`."""
        kind = (http.client.HTTPSConnection if self.endpoint.scheme == "https"
                else http.client.HTTPConnection)
        conn = kind(self.endpoint.host, self.endpoint.port, timeout=CONNECT_TIMEOUT_S)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            raise EndpointError(f"cannot reach {self.endpoint.url}: {reason(e)}") from None
        conn.sock.settimeout(self.timeout)
        watcher = Shutter(conn.sock, cancel, time.monotonic() + self.deadline_s)
        response = None
        headers = {"Accept": "text/event-stream, application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, self.endpoint.path + route, body=data, headers=headers)
            response = conn.getresponse()
            if response.status >= 400:
                raise _Refused(response.status, server_message(response.read(MAX_LINE)))
            yield response
            if watcher.expired:  # the read ended at the shut down: no whole answer
                raise self._too_long()
        except (OSError, http.client.HTTPException, Malformed):
            if watcher.expired:
                raise self._too_long() from None
            raise
        finally:
            watcher.stop()
            if response is not None:
                response.close()  # the socket's last user when the server ends the connection
            conn.close()

    def _read_event(self, event: Any, route: str
                    ) -> tuple[str, str | None, dict[str, Any] | None, list[float]]:
        """(text, finish reason, usage, its tokens' log-probabilities) of one streamed event."""
        if not isinstance(event, dict):
            raise Malformed(repr(event)[:80])
        if "error" in event:
            raise EndpointError(f"{self.endpoint.url} failed mid-answer: "
                                f"{error_text(event['error'])}")
        usage = event.get("usage") if isinstance(event.get("usage"), dict) else None
        choices = event.get("choices") or []
        if not isinstance(choices, list):
            raise Malformed(json.dumps(event)[:80])
        if not choices:  # a usage-only event
            return "", None, usage, []
        choice = choices[0]
        if not isinstance(choice, dict):
            raise Malformed(json.dumps(event)[:80])
        return choice_text(choice, route), choice.get("finish_reason"), usage, \
            token_logprobs(choice)

    def _refused(self, error: _Refused) -> EndpointError:
        if error.status in (401, 403):
            return EndpointError(f"{self.endpoint.url} refused the request ({error}): set "
                                 f"{API_KEY_ENV} to its API key")
        return EndpointError(f"{self.endpoint.url} answered {error}")

    def _too_long(self) -> EndpointError:
        return EndpointError(f"{self.endpoint.url} gave no whole answer in {self.deadline_s:g} s")

    def _broken(self, error: BaseException) -> EndpointError:
        if isinstance(error, Malformed):
            return EndpointError(f"{self.endpoint.url} sent a malformed reply: {error}")
        if isinstance(error, TimeoutError):
            return EndpointError(f"{self.endpoint.url} sent nothing for {self.timeout:g} s")
        return EndpointError(f"{self.endpoint.url}: the connection broke ({reason(error)})")


def connect(url: str, model: str | None = None, adapter: str | Path | None = None,
            api_key: str | None = None, timeout: float = READ_TIMEOUT_S) -> EndpointEngine:
    """The engine behind `url`, once the server has answered: `model` (which it must list),
    else the one model it lists, else the one it serves as `gemma-sql`. `adapter` is the
    adapter the server serves when it is not the shipped one: read for the prompt layout it
    was trained on. The API key is `api_key`, else $GEMMA_SQL_API_KEY."""
    layout = QUESTION_FIRST  # the shipped adapter's
    if adapter is not None:
        layout = read_layout(check_adapter(adapter)) or QUESTION_FIRST
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    engine = EndpointEngine(Endpoint.parse(url), model or "", layout, api_key, timeout)
    engine.model = choose_model(model, engine.served_models(), engine.endpoint.url)
    return engine


def _is_set(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()
