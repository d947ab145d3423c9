"""The typed client for one suanli server."""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel, TypeAdapter

from suanli.core.api import (
    BudgetOut,
    ExplainOut,
    InvoiceOut,
    JobOut,
    JobSubmit,
    NodeOut,
    Page,
    SiteOut,
    SiteRevenueOut,
    TariffVersionOut,
    TenantIn,
    TenantOut,
    TokenCreatedOut,
    TokenIn,
    TokenOut,
    UsageLineOut,
    UserIn,
    UserOut,
    WhoAmIOut,
    WorkdirOut,
)
from suanli.core.api_dryrun import DryRunOut
from suanli.core.protocol import (
    CheckpointReceipt,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)
from suanli.core.services import ServiceOut
from suanli.core.spec import JobSpec, parse_job_spec
from suanli.core.states import TransferState
from suanli.sdk.credentials import discover_token
from suanli.sdk.errors import ApiError, ServerUnreachable
from suanli.sdk.failover import FailoverTransport, parse_servers
from suanli.sdk.workdir import ProgressFn, ProgressReader, pack_workdir

DEFAULT_SERVER = "http://127.0.0.1:8731"
#: A transfer in these states is still on its way: :meth:`Client.wait_transfer` keeps looking.
TRANSFER_MOVING = frozenset({TransferState.QUEUED, TransferState.RUNNING})

M = TypeVar("M", bound=BaseModel)


#: Answers after which a submission is sent again (with its Idempotency-Key, so safely).
RETRY_STATUSES = frozenset({502, 503, 504})


def default_server() -> str:
    return os.environ.get("SUANLI_SERVER", DEFAULT_SERVER)


class Client:
    """Typed client for a suanli front desk: one server, or several replicas it fails over
    between (``sdk/failover.py``)."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        submit_retries: int = 3,
        retry_backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``submit_retries``: how often :meth:`submit` resends after a connection error or a
        502/503/504 (pauses of ``retry_backoff_s``, doubling; ``sleep`` waits them)."""
        #: Every server URL given (``SUANLI_SERVER`` may list replicas, comma-separated).
        self.servers = parse_servers(server or default_server())
        self.server = self.servers[0]
        self.submit_retries = max(0, submit_retries)
        self.retry_backoff_s = retry_backoff_s
        self._sleep = sleep
        if token is None:
            token = discover_token(self.server)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = FailoverTransport(self.servers) if len(self.servers) > 1 else None
        self._http = http or httpx.Client(base_url=self.server, timeout=timeout, headers=headers, transport=transport)
        if http is not None and token:
            self._http.headers.update(headers)

    # -- plumbing -------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def _unreachable(self, exc: httpx.TransportError) -> ServerUnreachable:
        where = f"at {self.server}" if len(self.servers) == 1 else f"at any of {', '.join(self.servers)}"
        return ServerUnreachable(
            f"cannot reach the suanli server {where} ({exc.__class__.__name__}). "
            "Is it running? Start one with 'suanli up', or point --server / SUANLI_SERVER at it."
        )

    def _get(self, path: str, model: type[M], **kwargs: Any) -> M:
        return model.model_validate_json(self._request("GET", path, **kwargs).content)

    # -- jobs -----------------------------------------------------------------------------
    def upload_workdir(self, root: Path, progress: ProgressFn | None = None, limit: int | None = None) -> WorkdirOut:
        with pack_workdir(root, limit) as packed:
            size = packed.seek(0, io.SEEK_END)
            packed.seek(0)
            body = ProgressReader(packed, size, progress)
            response = self._request(
                "POST",
                "/api/v1/workdirs",
                content=iter(body),
                headers={"Content-Type": "application/gzip", "Content-Length": str(size)},
            )
        return WorkdirOut.model_validate_json(response.content)

    def submit(
        self,
        spec: JobSpec,
        *,
        workdir: Path | None = None,
        progress: ProgressFn | None = None,
        tenant: str | None = None,
    ) -> JobOut:
        """Submit a job. The request carries a fresh ``Idempotency-Key``, so when the connection
        fails (or the server answers 502/503/504) it is sent again, up to ``submit_retries``
        times with doubling pauses, and the server answers a retry with the job the first try
        made: a retried submission never makes two jobs."""
        digest = self.upload_workdir(workdir, progress).digest if workdir is not None else None
        body = JobSubmit(spec=spec.model_dump(mode="json", exclude_none=True), workdir_digest=digest, tenant=tenant)
        headers = {"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
        content = body.model_dump_json().encode()
        attempt = 0
        while True:
            last = attempt >= self.submit_retries
            try:
                response = self._http.request("POST", "/api/v1/jobs", content=content, headers=headers)
            except httpx.TransportError as exc:
                if last:
                    raise self._unreachable(exc) from None
            else:
                if response.status_code not in RETRY_STATUSES or last:
                    if response.status_code >= 400:
                        raise _api_error(response)
                    return JobOut.model_validate_json(response.content)
            self._sleep(self.retry_backoff_s * 2**attempt)
            attempt += 1

    def dry_run(self, spec: JobSpec, *, tenant: str | None = None) -> DryRunOut:
        """What submitting ``spec`` now would do (site, start, price, cost, budget left, every
        site's verdict); nothing is stored and no workdir is uploaded."""
        body = JobSubmit(spec=spec.model_dump(mode="json", exclude_none=True), tenant=tenant)
        response = self._request(
            "POST",
            "/api/v1/jobs",
            params={"dry_run": "true"},
            content=body.model_dump_json().encode(),
            headers={"Content-Type": "application/json"},
        )
        return DryRunOut.model_validate_json(response.content)

    def submit_file(self, path: str | Path, *, name: str | None = None, progress: ProgressFn | None = None) -> JobOut:
        """Parse a spec file and submit it; ``workdir`` resolves against the file's folder."""
        path = Path(path)
        spec = parse_job_spec(path.read_text(encoding="utf-8"), str(path))
        if name:
            spec = spec.model_copy(update={"name": name})
        workdir = (path.parent / spec.workdir).resolve() if spec.workdir else None
        return self.submit(spec, workdir=workdir, progress=progress)

    def jobs(
        self,
        *,
        state: str | None = None,
        site: str | None = None,
        name: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        fold: bool = False,
    ) -> Page[JobOut]:
        """A page of jobs, newest first; ``fold``: each job array as one entry (its tasks,
        ``ID_INDEX``, counted by state in ``array``) rather than one per task."""
        params = {
            k: v
            for k, v in {"state": state, "site": site, "name": name, "limit": limit, "cursor": cursor}.items()
            if v is not None
        }
        if fold:
            params["fold"] = "true"
        return self._get("/api/v1/jobs", Page[JobOut], params=params)

    def iter_jobs(self, **filters: Any) -> Iterator[JobOut]:
        cursor: str | None = None
        while True:
            page = self.jobs(cursor=cursor, **filters)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def job(self, job_id: str) -> JobOut:
        return self._get(f"/api/v1/jobs/{job_id}", JobOut)

    def cancel(self, job_id: str) -> JobOut:
        return JobOut.model_validate_json(self._request("POST", f"/api/v1/jobs/{job_id}/cancel").content)

    # -- services (docs/serving.md) -------------------------------------------------------------
    def serve(self, spec: JobSpec, *, workdir: Path | None = None, tenant: str | None = None) -> ServiceOut:
        """Start a service from a spec with a ``service:`` section (``suanli serve``)."""
        digest = self.upload_workdir(workdir).digest if workdir is not None else None
        body = JobSubmit(spec=spec.model_dump(mode="json", exclude_none=True), workdir_digest=digest, tenant=tenant)
        content = body.model_dump_json().encode()
        response = self._request(
            "POST", "/api/v1/services", content=content, headers={"Content-Type": "application/json"}
        )
        return ServiceOut.model_validate_json(response.content)

    def services(self) -> list[ServiceOut]:
        return [ServiceOut.model_validate(s) for s in self._request("GET", "/api/v1/services").json()["items"]]

    def service(self, name: str, *, tenant: str | None = None) -> ServiceOut:
        return self._get(f"/api/v1/services/{name}", ServiceOut, params=_tenant(tenant))

    def scale_service(self, name: str, replicas: int, *, tenant: str | None = None) -> ServiceOut:
        response = self._request(
            "POST", f"/api/v1/services/{name}/scale", json={"replicas": replicas}, params=_tenant(tenant)
        )
        return ServiceOut.model_validate_json(response.content)

    def stop_service(self, name: str, *, tenant: str | None = None) -> ServiceOut:
        response = self._request("POST", f"/api/v1/services/{name}/stop", params=_tenant(tenant))
        return ServiceOut.model_validate_json(response.content)

    def explain(self, job_id: str) -> ExplainOut:
        """Why the job runs where it does, or waits: its reason and every site's verdict."""
        return self._get(f"/api/v1/jobs/{job_id}/explain", ExplainOut)

    def logs(self, job_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """Yield the job's output as text (``tail``: only its last N lines), as it arrives when
        ``follow`` is set."""
        params = {"follow": "true" if follow else "false"}
        if tail is not None:
            params["tail"] = str(tail)
        try:
            with self._http.stream("GET", f"/api/v1/jobs/{job_id}/logs", params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                yield from response.iter_text()
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"lost the connection to {self.server} while reading logs ({exc.__class__.__name__})"
            ) from None

    # -- network --------------------------------------------------------------------------
    def sites(self) -> list[SiteOut]:
        return _list_of(SiteOut, self._request("GET", "/api/v1/sites", params={"limit": 1000}))

    def nodes(self, site: str | None = None) -> list[NodeOut]:
        params: dict[str, Any] = {"limit": 10000}
        if site:
            params["site"] = site
        return _list_of(NodeOut, self._request("GET", "/api/v1/nodes", params=params))

    def drain(self, node: str, reason: str) -> NodeOut:
        """Take a node out of scheduling; attempts already on it run to their end."""
        response = self._request("POST", f"/api/v1/nodes/{node}/drain", json={"reason": reason})
        return NodeOut.model_validate_json(response.content)

    def undrain(self, node: str) -> NodeOut:
        return NodeOut.model_validate_json(self._request("POST", f"/api/v1/nodes/{node}/undrain").content)

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", "/healthz").json()
        return data

    # -- usage and bills -------------------------------------------------------------------
    def usage(
        self,
        *,
        tenant: str | None = None,
        site: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        month: str | None = None,
        by: str = "site",
    ) -> list[UsageLineOut]:
        params: dict[str, Any] = {"by": by}
        for key, value in (("tenant", tenant), ("site", site), ("month", month)):
            if value:
                params[key] = value
        if start:
            params["from"] = start.isoformat()
        if end:
            params["to"] = end.isoformat()
        return _list_of(UsageLineOut, self._request("GET", "/api/v1/usage", params=params))

    def site_revenue(self, *, month: str | None = None) -> list[SiteRevenueOut]:
        params = {"month": month} if month else {}
        return _list_of(SiteRevenueOut, self._request("GET", "/api/v1/usage/sites", params=params))

    def invoice(self, tenant: str, month: str) -> InvoiceOut:
        return self._get(f"/api/v1/invoices/{tenant}/{month}", InvoiceOut)

    def invoice_document(self, tenant: str, month: str, fmt: str) -> str:
        """The invoice as ``csv`` or printable ``html``."""
        return self._request("GET", f"/api/v1/invoices/{tenant}/{month}", params={"format": fmt}).text

    def tariffs(self, site: str | None = None) -> list[TariffVersionOut]:
        params = {"site": site} if site else {}
        return _list_of(TariffVersionOut, self._request("GET", "/api/v1/tariffs", params=params))

    def set_tariff(self, site: str, tariff: dict[str, Any], effective_from: datetime | None = None) -> TariffVersionOut:
        body: dict[str, Any] = {"site": site, "tariff": tariff}
        if effective_from:
            body["effective_from"] = effective_from.isoformat()
        return TariffVersionOut.model_validate_json(self._request("POST", "/api/v1/tariffs", json=body).content)

    def budgets(self) -> list[BudgetOut]:
        return _list_of(BudgetOut, self._request("GET", "/api/v1/budgets"))

    # -- identities -----------------------------------------------------------------------
    def whoami(self) -> WhoAmIOut:
        return self._get("/api/v1/whoami", WhoAmIOut)

    def create_token(
        self,
        *,
        name: str = "",
        user: str | None = None,
        scopes: list[str] | None = None,
        expires_in_s: int | None = None,
    ) -> TokenCreatedOut:
        body = TokenIn(name=name, user=user, scopes=scopes, expires_in_s=expires_in_s)
        response = self._request("POST", "/api/v1/tokens", json=body.model_dump(mode="json"))
        return TokenCreatedOut.model_validate_json(response.content)

    def tokens(self, *, user: str | None = None, all_users: bool = False) -> list[TokenOut]:
        params: dict[str, Any] = {"all": "true"} if all_users else {}
        if user:
            params["user"] = user
        return self._get("/api/v1/tokens", Page[TokenOut], params=params).items

    def revoke_token(self, token_id: str) -> TokenOut:
        return TokenOut.model_validate_json(self._request("DELETE", f"/api/v1/tokens/{token_id}").content)

    def users(self) -> list[UserOut]:
        return self._get("/api/v1/users", Page[UserOut]).items

    def create_user(
        self,
        name: str,
        *,
        role: str = "member",
        tenant: str | None = None,
        sites: list[str] | None = None,
        zone: str = "mainland",
    ) -> UserOut:
        """``zone``: where the user is (mainland, bonded, overseas); downloads are decided for it."""
        body = UserIn(name=name, role=role, tenant=tenant, sites=sites or [], zone=zone)
        return UserOut.model_validate_json(
            self._request("POST", "/api/v1/users", json=body.model_dump(mode="json")).content
        )

    def set_user_disabled(self, name: str, disabled: bool) -> UserOut:
        action = "disable" if disabled else "enable"
        return UserOut.model_validate_json(self._request("POST", f"/api/v1/users/{name}/{action}").content)

    def tenants(self) -> list[TenantOut]:
        return self._get("/api/v1/tenants", Page[TenantOut]).items

    def create_tenant(self, name: str, *, home_region: str | None = None, weight: float = 1.0) -> TenantOut:
        body = TenantIn(name=name, home_region=home_region, weight=weight)
        return TenantOut.model_validate_json(
            self._request("POST", "/api/v1/tenants", json=body.model_dump(mode="json")).content
        )

    def metrics(self) -> str:
        return self._request("GET", "/metrics").text

    # -- agents ---------------------------------------------------------------------------
    def agent_register(self, request: RegisterRequest) -> RegisterResponse:
        response = self._request("POST", "/api/v1/agents/register", json=request.model_dump(mode="json"))
        return RegisterResponse.model_validate_json(response.content)

    def agent_heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse:
        response = self._request(
            "POST",
            "/api/v1/agents/heartbeat",
            json=request.model_dump(mode="json"),
            timeout=request.wait_s + 30.0,
        )
        return HeartbeatResponse.model_validate_json(response.content)

    def download_workdir(self, digest: str, dest: IO[bytes]) -> int:
        """Write the workdir archive ``digest`` into ``dest``; returns bytes written."""
        return self._download(f"/api/v1/agents/workdirs/{digest}", dest)

    def download_dataset(self, name: str, attempt_id: int, dest: IO[bytes]) -> int:
        """(Agents) Write dataset ``name``, from this site's copy, into ``dest``; returns bytes written."""
        return self._download(f"/api/v1/agents/datasets/{name}", dest, {"attempt": attempt_id})

    def upload_checkpoint(self, attempt_id: int, archive: IO[bytes], size: int) -> CheckpointReceipt:
        """(Agents) Send a job's checkpoint folder, packed as a ``.tar.gz`` of ``size`` bytes,
        for ``attempt_id`` at this agent's site; it becomes the job's latest checkpoint."""
        response = self._upload_archive("/api/v1/agents/checkpoints", attempt_id, archive, size)
        return CheckpointReceipt.model_validate_json(response.content)

    def upload_output(self, attempt_id: int, archive: IO[bytes], size: int) -> dict[str, Any]:
        """(Agents) Send a succeeded attempt's ``SUANLI_OUTPUT_DIR``, packed as a ``.tar.gz`` of
        ``size`` bytes; it becomes the derived dataset its job's ``output.dataset`` names."""
        out: dict[str, Any] = self._upload_archive("/api/v1/agents/outputs", attempt_id, archive, size).json()
        return out

    def _upload_archive(self, path: str, attempt_id: int, archive: IO[bytes], size: int) -> httpx.Response:
        """(Agents) Stream a ``.tar.gz`` of ``size`` bytes to ``path`` for ``attempt_id``."""
        return self._request(
            "POST",
            path,
            params={"attempt": attempt_id},
            content=iter(ProgressReader(archive, size, None)),
            headers={"Content-Type": "application/gzip", "Content-Length": str(size)},
        )

    def download_checkpoint(self, digest: str, attempt_id: int, dest: IO[bytes]) -> int:
        """(Agents) Write checkpoint ``digest``, the one ``attempt_id`` starts from, into ``dest``;
        returns bytes written."""
        return self._download(f"/api/v1/agents/checkpoints/{digest}", dest, {"attempt": attempt_id})

    # -- data chain (datasets, transfers, filings, ledger) ------------------------------------
    def download_data(self, name: str, dest: IO[bytes], *, zone: str | None = None) -> int:
        """Download dataset ``name`` (its owner's members) to you, in the zone your user record
        gives (``zone``, if given, must agree); the rules decide it first and it goes on the
        ledger. Returns the bytes written."""
        return self._download(f"/api/v1/datasets/{name}/download", dest, {"zone": zone} if zone else None)

    def _download(self, path: str, dest: IO[bytes], params: dict[str, Any] | None = None) -> int:
        """Stream GET ``path`` into ``dest``; returns the bytes written."""
        written = 0
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                for data in response.iter_bytes():
                    dest.write(data)
                    written += len(data)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.server} ({exc.__class__.__name__})") from None
        return written

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

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


def _list_of(model: type[M], response: httpx.Response) -> list[M]:
    page = TypeAdapter(Page[model]).validate_json(response.content)  # type: ignore[valid-type]
    items: list[M] = page.items
    return items


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(
        response.status_code,
        str(body.get("title") or response.reason_phrase),
        str(body.get("detail") or ""),
        body.get("errors") if isinstance(body.get("errors"), list) else None,
    )


def _tenant(tenant: str | None) -> dict[str, str]:
    return {"tenant": tenant} if tenant else {}
