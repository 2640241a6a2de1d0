"""The endpoint client against a real HTTP peer (tests/scripted_server.py): streaming, the chat
fall back, candidates, and every failure as one line. The real model behind a real server is
tests/model/llm/server/test_endpoint_server.py's (slow)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from scripted_server import (
    Handler,
    answering,
    chat_delta,
    completion,
    models,
    scripted_server,
)

from model.llm.prompting.prompt import CONTEXT_FIRST, QUESTION_FIRST, build_prompt, user_turn
from model.llm.protocol import TextEngine
from model.llm.server.address import Endpoint, EndpointError, choose_model, key_in_clear
from model.llm.server.endpoint import EndpointEngine, connect

PROMPT = build_prompt("How many albums are there?", "CREATE TABLE albums (AlbumId, Title);")
PIECES = [" SELECT", " count(*)", " FROM", " albums"]


def one_line(error: pytest.ExceptionInfo[EndpointError]) -> str:
    text = str(error.value)
    assert "\n" not in text and text
    return text


def test_streams_our_prompt_from_the_completions_route() -> None:
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": answering(PIECES)}) as server:
        engine = connect(server.url)
        assert (engine.name, engine.device) == ("gemma-sql", server.url)
        assert list(engine.stream(PROMPT, max_new_tokens=40)) == PIECES
    body = server.requests[-1].body
    assert body == {"model": "gemma-sql", "prompt": PROMPT, "max_tokens": 40, "temperature": 0,
                    "stream": True, "stop": ["<end_of_turn>"], "logprobs": 1}
    stats = engine.last_stats
    assert (stats.tokens, stats.stop) == (4, "eos") and stats.seconds >= stats.first_token_s > 0
    assert stats.min_logprob is None  # none reported: the answer is not taken as sure


def scored(event: dict[str, Any], logprobs: list[float], chat: bool = False) -> dict[str, Any]:
    """A streamed event with its tokens' log-probabilities, as vLLM sends them."""
    event["choices"][0]["logprobs"] = (
        {"content": [{"token": "t", "logprob": lp} for lp in logprobs]} if chat
        else {"tokens": ["t"] * len(logprobs), "token_logprobs": logprobs})
    return event


def test_the_least_likely_streamed_token_is_kept() -> None:
    lps = [[-0.01], [-0.2, -0.05], [-0.6], [-0.1]]

    def complete(h: Handler, body: dict[str, Any]) -> None:
        h.sse([*(scored(completion(p), lp) for p, lp in zip(PIECES, lps, strict=True)),
               completion(finish="stop"), "data: [DONE]\n\n"])

    def chat(h: Handler, body: dict[str, Any]) -> None:
        h.sse([*(scored(chat_delta(p), lp, chat=True) for p, lp in zip(PIECES, lps, strict=True)),
               chat_delta(finish="stop")])

    for route, reply in (("/v1/completions", complete), ("/v1/chat/completions", chat)):
        with scripted_server({"/v1/models": models("gemma-sql"), route: reply}) as server:
            engine = connect(server.url)
            assert list(engine.stream(PROMPT)) == PIECES
        assert engine.last_stats.min_logprob == -0.6
        assert server.requests[-1].body["logprobs"] in (1, True)


def test_a_server_refusing_logprobs_on_a_stream_answers_without_them() -> None:
    def fussy(h: Handler, body: dict[str, Any]) -> None:
        if "logprobs" in body:
            h.json({"error": {"message": "logprobs is not supported with stream"}}, 400)
            return
        answering(PIECES)(h, body)

    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": fussy}) as server:
        engine = connect(server.url)
        assert list(engine.stream(PROMPT)) == PIECES
        assert list(engine.stream(PROMPT)) == PIECES
    asked = [r.body for r in server.requests if r.path == "/v1/completions"]
    assert ["logprobs" in body for body in asked] == [True, False, False]  # asked once only
    assert engine.last_stats.min_logprob is None


def test_a_server_without_completions_gets_the_question_turn_as_chat() -> None:
    def chat(h: Handler, body: dict[str, Any]) -> None:
        h.sse([chat_delta(role="assistant"), *(chat_delta(p) for p in PIECES),
               chat_delta(finish="stop")])  # and no [DONE]: transformers serve sends none

    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/chat/completions": chat}) as server:
        engine = connect(server.url)
        assert "".join(engine.stream(PROMPT)) == "".join(PIECES)
        assert "".join(engine.stream(PROMPT)) == "".join(PIECES)
    assert server.hits("/v1/completions") == 1  # found missing once, then not asked again
    [message] = server.requests[-1].body["messages"]
    assert message == {"role": "user", "content": user_turn(PROMPT)}
    assert message["content"].startswith("You are a powerful text-to-SQL model.")
    assert "<start_of_turn>" not in message["content"] and "<end_of_turn>" not in message["content"]


def test_a_server_with_neither_route_says_so_in_one_line() -> None:
    with scripted_server({"/v1/models": models("gemma-sql")}) as server:
        engine = connect(server.url)
        with pytest.raises(EndpointError) as error:
            list(engine.stream(PROMPT))
    line = one_line(error)
    assert "neither text completions nor chat" in line
    assert "/v1/completions 404" in line and "/v1/chat/completions 404" in line


def test_an_unreachable_endpoint_is_one_line_at_once() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(EndpointError) as error:
        connect(f"http://127.0.0.1:{port}/v1")
    assert time.monotonic() - started < 5
    assert one_line(error) == (f"cannot reach http://127.0.0.1:{port}/v1: connection refused "
                               "(is the server running?)")


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://host/v1", "http://host:port/v1", ""])
def test_a_bad_url_is_one_line(url: str) -> None:
    with pytest.raises(EndpointError) as error:
        connect(url)
    assert "e.g. http://127.0.0.1:8000/v1" in one_line(error)


def test_the_api_root_defaults_to_v1() -> None:
    assert Endpoint.parse("http://gpu-box:8000").url == "http://gpu-box:8000/v1"
    assert Endpoint.parse("http://gpu-box:11434/v1/").url == "http://gpu-box:11434/v1"
    assert Endpoint.parse("https://llm.example/api/v1").url == "https://llm.example:443/api/v1"


def test_a_server_error_is_one_line_with_its_message() -> None:
    def fail(h: Handler, body: dict[str, Any]) -> None:
        h.json({"error": {"message": "CUDA out of memory.\nTried to allocate 2 GiB"}}, 500)

    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": fail}) as server:
        engine = connect(server.url)
        with pytest.raises(EndpointError) as error:
            list(engine.stream(PROMPT))
    assert one_line(error) == (f"{server.url} answered 500: CUDA out of memory. Tried to "
                               "allocate 2 GiB")


def test_a_refused_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMMA_SQL_API_KEY", "wrong")
    refuse = lambda h, body: h.json({"error": {"message": "Invalid API key"}}, 401)  # noqa: E731
    with scripted_server({"/v1/models": refuse}) as server, \
            pytest.raises(EndpointError) as error:
        connect(server.url)
    assert server.requests[0].headers["Authorization"] == "Bearer wrong"
    assert one_line(error) == (f"{server.url} refused the request (401: Invalid API key): set "
                               "GEMMA_SQL_API_KEY to its API key")


@pytest.mark.parametrize(("events", "expected"), [
    (["data: {not json\n\n"], "sent a malformed reply: '{not json'"),
    ([{"choices": [{"index": 0, "text": 42}]}], "sent a malformed reply"),
    ([completion(" SELECT")], "the answer broke off (the stream ended without its last event)"),
    ([completion(" SELECT"), {"error": {"message": "engine died"}}],
     "failed mid-answer: engine died"),
])
def test_a_broken_stream_is_one_line(events: list[Any], expected: str) -> None:
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": lambda h, body: h.sse(events)}) as server:
        engine = connect(server.url)
        with pytest.raises(EndpointError) as error:
            list(engine.stream(PROMPT))
    assert expected in one_line(error)


def test_cancel_closes_a_slow_stream_and_the_server_sees_it() -> None:
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": lambda h, body: h.trickle([completion(" SELECT")])
                          }) as server:
        engine = connect(server.url)
        cancel = threading.Event()
        pieces = []
        started = time.monotonic()
        for piece in engine.stream(PROMPT, cancel=cancel):
            pieces.append(piece)
            threading.Timer(0.3, cancel.set).start()  # the user presses escape while it thinks
        # That the cancel happened (uncancelled, the server thinks for 30 s), within a bound
        # generous for a loaded machine.
        assert time.monotonic() - started < 10
        assert pieces == [" SELECT"] and engine.last_stats.stop == "cancel"
        assert server.gone.wait(10)  # the server's next write found the connection closed


def test_cancel_while_the_server_reads_the_prompt() -> None:
    """No headers yet (a long prompt on a CPU server): the cancel still ends the request."""
    def slow(h: Handler, body: dict[str, Any]) -> None:
        h.server.script.stop.wait(30)

    with scripted_server({"/v1/models": models("gemma-sql"), "/v1/completions": slow}) as server:
        engine = connect(server.url)
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        started = time.monotonic()
        assert list(engine.stream(PROMPT, cancel=cancel)) == []
        assert time.monotonic() - started < 10 and engine.last_stats.stop == "cancel"
        assert engine.beams(PROMPT, cancel=cancel) == []


def test_a_silent_server_times_out_in_one_line() -> None:
    def silent(h: Handler, body: dict[str, Any]) -> None:
        h.server.script.stop.wait(30)

    with scripted_server({"/v1/models": models("gemma-sql"), "/v1/completions": silent}) as server:
        engine = connect(server.url, timeout=0.5)
        with pytest.raises(EndpointError) as error:
            list(engine.stream(PROMPT))
    assert one_line(error) == f"{server.url} sent nothing for 0.5 s"


def test_closing_the_stream_early_is_recorded() -> None:
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": answering(PIECES)}) as server:
        engine = connect(server.url)
        stream = engine.stream(PROMPT)
        assert next(stream) == " SELECT"
        stream.close()
    assert engine.last_stats.stop == "closed"


def _samples(*choices: tuple[str, list[float] | None]) -> Any:
    reply = {"choices": [{"index": i, "text": text, "finish_reason": "stop",
                          "logprobs": None if lp is None else {"token_logprobs": lp}}
                         for i, (text, lp) in enumerate(choices)]}
    return lambda h, body: h.json(reply)


def test_candidates_are_samples_ordered_by_mean_logprob() -> None:
    reply = _samples((" SELECT 1", [-2.0, -2.0]), (" SELECT 2", [-0.1, -0.3]),
                     (" SELECT 3", [-1.0]), (" SELECT 2", [-0.5]))
    with scripted_server({"/v1/models": models("gemma-sql"), "/v1/completions": reply}) as server:
        engine = connect(server.url)
        assert engine.beams(PROMPT, n=4) == [" SELECT 2", " SELECT 3", " SELECT 1"]
    body = server.requests[-1].body
    assert (body["n"], body["logprobs"], body["stream"]) == (4, 1, False)
    assert body["temperature"] > 0 and body["prompt"] == PROMPT


def test_candidates_over_chat_are_ordered_by_its_logprobs_too() -> None:
    def chat(h: Handler, body: dict[str, Any]) -> None:
        if body["stream"]:
            h.sse([chat_delta(" SELECT 1"), chat_delta(finish="stop")])
            return
        h.json({"choices": [
            {"index": i, "message": {"role": "assistant", "content": text},
             "logprobs": {"content": [{"token": "x", "logprob": lp} for lp in lps]}}
            for i, (text, lps) in enumerate([(" SELECT 1", [-3.0]), (" SELECT 2", [-0.2, -0.4])])
        ]})

    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/chat/completions": chat}) as server:
        engine = connect(server.url)
        assert "".join(engine.stream(PROMPT)) == " SELECT 1"
        assert engine.beams(PROMPT, n=2) == [" SELECT 2", " SELECT 1"]
    body = server.requests[-1].body
    assert (body["n"], body["logprobs"]) == (2, True) and "prompt" not in body


def test_no_candidates_from_a_server_that_ignores_n() -> None:
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": _samples((" SELECT 1", None))}) as server:
        engine = connect(server.url)
        assert engine.beams(PROMPT, n=4) == []
        assert engine.beams(PROMPT, n=4) == []
    assert server.hits("/v1/completions") == 1  # greedy alone from then on


def test_answers_to_vote_on_are_drawn_by_the_same_request() -> None:
    """`sample` (the vote's draws) asks as `beams` does, at the temperature given: every answer
    kept, likeliest first, one cut off by the token limit marked unfinished."""
    reply = {"choices": [
        {"index": 0, "text": " SELECT 1", "finish_reason": "stop",
         "logprobs": {"token_logprobs": [-2.0]}},
        {"index": 1, "text": " SELECT 2", "finish_reason": "length",
         "logprobs": {"token_logprobs": [-0.5]}},
        {"index": 2, "text": " SELECT 1", "finish_reason": "stop", "logprobs": None}]}
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": lambda h, body: h.json(reply)}) as server:
        engine = connect(server.url)
        assert isinstance(engine, TextEngine)
        drawn = engine.sample(PROMPT, n=3, temperature=0.9, max_new_tokens=40)
    assert [(d.text, d.logprob, d.finished) for d in drawn] == [
        (" SELECT 2", -0.5, False), (" SELECT 1", -2.0, True), (" SELECT 1", -math.inf, True)]
    body = server.requests[-1].body
    assert (body["n"], body["temperature"], body["max_tokens"]) == (3, 0.9, 40)
    assert body["logprobs"] == 1 and body["stream"] is False


def test_no_answers_drawn_from_a_server_without_n() -> None:
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": _samples((" SELECT 1", None))}) as server:
        engine = connect(server.url)
        assert engine.sample(PROMPT, n=4) == [] and engine.beams(PROMPT, n=4) == []
    assert server.hits("/v1/completions") == 1


@pytest.mark.parametrize("status", [400, 500])  # llama-server's, by version
def test_no_candidates_from_a_server_that_refuses_n(status: int) -> None:
    refuse = lambda h, body: h.json(  # noqa: E731 (llama-server's words)
        {"error": {"message": "Only one completion choice is allowed"}}, status)
    with scripted_server({"/v1/models": models("gemma-sql"), "/v1/completions": refuse}) as server:
        engine = connect(server.url)
        assert engine.beams(PROMPT, n=4) == [] and engine.beams(PROMPT, n=4) == []
    assert server.hits("/v1/completions") == 1


@pytest.mark.parametrize(("asked", "served", "chosen"), [
    (None, ["/models/gemma-3-270m-merged"], "/models/gemma-3-270m-merged"),
    (None, ["google/gemma-3-270m", "gemma-sql"], "gemma-sql"),  # vLLM: base and the LoRA
    (None, ["llama3:latest", "gemma-sql:latest"], "gemma-sql"),  # Ollama's tags
    ("gemma-sql", ["gemma-sql:latest"], "gemma-sql"),
    ("mine", [], "mine"),  # a server without /models
])
def test_the_model_asked_for(asked: str | None, served: list[str], chosen: str) -> None:
    assert choose_model(asked, served, "URL") == chosen


@pytest.mark.parametrize(("asked", "served", "expected"), [
    (None, ["a", "b"], "URL serves several models (a, b): choose one with --endpoint-model"),
    (None, [], "URL lists no model: name it with --endpoint-model"),
    ("c", ["a", "b"], "URL does not serve 'c': it serves a, b"),
])
def test_an_unclear_model_is_one_line(asked: str | None, served: list[str],
                                      expected: str) -> None:
    with pytest.raises(EndpointError) as error:
        choose_model(asked, served, "URL")
    assert one_line(error) == expected


def test_the_name_of_a_model_served_from_a_path() -> None:
    engine = EndpointEngine(Endpoint.parse("http://h:1/v1"), "/root/.cache/gemma-270m+abc/")
    assert engine.name == "gemma-270m+abc"


def test_the_served_adapter_gives_the_prompt_layout(tmp_path: Path) -> None:
    from model.llm.prompting.prompt import write_layout

    (tmp_path / "adapter_config.json").write_text("{}")
    write_layout(tmp_path, CONTEXT_FIRST)
    with scripted_server({"/v1/models": models("gemma-sql")}) as server:
        assert connect(server.url).prompt_layout == QUESTION_FIRST  # the shipped adapter's
        assert connect(server.url, adapter=tmp_path).prompt_layout == CONTEXT_FIRST


def test_threads_ask_at_once_each_with_its_own_figures() -> None:
    with scripted_server({"/v1/models": models("gemma-sql"), "/v1/completions":
                          lambda h, body: h.sse([completion(body["prompt"][-3:]),
                                                 completion(finish="stop")], delay=0.2)}
                         ) as server:
        engine = connect(server.url)
        texts: dict[int, str] = {}
        figures: dict[int, int] = {}

        def ask(i: int) -> None:
            texts[i] = "".join(engine.stream(f"prompt {i:03d}"))
            figures[i] = engine.last_stats.tokens

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert time.monotonic() - started < 10
    assert texts == {i: f"{i:03d}" for i in range(4)} and set(figures.values()) == {1}
    assert engine.last_stats.tokens == 1  # a thread that asked nothing sees the last answer's


def test_the_error_body_is_read_whatever_its_shape() -> None:
    from model.llm.server.wire import server_message

    assert server_message(b'{"detail": "Not Found"}') == "Not Found"
    assert server_message(b'{"error": "model not loaded"}') == "model not loaded"
    assert server_message(b"<html>\n502 Bad Gateway</html>") == "<html> 502 Bad Gateway</html>"
    assert server_message(json.dumps({"error": {"code": 1}}).encode()) == '{"code": 1}'


# --- a server that does not stop (issue 35, item 10) ---------------------------------------


def test_a_server_sending_far_more_pieces_than_asked_for_is_stopped() -> None:
    flood = [completion(" x") for _ in range(2000)]
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": lambda h, body: h.sse(flood)}) as server:
        engine = connect(server.url)
        pieces: list[str] = []
        with pytest.raises(EndpointError) as error:
            pieces.extend(engine.stream(PROMPT, max_new_tokens=5))
    assert one_line(error) == (f"{server.url} sent more than 36 pieces for an answer of at "
                               "most 5 tokens")
    assert len(pieces) == 36


def test_a_server_that_trickles_forever_meets_the_deadline() -> None:
    """Never silent for the socket's timeout (a comment line every 0.1 s), never done: the
    request's deadline ends it, in one line."""
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": lambda h, body: h.trickle([completion(" SELECT")])
                          }) as server:
        engine = connect(server.url)
        engine.deadline_s = 0.5
        with pytest.raises(EndpointError) as error:
            list(engine.stream(PROMPT))
    assert one_line(error) == f"{server.url} gave no whole answer in 0.5 s"


@pytest.mark.parametrize(("stream", "expected"), [
    ("data: " + "x" * (2 << 20) + "\n\n", "a line longer than 1024 KiB"),
    ("data: 1\n" * 200_000 + "\n", "an event longer than 1024 KiB"),
    ("data: " + "[" * 100_000 + "]" * 100_000 + "\n\n", "sent a malformed reply: '[[[["),
], ids=["long line", "endless event", "nested"])
def test_an_oversized_or_deeply_nested_event_is_one_line(stream: str, expected: str) -> None:
    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": lambda h, body: h.sse([stream])}) as server:
        engine = connect(server.url)
        with pytest.raises(EndpointError) as error:
            list(engine.stream(PROMPT))
    assert expected in one_line(error)


def test_a_deeply_nested_reply_is_one_line() -> None:
    """A sampling reply and an error reply nested 100,000 deep: no RecursionError."""
    nested = "[" * 100_000 + "]" * 100_000

    def deep(h: Handler, body: dict[str, Any]) -> None:
        data = nested.encode()
        h.send_response(200 if body.get("n") else 500)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    with scripted_server({"/v1/models": models("gemma-sql"),
                          "/v1/completions": deep}) as server:
        engine = connect(server.url)
        engine.samples = True  # it answered `n` before: a malformed reply is an error
        with pytest.raises(EndpointError) as error:
            engine.sample(PROMPT, n=2)
        assert "sent a malformed reply" in one_line(error)
        with pytest.raises(EndpointError) as error:
            list(engine.stream(PROMPT))
        assert one_line(error).startswith(f"{server.url} answered 500: [[[[")


@pytest.mark.parametrize(("url", "warned"), [
    ("http://gpu-box:8000/v1", True),
    ("http://10.0.0.7:8000/v1", True),
    ("https://gpu-box:8000/v1", False),
    ("http://127.0.0.1:8000/v1", False),
    ("http://localhost:8000/v1", False),
    ("http://[::1]:8000/v1", False),
    ("not a url", False),
])
def test_an_api_key_over_plain_http_to_another_machine_is_warned_of(
    url: str, warned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMMA_SQL_API_KEY", "sk-secret")
    warning = key_in_clear(url)
    assert (warning is not None) == warned
    if warning:
        assert "gpu-box" in warning or "10.0.0.7" in warning
        assert "sk-secret" not in warning
    monkeypatch.delenv("GEMMA_SQL_API_KEY")
    assert key_in_clear(url) is None  # no key, nothing to leak
