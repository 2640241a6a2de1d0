"""model/llm/open.py: the one way to open an engine (the front ends: tests/test_open_engine.py)."""

from __future__ import annotations

import pytest
from scripted_server import models, scripted_server

from model.llm.open import open_engine
from model.llm.server.address import EndpointError


def test_an_endpoint_opens_the_servers_model_and_a_dead_one_raises() -> None:
    with scripted_server({"/v1/models": models("gemma-sql")}) as server:
        engine = open_engine(endpoint=server.url)
        url = server.url
    assert engine.name == "gemma-sql"
    with pytest.raises(EndpointError):
        open_engine(endpoint=url)  # the server is gone
