"""Where a served model is: the address given with `--endpoint`, which model it serves, and
whether the API key would cross the network in clear. No HTTP here (`server.endpoint` talks)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from model.llm.weights.registry import ModelUnavailable

ENDPOINT_ENV = "GEMMA_SQL_ENDPOINT"
API_KEY_ENV = "GEMMA_SQL_API_KEY"
SERVED_NAME = "gemma-sql"  # the name the README's server commands give the adapter


class EndpointError(ModelUnavailable):
    """The server gave no answer; the message is one line meant for the user."""


@dataclass(frozen=True)
class Endpoint:
    """Where the server is: its address and the API's root path ("/v1" by default)."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url.strip())
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise EndpointError(f"endpoint {url!r}: give the server's address, "
                                "e.g. http://127.0.0.1:8000/v1")
        default_port = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, port or default_port,
                   parts.path.rstrip("/") or "/v1")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def choose_model(model: str | None, served: list[str], url: str) -> str:
    """The name to ask `url` for (see `connect`). Ollama lists "name:tag" for "name"."""
    def serves(name: str) -> bool:
        return any(s == name or s.startswith(name + ":") for s in served)

    if model:
        if served and not serves(model):
            raise EndpointError(f"{url} does not serve {model!r}: it serves {', '.join(served)}")
        return model
    if len(served) == 1:
        return served[0]
    if serves(SERVED_NAME):
        return SERVED_NAME
    if not served:
        raise EndpointError(f"{url} lists no model: name it with --endpoint-model")
    raise EndpointError(f"{url} serves several models ({', '.join(served[:6])}): "
                        "choose one with --endpoint-model")


def key_in_clear(url: str, api_key: str | None = None) -> str | None:
    """The warning due when the API key (`api_key`, else $GEMMA_SQL_API_KEY) would go over
    plain http to another machine, where anyone on the way can read it; None when none is due
    (no key, https, a loopback address, or a URL that `connect` refuses anyway). A warning,
    not a refusal: a server on a private network is a common set-up."""
    if not (api_key or os.environ.get(API_KEY_ENV)):
        return None
    try:
        endpoint = Endpoint.parse(url)
    except EndpointError:
        return None
    if endpoint.scheme != "http" or _loopback(endpoint.host):
        return None
    return (f"the API key (${API_KEY_ENV}) goes to {endpoint.host} over plain http, readable "
            "on the way: use https")


def _loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
