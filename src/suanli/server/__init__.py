"""The HTTP API: the FastAPI app, its routers (each one call into ``suanli.app``), limits and metrics."""
