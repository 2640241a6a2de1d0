"""A real OpenAI-compatible server for the slow tests: `transformers serve` on a free loopback
port, on CPU, with the shipped model as a team would serve it (the adapter merged into the 270M
base). pyproject's dev extras install its `transformers[serving]` (FastAPI, uvicorn, openai).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVING_MODULES = ("fastapi", "uvicorn", "openai")


def serving_missing() -> list[str]:
    """What `transformers serve` needs and this Python lacks."""
    return [m for m in SERVING_MODULES if importlib.util.find_spec(m) is None]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def transformers_serve(weights: Path, log: Path, start_timeout_s: float = 600.0,
                       extra: list[str] | None = None) -> Iterator[str]:
    """The server's API root (http://127.0.0.1:PORT/v1) once it answers /health; stopped on
    leaving. Its output goes to `log`, whose end a failed start shows. `extra`: more flags
    (bench/serve.py's --serve-args)."""
    port = free_port()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", "--host",
               "127.0.0.1", "--port", str(port), "--device", "cpu", *(extra or []), str(weights)]
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = "\n".join(log.read_text().splitlines()[-20:])
                    raise RuntimeError(f"transformers serve did not start:\n{tail}") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
