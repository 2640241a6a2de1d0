"""One way to open an engine from the choices a command line or the app was given: the server at
an endpoint, else a model loaded here. The command lines (finetune/options.py) and the app's
worker (tui/workers.py) both call it; each says a failure its own way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.llm.protocol import TextEngine


def open_engine(model: str | None = None, adapter: str | Path | None = None,
                device: str | None = None, endpoint: str | None = None,
                endpoint_model: str | None = None,
                progress: Callable[[str], None] | None = None,
                dtype: str | None = None) -> TextEngine:
    """The server at `endpoint` (`adapter`, if given, is the one it serves: read for its prompt
    layout; `model` and `device` are for a model loaded here, so unused), else `model` (None:
    the default) loaded here on `device` in `dtype` (None: the machine's).

    Raises ModelUnavailable (EndpointError for a server); the engine modules are imported only
    here, so a machine without torch can still run the app as a plain SQL client."""
    if endpoint:
        from model.llm.server.endpoint import connect

        return connect(endpoint, endpoint_model, adapter=adapter)
    from model.llm.decoding.loading import load_engine

    # No model named: left out, so the loader's own default decides.
    chosen: dict[str, Any] = {"model": model} if model else {}
    return load_engine(**chosen, adapter=adapter, device=device, progress=progress, dtype=dtype)
