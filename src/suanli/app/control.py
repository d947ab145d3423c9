"""The control plane object: database, clock, settings, wake-ups, and the background loop.

Tests build one with a ManualClock and call ``tick()`` themselves; ``suanli server`` starts the
background thread, which ticks on an interval and whenever something kicks it (a submission, a
finished attempt), so a job starts within milliseconds of being submitted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy.orm import Session

from suanli.app import (
    blobs,
    budgetbook,
    datarules,
    idempotency,
    identities,
    jobs,
    metering,
    scheduling,
    serverkeys,
    services,
    sites,
    staging,
    transfers,
)
from suanli.app.agentcopies import AgentCopies
from suanli.app.blobstore import open_store
from suanli.app.chain import Chain
from suanli.app.crosstalk import Crosstalk
from suanli.app.fairshare import quotas_of
from suanli.app.leadership import Deposed, Leadership
from suanli.app.ledger import load_signing_key, parse_signing_key
from suanli.app.secrets import SecretBox
from suanli.app.serverkeys import LEDGER, SECRETS
from suanli.app.servicedesk import ServiceDesk
from suanli.app.settings import Settings
from suanli.app.signals import FollowSlots, Signals
from suanli.app.uploads import Uploads
from suanli.core.clock import Clock, SystemClock
from suanli.core.network import NetworkSpec
from suanli.core.policy import RuleSet
from suanli.core.scheduler import Policy, SiteState
from suanli.core.signednote import Verifier
from suanli.datachain.relay import Relay
from suanli.datachain.rulesets import ruleset_of
from suanli.filemodes import private_dir
from suanli.store.db import Database

log = logging.getLogger("suanli.server")

#: How often a replica that does not lead tries to take the lead (the fail-over time's bound).
LEADER_RETRY_S = 1.0
#: Least time between two scheduling passes.
MIN_PASS_GAP_S = 0.05
#: How often tokens' last-used times are written (batched, off the request path).
LAST_USED_FLUSH_S = 10.0
#: How often blobs nothing needs any more are deleted.
BLOB_SWEEP_S = 3600.0
#: Least time between two weighings of copies for waiting jobs (they read the registry and
#: explain each job's sites: tens of milliseconds on a large network).
STAGE_EVERY_S = 1.0


@dataclass
class TickResult:
    placed: int
    waiting: int
    lost: int


class ControlPlane:
    def __init__(self, settings: Settings, *, clock: Clock | None = None, db: Database | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        private_dir(settings.home)  # 0700; an existing home open to others is narrowed, with a warning
        settings.blob_dir.mkdir(parents=True, exist_ok=True)
        self.db = db or Database(settings.db_url)
        #: Workdir and checkpoint archives (``app/blobstore.py``): shared by replicas on PostgreSQL.
        self.blobs = open_store(settings.blob_store, self.db, settings.blob_dir)
        self.signals = Signals()
        #: Open log-following streams per tenant (``app/follow.py``).
        self.follows = FollowSlots()
        #: Seals job secrets at submission and opens them for agents' assignments.
        self.secrets = SecretBox(settings.secret_key_path, settings.secret_key)
        if settings.ledger_key:
            parse_signing_key(settings.ledger_key)  # a bad key stops the start, not the first seal
        self.identities = identities.Authenticator(self.db, self.clock)
        #: Set by :meth:`migrate` when it wrote a new admin token.
        self.admin_token_written: Path | None = None
        self._last_used_flush = 0.0
        self._last_sweep = time.monotonic()  # the first sweep comes an interval after start
        #: Work the leader's loop does every so often beside scheduling, registered by layers that
        #: build on this one (evaluations moving on): [interval in seconds, last run, the work].
        self._periodic: list[tuple[float, list[float], Callable[[], object]]] = []
        self._last_stage = float("-inf")
        #: The reasons the last weighing of copies gave waiting jobs (kept between weighings).
        self._stage_reasons: dict[str, str] = {}
        self._chain: Chain | None = None
        self._chain_lock = threading.Lock()
        #: The ledger's witnesses (the network file's ``witnesses``).
        self._witnesses: list[Verifier] = []
        #: Sealed chunks between two sites' agents, in memory, a bounded number per transfer.
        self.relay = Relay()
        #: Copies between two sites' agents under way, and their orders (``app/agentcopies.py``).
        self.agent_copies = AgentCopies(self.relay, lambda site: self.signals.bump(f"site:{site}"))
        #: Runs every copy: users' and the scheduler's (for waiting jobs), off the request path.
        self.transfers = transfers.TransferRunner(lambda: self.chain, self.capacity_changed, agents=self.agent_copies)
        #: Registrations by upload under way: their keys, in memory only (``app/uploads.py``).
        self.uploads = Uploads()
        #: The agents' links and the service replicas ready behind them (``app/servicedesk.py``).
        self.servicedesk = ServiceDesk()
        self.servicedesk.on_wait = lambda _service_id: self.kick()  # scale up from zero at once
        self._capacity: list[SiteState] | None = None
        self._capacity_lock = threading.Lock()
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = scheduling.PendingCache()
        #: Whether this replica runs the scheduler (always, on SQLite; ``app/leadership.py``).
        holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.leadership = Leadership(self.db, holder)
        #: Wake-ups to and from the other replicas on the same PostgreSQL (started by :meth:`start`).
        self.crosstalk = Crosstalk(self.db, holder, self._from_other_replica)
        self._default_tenant: str | None = None
        #: Scheduling policy, quotas and data rules; the network file sets them (``apply_network``).
        self.scheduler_config = scheduling.SchedulerConfig()
        self._tick_lock = threading.Lock()
        # Incremental passes: what the last full pass saw.
        self._epoch_lock = threading.Lock()
        self._epoch = 0
        self._planned_epoch = -1
        self._last_full = float("-inf")
        self._seen_seq = 0

    # -- set-up ---------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema up to date and make sure the network has an admin whose token is in
        ``$SUANLI_HOME/admin.token`` (mode 0600): the local CLI uses it, zero configuration."""
        self.db.migrate()
        with self.db.session() as session:
            self.admin_token_written = identities.bootstrap_admin(
                session, self.settings.home, self.clock.now(), sole_home=self.db.is_sqlite
            )
        if not self.db.is_sqlite:  # replicas may share this database: they must hold the same keys
            now = self.clock.now()
            serverkeys.agree(self.db, LEDGER, [self.chain.ledger.public_key.hex()], now)
            serverkeys.agree(self.db, SECRETS, self.secrets.fingerprints(), now)

    def tenants_changed(self) -> None:
        """A tenant was added or changed: fair-share weights are read again on the next pass."""
        self._pending.shares_at = None

    @property
    def admin_token_path(self) -> Path:
        return self.settings.home / identities.ADMIN_TOKEN_FILE

    def apply_network(self, network: NetworkSpec) -> list[str]:
        with self.db.session() as session:
            fresh = sites.apply_network(
                session, network, self.clock.now(), self.settings.token_dir, sole_home=self.db.is_sqlite
            )
            metering.sync_tariffs(session, network, self.clock.now())
            in_force = budgetbook.seed(session, network, self.clock.now())
            self._default_tenant = jobs.default_tenant(session)
        self._witnesses = network.witness_keys()
        if self._chain is not None:
            self._chain.ledger.witnesses = list(self._witnesses)
        self.scheduler_config = replace(
            self.scheduler_config,
            policy=Policy.from_decl(network.scheduling),
            quotas=quotas_of(network),
            budgets=in_force,
            waive_platform_faults=self.settings.waive_platform_faults,
            stage_data=network.scheduling.stage_data,
            transfer_rate_bps=network.scheduling.transfer_rate * 1e6,
            data_rules=ruleset_of(network.data_rules),
        )
        with self._chain_lock:
            if self._chain is not None:
                self._chain.rules = self.scheduler_config.data_rules
        self._pending.shares_at = None  # weights and quotas may have changed
        self.invalidate_capacity()
        return fresh

    def budgets_changed(self, in_force: dict[str, Decimal]) -> None:
        """A budget was set here: this replica's copy follows (the scheduler and the submit
        check read the stored budgets themselves)."""
        self.scheduler_config = replace(self.scheduler_config, budgets=in_force)
        self.kick()

    @property
    def default_tenant(self) -> str:
        """Whom a job that names no tenant belongs to (read once: the network file sets it)."""
        if self._default_tenant is None:
            with self.db.read() as session:
                self._default_tenant = jobs.default_tenant(session)
        return self._default_tenant

    def site_token_path(self, site: str) -> Path:
        return sites.token_file(self.settings.token_dir, site)

    # -- capacity cache (for refusing jobs that can never fit) ------------------------------
    def capacity(self) -> list[SiteState]:
        with self._capacity_lock:
            if self._capacity is None:
                with self.db.read() as session:
                    self._capacity = sites.capacity_view(session, self.clock.now(), self.settings.lease_s).sites
            return self._capacity

    def invalidate_capacity(self) -> None:
        with self._capacity_lock:
            self._capacity = None

    def reservation(self, job_id: str) -> tuple[str, datetime] | None:
        """(site, estimated start) the last full pass reserved for this job, if any."""
        return self._pending.reservations.get(job_id)

    # -- the loop -------------------------------------------------------------------------
    def renew_leases(self) -> int:
        """At start: give every active attempt a full lease from now. Leases that ran out while
        the server was down say nothing about the sites (their agents could not report), so
        they must not expire before the agents have had a lease's time to report back."""
        with self.db.session() as session:
            return scheduling.renew_leases(session, self.clock.now(), self.settings.lease_s)

    def kick(self) -> None:
        """Ask for a scheduling pass soon (coalesced); on a replica that does not lead, ask the
        leader."""
        self._kick.set()
        if self.signals.relay is not None and not self.leadership.leads:
            self.crosstalk.send(["kick"])

    def capacity_changed(self) -> None:
        """Capacity may have grown (an attempt ended, a node came back): the next pass looks at
        every pending job again, not only new ones."""
        with self._epoch_lock:
            self._epoch += 1
        self._kick.set()
        if self.signals.relay is not None and not self.leadership.leads:
            self.crosstalk.send(["capacity"])

    def _from_other_replica(self, keys: list[str]) -> None:
        for key in keys:
            if key == "kick":
                self._kick.set()
            elif key == "capacity":
                with self._epoch_lock:
                    self._epoch += 1
                self._kick.set()
            else:
                self.signals.bump_local(key)

    def tick(self, full: bool = True) -> TickResult:
        """Expire leases, then place what fits. Safe to call from tests at any moment; passes
        never overlap (placements are planned on a snapshot and must not race).

        ``full=False`` lets the pass look only at jobs submitted since the last full pass when no
        capacity was freed meanwhile; a full pass still runs at least every scheduler interval."""
        with self._tick_lock:
            if not self.lead():
                return TickResult(0, 0, 0)
            try:
                return self._tick(full)
            except Deposed:
                log.warning("a scheduling pass was refused: another replica leads now")
                return TickResult(0, 0, 0)

    def lead(self) -> bool:
        """Whether this replica leads the scheduler now (taking the lead when it is free). A new
        leader renews every active attempt's lease, as at start: the old one may be long gone."""
        if self.leadership.step(self.clock.now()):
            self._took_lead()
        return self.leadership.leads

    def _took_lead(self) -> None:
        self.renew_leases()
        self._pending = scheduling.PendingCache()  # what another replica planned is not ours
        self.capacity_changed()

    def _tick(self, full: bool) -> TickResult:
        now = self.clock.now()
        self._reconcile_services(now)
        with self.db.read() as session:
            expired = scheduling.any_expired(session, now)
        lost_sites: set[str] = set()
        if expired:
            with self.db.session() as session:
                self.leadership.fence(session)
                lost_sites = scheduling.expire_leases(session, now, self.scheduler_config.policy)
            if lost_sites:
                self.capacity_changed()
        with self._epoch_lock:
            epoch = self._epoch
        started = time.monotonic()
        full = full or epoch != self._planned_epoch or started - self._last_full >= self.settings.scheduler_interval_s
        wake_at = self._pending.wake_at
        full = full or (wake_at is not None and now >= wake_at)  # a back-off ended: look at that job again
        with self.db.read() as session:
            plan = scheduling.plan_pass(
                session,
                now,
                self.settings.lease_s,
                self._pending,
                None if full else self._seen_seq,
                self.scheduler_config,
            )
        if full:
            self._planned_epoch, self._last_full = epoch, started
        result = scheduling.PassResult()
        needs: list[staging.Need] = []
        if plan is not None:
            self._seen_seq = max(self._seen_seq, *plan.seq_of.values())
            if plan.datasets_of and self.scheduler_config.stage_data:
                if started - self._last_stage >= STAGE_EVERY_S:
                    self._last_stage = started
                    needs = self._weigh_copies(plan, now)
                    self._stage_reasons = {n.job_id: n.reason for n in needs}
                else:
                    waiting = plan.decision.reasons
                    waiting.update({j: r for j, r in self._stage_reasons.items() if j in waiting})
            with self.db.session() as session:
                self.leadership.fence(session)
                result = scheduling.apply_plan(session, plan, now, self.settings.lease_s)
                # Placements of jobs on data reach the ledger in the transaction that commits them.
                on_data = [(j, s) for j, s in result.placements if j in plan.datasets_of]
                if on_data:
                    record_placements(
                        session, self.chain, on_data, plan.datasets_of, now, self.scheduler_config.data_rules
                    )
            if on_data:
                self.chain.seal()
            if needs:
                self._start_copies(needs, now)
        for site in result.sites | lost_sites:
            self.signals.bump(f"site:{site}")
        if result.placed or lost_sites or result.preempted or result.cancelled:
            self.signals.bump("jobs")
        if result.cancelled:
            self.capacity_changed()  # jobs waiting for the cancelled ones are decided by a full pass
        return TickResult(result.placed, result.waiting, len(lost_sites))

    def every(self, seconds: float, work: Callable[[], object]) -> None:
        """Run ``work`` from the scheduler loop about every ``seconds`` while this replica leads."""
        self._periodic.append((seconds, [float("-inf")], work))

    def run_periodic(self, now_monotonic: float) -> None:
        """The registered periodic work (:meth:`every`) that is due at ``now_monotonic``."""
        for every, last, work in self._periodic:
            if now_monotonic - last[0] >= every:
                last[0] = now_monotonic
                work()

    def _reconcile_services(self, now: datetime) -> None:
        """Each running service's replicas to the count it wants (``app/services.py``), after
        writing what the front desk metered since the last pass."""
        usage = self.servicedesk.take_usage()
        if usage:
            with self.db.session() as session:
                services.add_usage(session, usage, now)
        with self.db.read() as session:
            if not services.any_running(session):
                return
        with self.db.session() as session:
            self.leadership.fence(session)
            services.autoscale(session, self.servicedesk.loads(), now)
            made, sites = services.reconcile(session, now)
        for site in sites:
            self.signals.bump(f"site:{site}")
        if made or sites:
            self.signals.bump("jobs")
        if sites:
            self.capacity_changed()

    def sweep_blobs(self) -> blobs.Swept:
        """Delete the workdirs and checkpoints nothing needs any more (``app/blobs.py``)."""
        retention = timedelta(seconds=self.settings.blob_retention_s)
        with self.db.session() as session:
            return blobs.sweep(session, self.blobs, self.settings.blob_dir, self.clock.now(), retention)

    def sweep_idempotency_keys(self) -> int:
        """Forget submissions' Idempotency-Keys older than their retention (24 h)."""
        with self.db.session() as session:
            return idempotency.sweep(session, self.clock.now())

    @property
    def chain(self) -> Chain:
        """The data chain (rules, key store, ledger), opened on first use beside the state."""
        with self._chain_lock:
            if self._chain is None:
                self._chain = Chain.open(
                    self.db,
                    self.clock,
                    self.settings.home,
                    self.scheduler_config.data_rules,
                    self._witnesses,
                    self._signing_key,
                )
            return self._chain

    def _signing_key(self, path: Path) -> bytes:
        """The ledger's key: ``$SUANLI_LEDGER_KEY`` (what replicas share), else the home's file."""
        if self.settings.ledger_key:
            return parse_signing_key(self.settings.ledger_key)
        return load_signing_key(path)

    def _weigh_copies(self, plan: scheduling.Plan, now: datetime) -> list[staging.Need]:
        """Copies worth starting for the jobs that read data and found no place; their reasons
        in ``plan`` become what is copied where."""
        placed = {p.job_id for p in plan.decision.placements}
        waiting = staging.waiting_jobs(plan.jobs, placed)
        if not waiting:
            return []
        chain = self.chain
        with self.db.read() as session:
            needs = staging.plan(
                session, chain, waiting, plan.sites, now, plan.rules, self.scheduler_config.transfer_rate_bps
            )
        plan.decision.reasons.update({n.job_id: n.reason for n in needs})
        return needs

    def _start_copies(self, needs: list[staging.Need], now: datetime) -> None:
        chain = self.chain
        with self.db.session() as session:
            runs = staging.transfers_to_run(session, chain, needs, now)
        chain.seal()
        self.transfers.submit_for_jobs(runs)

    def start(self) -> None:
        if self._thread is not None:
            return
        if self.leadership.begin(self.clock.now()):
            self._took_lead()
        self._stop.clear()
        self.transfers.start()
        if self.crosstalk.active:
            self.signals.relay = self.crosstalk.send
            self.crosstalk.start()
        self._thread = threading.Thread(target=self._loop, name="suanli-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.settings.scheduler_interval_s)
            self._kick.clear()
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                self.tick(full=False)
                if not self.leadership.leads:  # a follower: try for the lead again in a moment
                    self._stop.wait(LEADER_RETRY_S)
                    continue
                if started - self._last_used_flush >= LAST_USED_FLUSH_S:
                    self._last_used_flush = started
                    self.identities.flush_last_used()
                if started - self._last_sweep >= BLOB_SWEEP_S:
                    self._last_sweep = started
                    self.sweep_blobs()
                    self.sweep_idempotency_keys()
                self.run_periodic(started)
            except Exception:  # the loop must outlive one bad pass; the error is logged in full
                log.exception("scheduler pass failed")
            # Coalesce bursts of kicks (hundreds of submissions a second) into fewer passes, and
            # keep the scheduler to about a third of a core however long passes get.
            self._stop.wait(max(MIN_PASS_GAP_S, 2 * (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.transfers.stop()
        self.signals.relay = None
        self.crosstalk.stop()
        self.signals.bump("shutdown")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self.stop()
        self.leadership.release()
        self.db.dispose()


def record_placements(
    session: Session,
    chain: Chain,
    placements: list[tuple[str, str]],
    datasets_of: dict[str, tuple[str, ...]],
    now: datetime,
    rules: RuleSet,
) -> None:
    """Put each placement of a job on data on the ledger, with the route of every dataset, in
    the caller's transaction (the one that commits the placement); the caller seals after it."""
    for job_id, site in placements:
        decisions = datarules.placement_decisions(session, datasets_of[job_id], site, now, rules)
        chain.ledger.record(session, "placement", {"job": job_id, "site": site, "datasets": decisions}, now)
