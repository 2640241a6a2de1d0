"""A model served by another program (`--endpoint`): `endpoint.EndpointEngine` speaks the
`TextEngine` protocol over any OpenAI-compatible server; `address` is where it is and which
model it serves; `wire` is the HTTP and SSE format."""
