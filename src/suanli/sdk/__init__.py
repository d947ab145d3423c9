"""Python client for the suanli HTTP API. The CLI and the site agent are built on it.

from suanli.sdk import Client
with Client("http://127.0.0.1:8731") as c:
    job = c.submit_file("examples/hello.yaml")
    for text in c.logs(job.id, follow=True):
        print(text, end="")
"""

from __future__ import annotations

from suanli.sdk.client import DEFAULT_SERVER, Client, default_server
from suanli.sdk.errors import ApiError, ServerUnreachable, WorkdirTooLarge
from suanli.sdk.workdir import (
    ALWAYS_EXCLUDED,
    DEFAULT_MAX_WORKDIR_MB,
    ProgressFn,
    format_bytes,
    max_workdir_bytes,
    pack_workdir,
    workdir_files,
)

__all__ = [
    "ALWAYS_EXCLUDED",
    "DEFAULT_MAX_WORKDIR_MB",
    "DEFAULT_SERVER",
    "ApiError",
    "Client",
    "ProgressFn",
    "ServerUnreachable",
    "WorkdirTooLarge",
    "default_server",
    "format_bytes",
    "max_workdir_bytes",
    "pack_workdir",
    "workdir_files",
]
