"""Registering a dataset at a site by upload (``POST /api/v1/datasets/uploads``): the plain
chunks go to the front desk, which checks each against the manifest the caller computed, seals
it and passes it to the site's agent through its relay; the bytes rest only in that agent's
store. See ``app/uploads.py`` on the server's side."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from suanli.core.errors import SuanliError
from suanli.sdk.errors import ApiError
from suanli.sdk.workdir import ProgressFn

if TYPE_CHECKING:
    from suanli.sdk.client import Client

#: Rounds of "send what the site lacks, then finish" before giving up.
MAX_ROUNDS = 4


def upload_dataset(
    client: Client,
    *,
    name: str,
    owner: str,
    site: str,
    manifest: dict[str, Any],
    read_chunk: Callable[[int], bytes],
    classification: dict[str, Any] | None = None,
    derived_from: list[str] | None = None,
    progress: ProgressFn | None = None,
    wait_s: float = 300.0,
) -> dict[str, Any]:
    """Upload and register ``name`` at ``site``; ``read_chunk(i)`` gives chunk ``i``'s plain
    bytes as ``manifest`` (``chunk_size``, ``size``, ``chunks``: the BLAKE3 hashes) describes
    them. Waits up to ``wait_s`` for the site's agent at each step; returns the dataset."""
    body: dict[str, Any] = {
        "name": name,
        "owner": owner,
        "site": site,
        "manifest": manifest,
        "classification": classification,
        "derived_from": derived_from or [],
    }
    upload = client._json("POST", "/api/v1/datasets/uploads", json=body)
    base = f"/api/v1/datasets/uploads/{upload['id']}"
    count, size, chunk_size = len(manifest["chunks"]), int(manifest["size"]), int(manifest["chunk_size"])
    for _ in range(MAX_ROUNDS):
        have = set(_until(client, "GET", f"{base}/have", wait_s, f"the agent of site {site} did not answer")["have"])
        done = sum(min(chunk_size, size - i * chunk_size) for i in have)
        if progress:
            progress(done, size)
        for i in range(count):
            if i in have:
                continue
            data = read_chunk(i)
            _put(client, f"{base}/chunks/{i}", data, wait_s)
            done += len(data)
            if progress:
                progress(done, size)
        try:
            return _until(client, "POST", f"{base}/finish", wait_s, f"the agent of site {site} did not finish")
        except ApiError as exc:
            if exc.status != 409 or "still lacks chunks" not in exc.detail:
                raise
    raise SuanliError(f"site {site} still lacks chunks of '{name}' after {MAX_ROUNDS} rounds; register it again")


def register_local(client: Client, *, site_token: str, **body: Any) -> dict[str, Any]:
    """Register a file already in a site agent's store: ``name, owner, site, manifest,
    classification, derived_from, sealed_at_rest``; ``site_token`` (read at the site) says the
    bytes are there."""
    out: dict[str, Any] = client._json(
        "POST", "/api/v1/datasets/uploads/local", json=body, headers={"X-Site-Token": site_token}
    )
    return out


def _until(client: Client, method: str, path: str, wait_s: float, why: str) -> dict[str, Any]:
    """Ask until the answer is not 204 ("nothing yet"), for at most ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        left = deadline - time.monotonic()
        r = client._request(method, path, params={"wait_s": max(0.0, min(left, 20.0))})
        if r.status_code != 204:
            out: dict[str, Any] = r.json()
            return out
        if left <= 0:
            raise SuanliError(f"{why} in {wait_s:.0f} s; is its agent running?")


def _put(client: Client, path: str, data: bytes, wait_s: float) -> None:
    """One chunk; the relay full (429) means "send it again" (the back-pressure)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            r = client._request(
                "PUT", path, content=data, params={"wait_s": 10}, headers={"Content-Type": "application/octet-stream"}
            )
        except ApiError as exc:
            if exc.status != 429 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        if r.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise SuanliError(f"the relay had no room for {path} for {wait_s:.0f} s")
