"""The data chain's calls (datasets, grades, permits, transfers, filings, the ledger), part of
:class:`suanli.sdk.Client`. Their answers are plain JSON objects for now."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any, Literal, overload

from suanli.core.states import TransferState
from suanli.sdk.base import BaseClient

#: A transfer in these states is still on its way: :meth:`DataChainCalls.wait_transfer` keeps looking.
TRANSFER_MOVING = frozenset({TransferState.QUEUED, TransferState.RUNNING})


class DataChainCalls(BaseClient):
    # -- data chain (datasets, transfers, filings, ledger) ------------------------------------
    def download_data(self, name: str, dest: IO[bytes], *, zone: str | None = None) -> int:
        """Download dataset ``name`` (its owner's members) to you, in the zone your user record
        gives (``zone``, if given, must agree); the rules decide it first and it goes on the
        ledger. Returns the bytes written."""
        return self._download(f"/api/v1/datasets/{name}/download", dest, {"zone": zone} if zone else None)

    def register_dataset(self, **body: Any) -> dict[str, Any]:
        """``name, owner, home_site, path`` (a file on the server's machine), ``classification``…"""
        out: dict[str, Any] = self._json("POST", "/api/v1/datasets", json=body)
        return out

    def datasets(self, owner: str | None = None) -> list[dict[str, Any]]:
        params = {"owner": owner} if owner else {}
        items: list[dict[str, Any]] = self._json("GET", "/api/v1/datasets", params=params)["items"]
        return items

    def dataset(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self._json("GET", f"/api/v1/datasets/{name}")
        return out

    def grade_dataset(self, name: str, classification: dict[str, Any]) -> dict[str, Any]:
        """Grade ``name`` (you are recorded as its grader). The reply's ``applied`` is true when it
        kept or raised everything; a grading that lowers anything comes back as ``request``
        (pending) for an auditor, and ``dataset`` keeps its grade until then."""
        body = {"classification": classification}
        out: dict[str, Any] = self._json("POST", f"/api/v1/datasets/{name}/grade", json=body)
        return out

    def permit_export(
        self,
        name: str,
        *,
        basis: str,
        pia_ref: str,
        to: str | None = None,
        zone: str | None = None,
        staging: bool = False,
    ) -> dict[str, Any]:
        """(Owners) Record the PIPL basis and PI impact assessment for exports of ``name`` to site
        ``to`` (or downloads by users in ``zone``), and whether the scheduler may stage copies there."""
        body = {"to": to, "zone": zone, "basis": basis, "pia_ref": pia_ref, "staging": staging}
        out: dict[str, Any] = self._json("PUT", f"/api/v1/datasets/{name}/exports", json=body)
        return out

    def export_permissions(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", f"/api/v1/datasets/{name}/exports")["items"]
        return items

    def revoke_export(self, name: str, *, to: str | None = None, zone: str | None = None) -> None:
        params = {k: v for k, v in (("to", to), ("zone", zone)) if v}
        self._request("DELETE", f"/api/v1/datasets/{name}/exports", params=params)

    def grade_requests(self, *, state: str | None = None, dataset: str | None = None) -> list[dict[str, Any]]:
        """Grade requests (lowerings waiting for, or decided by, an auditor), oldest first."""
        params = {k: v for k, v in (("state", state), ("dataset", dataset)) if v}
        items: list[dict[str, Any]] = self._json("GET", "/api/v1/grade-requests", params=params)["items"]
        return items

    def grade_request(self, request_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._json("GET", f"/api/v1/grade-requests/{request_id}")
        return out

    def decide_grade_request(self, request_id: str, action: str, note: str = "") -> dict[str, Any]:
        """(Auditors) ``action``: approve (the dataset takes the requested grade) or deny."""
        out: dict[str, Any] = self._json("POST", f"/api/v1/grade-requests/{request_id}/{action}", json={"note": note})
        return out

    def check_movement(self, name: str, **body: Any) -> dict[str, Any]:
        """``to`` (a site) or ``zone``, ``kind`` (transfer, job_read, download, overseas_access), ``purpose``."""
        out: dict[str, Any] = self._json("POST", f"/api/v1/datasets/{name}/check", json=body)
        return out

    def set_exporter(self, tenant: str, *, ciio: bool = False, ftz: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = self._json("PUT", f"/api/v1/exporters/{tenant}", json={"ciio": ciio, "ftz": ftz})
        return out

    def create_transfer(self, dataset: str, to: str, **body: Any) -> dict[str, Any]:
        out: dict[str, Any] = self._json("POST", "/api/v1/transfers", json={"dataset": dataset, "to": to, **body})
        return out

    def run_transfer(self, transfer_id: str, timeout: float | None = None, *, wait: bool = True) -> dict[str, Any]:
        """Ask the server to run (or resume) a transfer. The server queues the copy and answers at
        once; with ``wait`` this follows it until it ends (``done``, or ``failed`` with the reason)
        or ``timeout`` seconds pass, and returns it as it stands then."""
        out: dict[str, Any] = self._json("POST", f"/api/v1/transfers/{transfer_id}/run")
        return self.wait_transfer(transfer_id, timeout) if wait else out

    def wait_transfer(
        self,
        transfer_id: str,
        timeout: float | None = None,
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 0.25,
    ) -> dict[str, Any]:
        """Follow a queued or running transfer until it leaves those states (or ``timeout``
        passes); ``progress`` sees the transfer at each look (``bytes_done`` moves)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.02, poll_s)
        while True:
            t = self.transfer(transfer_id)
            if progress is not None:
                progress(t)
            if t["state"] not in TRANSFER_MOVING or (deadline is not None and time.monotonic() >= deadline):
                return t
            time.sleep(delay)
            delay = min(delay * 2, poll_s)

    def transfer(self, transfer_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._json("GET", f"/api/v1/transfers/{transfer_id}")
        return out

    def transfers(self, dataset: str | None = None) -> list[dict[str, Any]]:
        params = {"dataset": dataset} if dataset else {}
        items: list[dict[str, Any]] = self._json("GET", "/api/v1/transfers", params=params)["items"]
        return items

    def create_filing(
        self, dataset: str, to: str | None = None, route: str | None = None, *, zone: str | None = None
    ) -> dict[str, Any]:
        """A draft filing for copying ``dataset`` to site ``to``, or for downloads by users in ``zone``."""
        body = {"dataset": dataset, "to": to, "route": route, "zone": zone}
        out: dict[str, Any] = self._json("POST", "/api/v1/filings", json=body)
        return out

    def filings(self, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else {}
        items: list[dict[str, Any]] = self._json("GET", "/api/v1/filings", params=params)["items"]
        return items

    @overload
    def filing_package(self, filing_id: str, fmt: Literal["html"] = "html") -> str: ...
    @overload
    def filing_package(self, filing_id: str, fmt: Literal["pdf"]) -> bytes: ...
    def filing_package(self, filing_id: str, fmt: Literal["html", "pdf"] = "html") -> str | bytes:
        """The filing's package: the HTML text, or with ``fmt="pdf"`` the PDF's bytes."""
        response = self._request("GET", f"/api/v1/filings/{filing_id}/package", params={"format": fmt})
        return response.content if fmt == "pdf" else response.text

    def filing_package_pdf(self, filing_id: str) -> bytes:
        """The filing's package as a PDF (A4)."""
        return self.filing_package(filing_id, "pdf")

    def move_filing(self, filing_id: str, action: str, **body: Any) -> dict[str, Any]:
        """``action``: submit, or (auditor) approve / reject."""
        out: dict[str, Any] = self._json("POST", f"/api/v1/filings/{filing_id}/{action}", json=body or None)
        return out

    def ledger_key(self) -> str:
        key: str = self._json("GET", "/api/v1/ledger/key")["public_key"]
        return key

    def ledger_keys(self) -> dict[str, Any]:
        """The log's key (hex and vkey), its origin, and the witnesses' vkeys the network lists."""
        out: dict[str, Any] = self._json("GET", "/api/v1/ledger/key")
        return out

    def ledger_latest_checkpoint(self) -> dict[str, Any] | None:
        """The newest signed checkpoint with its cosignatures (None while the log has none)."""
        out: dict[str, Any] = self._json("GET", "/api/v1/ledger/checkpoints/latest")
        return out or None

    def ledger_cosign(self, size: int, cosignature: str) -> dict[str, Any]:
        """Post a witness's cosignature/v1 line of the checkpoint at ``size``."""
        out: dict[str, Any] = self._json(
            "POST", "/api/v1/ledger/cosignatures", json={"size": size, "cosignature": cosignature}
        )
        return out

    def ledger_checkpoints(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", "/api/v1/ledger/checkpoints")["items"]
        return items

    def ledger_entries(self, start: int = 0, kind: str | None = None) -> list[dict[str, Any]]:
        """Every entry from ``start`` (auditor; the access itself is logged)."""
        out: list[dict[str, Any]] = []
        cursor: int | None = start
        while cursor is not None:
            params: dict[str, Any] = {"start": cursor, "limit": 10_000}
            if kind:
                params["kind"] = kind
            page = self._json("GET", "/api/v1/ledger/entries", params=params)
            out.extend(page["items"])
            cursor = int(page["next_cursor"]) if page.get("next_cursor") else None
        return out

    def ledger_counters(self, year: int | None = None) -> list[dict[str, Any]]:
        params = {"year": year} if year else {}
        items: list[dict[str, Any]] = self._json("GET", "/api/v1/ledger/counters", params=params)["items"]
        return items

    def inclusion_proof(self, index: int, size: int | None = None) -> dict[str, Any]:
        params = {"index": index, **({"size": size} if size else {})}
        out: dict[str, Any] = self._json("GET", "/api/v1/ledger/proofs/inclusion", params=params)
        return out

    def consistency_proof(self, first: int, second: int | None = None) -> dict[str, Any]:
        params = {"first": first, **({"second": second} if second else {})}
        out: dict[str, Any] = self._json("GET", "/api/v1/ledger/proofs/consistency", params=params)
        return out
