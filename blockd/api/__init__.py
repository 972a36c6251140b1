"""blockd's HTTP API (documented in blockd/API.md): the app, its handlers and its error mapping."""
