"""What callers ask of services: each function is one request with its own transaction."""

from __future__ import annotations

from suanli.app import jobs, services
from suanli.app.control import ControlPlane
from suanli.app.sites import site_for_token
from suanli.core.api import JobSubmit
from suanli.core.identity import Identity
from suanli.core.services import ServiceOut
from suanli.store.models import Attempt, Job, Service


def _out(
    control: ControlPlane,
    row: Service,
    replica_jobs: list[Job],
    attempts: dict[int, Attempt],
    *,
    with_spec: bool = False,
) -> ServiceOut:
    return services.to_out(row, replica_jobs, attempts, control.servicedesk.live(row.id), with_spec=with_spec)


def start(control: ControlPlane, who: Identity, body: JobSubmit) -> ServiceOut:
    tenant = jobs.tenant_for_submit(who, body.tenant, control.default_tenant)
    spec = jobs.validate_spec(body.spec)
    jobs.check_fits(spec, control.capacity())
    with control.db.session() as session:
        row = services.start(
            session,
            who,
            body,
            tenant=tenant,
            now=control.clock.now(),
            secret_box=control.secrets,
            sites=control.capacity() if spec.datasets else None,
            rules=control.scheduler_config.data_rules,
        )
        out = _out(control, row, [], {}, with_spec=True)
    control.kick()
    return out


def listing(control: ControlPlane, who: Identity) -> list[ServiceOut]:
    with control.db.read() as session:
        rows = services.listing(session, who)
        reps = services.replicas(session, [r.id for r in rows])
        attempts = services.current_attempts(session, [j for js in reps.values() for j in js])
        return [_out(control, r, reps[r.id], attempts) for r in rows]


def get(control: ControlPlane, who: Identity, name: str, tenant: str | None = None) -> ServiceOut:
    with control.db.read() as session:
        row = services.get(session, who, name, tenant)
        reps = services.replicas(session, [row.id])[row.id]
        return _out(control, row, reps, services.current_attempts(session, reps), with_spec=True)


def scale(control: ControlPlane, who: Identity, name: str, count: int, tenant: str | None = None) -> ServiceOut:
    with control.db.session() as session:
        row = services.get(session, who, name, tenant)
        services.scale(session, who, row, count, control.clock.now())
    control.kick()
    return get(control, who, name, tenant)


def stop(control: ControlPlane, who: Identity, name: str, tenant: str | None = None) -> ServiceOut:
    with control.db.session() as session:
        row = services.get(session, who, name, tenant)
        sites = services.stop(session, who, row, control.clock.now())
    for site in sites:
        control.signals.bump(f"site:{site}")
    control.signals.bump("jobs")
    control.capacity_changed()
    return get(control, who, name, tenant)


def link_site(control: ControlPlane, token: str | None) -> str:
    """The site whose agent opens a link with ``token`` (401 otherwise)."""
    with control.db.read() as session:
        return site_for_token(session, token).name


def replica_service(control: ControlPlane, site: str, attempt_id: int) -> str | None:
    with control.db.read() as session:
        return services.replica_service(session, site, attempt_id)


def invocable(control: ControlPlane, who: Identity, tenant: str, name: str) -> str:
    """The id of the running service ``tenant``/``name`` that ``who`` may call."""
    with control.db.read() as session:
        return services.invocable(session, who, tenant, name).id


def by_model(control: ControlPlane, who: Identity, model: str) -> str:
    with control.db.read() as session:
        return services.by_model(session, who, model).id


def models(control: ControlPlane, who: Identity) -> list[dict[str, object]]:
    """``/v1/models``: every model name the caller's tenant's running services answer to."""
    with control.db.read() as session:
        rows = services.running_of(session, who)
        return [
            {"id": m, "object": "model", "created": int(r.created_at.timestamp()), "owned_by": r.tenant}
            for r in rows
            for m in services.model_names(r)
        ]
