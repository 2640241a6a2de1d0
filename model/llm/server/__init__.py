"""A model served by another program (`--endpoint`): `endpoint.EndpointEngine` speaks the
`TextEngine` protocol over any OpenAI-compatible server; `wire` is the HTTP and SSE format."""
