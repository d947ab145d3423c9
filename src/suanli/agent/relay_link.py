"""An agent's link to the front desk's relay (``/api/v1/agents/relay``), over HTTP with the
site's token: what :class:`~suanli.datachain.relay.RelayChannel` (the source side) and
:func:`~suanli.datachain.relay.receive` (the destination side) talk to. Agents make only
outbound connections: both sides call the front desk, which passes sealed chunks between them.
"""

from __future__ import annotations

import threading

import httpx

from suanli.datachain.relay import Chunk, Outcome, RelayLost, Ticket
from suanli.datachain.transfer import TransferError


class HttpRelayLink:
    """One keep-alive connection per calling thread (the sender pushes from several)."""

    def __init__(self, server: str, token: str, *, timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[httpx.Client] = []
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(base_url=self.server, headers=self._headers, timeout=self._timeout)
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def close(self) -> None:
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()

    def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        r = self._http().request(method, f"/api/v1/agents/relay/{path}", **kwargs)  # type: ignore[arg-type]
        if r.status_code == 404:
            raise RelayLost(_detail(r))
        if r.status_code >= 400 and r.status_code != 429:
            raise TransferError(f"the relay refused {method} {path}: {_detail(r)}")
        return r

    def open(self, ticket: Ticket) -> None:
        body = self._call("GET", ticket.transfer_id).json()
        if body["root"] != ticket.manifest.root or body["dataset"] != ticket.dataset:
            raise TransferError(f"transfer {ticket.transfer_id} at the front desk is not the one this site was given")

    def push(self, transfer_id: str, chunk: Chunk, timeout: float) -> bool:
        r = self._call(
            "PUT",
            f"{transfer_id}/chunks/{chunk.index}",
            params={"last": str(chunk.last).lower(), "wait_s": timeout},
            content=chunk.blob,
        )
        return r.status_code == 200

    def pull(self, transfer_id: str, timeout: float) -> Chunk | None:
        r = self._call("GET", f"{transfer_id}/chunks/next", params={"wait_s": timeout})
        if r.status_code == 204:
            return None
        return Chunk(int(r.headers["X-Chunk-Index"]), r.headers["X-Chunk-Last"] == "1", r.content)

    def report_have(self, transfer_id: str, have: set[int]) -> None:
        self._call("PUT", f"{transfer_id}/have", json={"have": sorted(have)})

    def wait_have(self, transfer_id: str, timeout: float) -> set[int] | None:
        r = self._call("GET", f"{transfer_id}/have", params={"wait_s": timeout})
        return None if r.status_code == 204 else {int(i) for i in r.json()["have"]}

    def report_outcome(self, transfer_id: str, outcome: Outcome) -> None:
        body = {"root": outcome.root, "missing": list(outcome.missing), "error": outcome.error}
        self._call("PUT", f"{transfer_id}/outcome", json=body)

    def wait_outcome(self, transfer_id: str, timeout: float) -> Outcome | None:
        r = self._call("GET", f"{transfer_id}/outcome", params={"wait_s": timeout})
        if r.status_code == 204:
            return None
        doc = r.json()
        return Outcome(doc.get("root"), tuple(doc.get("missing") or ()), doc.get("error"))


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.status_code))
    except ValueError:
        return str(r.status_code)
