"""The shipped OpenAI-compatible test server (examples/serve/llm_server.py), loaded and run in a thread."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

SERVER = Path(__file__).resolve().parents[1] / "examples" / "serve" / "llm_server.py"


def llm_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llm_server", SERVER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def running(model: str = "tiny-chat", replica: str = "r1") -> Iterator[str]:
    """The server's base URL (``http://127.0.0.1:PORT``) while the block runs."""
    server = llm_module().serve(0, model, replica=replica)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
