"""The typed client for a suanli front desk: jobs, the network, usage and bills, identities;
the data chain's calls come from :class:`~suanli.sdk.datachain.DataChainCalls`, and the site
agent's from :class:`~suanli.sdk.agent.SiteClient`."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from suanli.core.api import (
    BudgetChangeOut,
    BudgetIn,
    BudgetOut,
    ExplainOut,
    InvoiceOut,
    JobOut,
    JobRerun,
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
from suanli.core.overrides import Overrides
from suanli.core.services import ServiceOut
from suanli.core.spec import JobSpec, parse_job_spec
from suanli.sdk.base import DEFAULT_SERVER, BaseClient, _api_error, _list_of, default_server
from suanli.sdk.datachain import TRANSFER_MOVING, DataChainCalls
from suanli.sdk.errors import ServerUnreachable
from suanli.sdk.evals import EvalCalls
from suanli.sdk.privacy import PrivacyCalls
from suanli.sdk.uploads import register_local, upload_dataset
from suanli.sdk.workdir import ProgressFn, ProgressReader, pack_workdir

#: Answers after which a submission is sent again (with its Idempotency-Key, so safely).
RETRY_STATUSES = frozenset({502, 503, 504})

__all__ = ["DEFAULT_SERVER", "TRANSFER_MOVING", "BaseClient", "Client", "default_server"]


class Client(DataChainCalls, EvalCalls, PrivacyCalls):
    """Typed client for a suanli front desk: one server, or several replicas it fails over
    between (``sdk/failover.py``)."""

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

    def rerun(
        self,
        job_id: str,
        overrides: Overrides | None = None,
        *,
        workdir: Path | None = None,
        progress: ProgressFn | None = None,
    ) -> JobOut:
        """Submit a job again as a new job: its stored spec, secrets and workdir (``workdir``: a
        new one, uploaded first), with ``overrides`` applied (they win over the stored spec)."""
        digest = self.upload_workdir(workdir, progress).digest if workdir is not None else None
        body = JobRerun(overrides=overrides or Overrides(), workdir_digest=digest)
        content = body.model_dump_json(exclude_defaults=True).encode()
        headers = {"Content-Type": "application/json"}
        response = self._request("POST", f"/api/v1/jobs/{job_id}/rerun", content=content, headers=headers)
        return JobOut.model_validate_json(response.content)

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
        tenant: str | None = None,
        user: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        fold: bool = False,
    ) -> Page[JobOut]:
        """A page of jobs, newest first; ``fold``: each job array as one entry (its tasks,
        ``ID_INDEX``, counted by state in ``array``) rather than one per task. ``tenant`` and
        ``user`` narrow it to that tenant's jobs, that user's submissions."""
        given = {"state": state, "site": site, "name": name, "tenant": tenant, "user": user}
        params = {k: v for k, v in {**given, "limit": limit, "cursor": cursor}.items() if v is not None}
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

    def logs(
        self,
        job_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: str | None = None,
        rank: int | None = None,
        timestamps: bool = False,
    ) -> Iterator[str]:
        """Yield the job's output as text, as it arrives when ``follow`` is set. ``tail``: only its
        last N lines; ``since``: only what the server received since then (``10m``, ``2h``, or a
        time, UTC unless it gives an offset); ``rank``: only that node's; ``timestamps``: each
        line prefixed with when the server received it."""
        params = {"follow": "true" if follow else "false"}
        if tail is not None:
            params["tail"] = str(tail)
        if since is not None:
            params["since"] = since
        if rank is not None:
            params["rank"] = str(rank)
        if timestamps:
            params["timestamps"] = "true"
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
        """Each tenant's monthly budget and this month's spend (a member: its own)."""
        return _list_of(BudgetOut, self._request("GET", "/api/v1/budgets"))

    def set_budget(self, tenant: str, budget_cny: str | None) -> BudgetChangeOut:
        """Set a tenant's monthly budget, CNY (``None`` removes it); the admin only."""
        body = BudgetIn(budget_cny=budget_cny).model_dump()
        return BudgetChangeOut.model_validate_json(self._request("PUT", f"/api/v1/budgets/{tenant}", json=body).content)

    def budget_history(self, tenant: str | None = None) -> list[BudgetChangeOut]:
        """Every budget change the caller may see, oldest first."""
        params = {"tenant": tenant} if tenant else {}
        return _list_of(BudgetChangeOut, self._request("GET", "/api/v1/budgets/history", params=params))

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

    def upload_dataset(self, **kwargs: Any) -> dict[str, Any]:
        """Register a dataset at a site by upload: see :func:`suanli.sdk.uploads.upload_dataset`."""
        return upload_dataset(self, **kwargs)

    def register_local_dataset(self, site_token: str, **body: Any) -> dict[str, Any]:
        """Register a file already in a site agent's store: see :func:`suanli.sdk.uploads.register_local`."""
        return register_local(self, site_token=site_token, **body)


def _tenant(tenant: str | None) -> dict[str, str]:
    return {"tenant": tenant} if tenant else {}
