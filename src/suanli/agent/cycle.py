"""The site agent's cycle, without threads: registering, one heartbeat, applying the reply.

``AgentCycle`` holds an agent's state and everything one exchange with the server needs: the
reports and log batch a heartbeat carries (``_collect``), sending it (``_send``), the reply's
starts, stops and forgets (``_apply``), and the hand-over of a new attempt to the backend once
its workdir, datasets and checkpoint are fetched (``_try_start``). ``suanli.agent.agent.Agent``
adds the threads that run these cycles (``run_forever``) and the handling of a lost server.

Delivery rules, which make a failed send harmless:

- Log chunks are kept until a heartbeat carrying them was accepted; one batch is in flight at
  a time, so each rank's output reaches the server in offset order.
- An attempt's terminal state is sent only after all its output was accepted (until then the
  last live state is repeated), so ``logs --follow`` never ends before the last line.
- A terminal attempt stays in the reports until a heartbeat carrying it was accepted; only then
  does the backend forget it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any, Protocol

from suanli import __version__
from suanli.agent import outputs
from suanli.agent.backends.base import Backend, KeptCheckpoints, RunsContainers
from suanli.agent.backends.engine import EngineBackend
from suanli.agent.checkpoints import CHECKPOINT_EVERY_S, CheckpointCarrier, CheckpointUnavailable
from suanli.agent.delivery import LogOutbox
from suanli.agent.health import NodeHealth
from suanli.agent.inputs import fetch_archive, fetch_datasets
from suanli.agent.recovery import Recoverable, orphan_timeout
from suanli.agent.service_link import ServiceLink, free_port
from suanli.agent.sitedata import SiteData
from suanli.core.protocol import (
    AttemptAssignment,
    AttemptReport,
    CheckpointReceipt,
    HeartbeatRequest,
    HeartbeatResponse,
    LogChunk,
    NodeReport,
    RegisterRequest,
    RegisterResponse,
    StopOrder,
)
from suanli.core.states import AttemptState
from suanli.filemodes import private_dir
from suanli.sdk import ApiError, ServerUnreachable

log = logging.getLogger("suanli.agent")


class AgentClient(Protocol):
    """What the agent needs of ``suanli.sdk.Client``; tests pass a small fake with these three."""

    def agent_register(self, request: RegisterRequest) -> RegisterResponse: ...

    def agent_heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse: ...

    def download_workdir(self, digest: str, dest: IO[bytes]) -> int: ...

    def upload_checkpoint(self, attempt_id: int, archive: IO[bytes], size: int) -> CheckpointReceipt: ...

    def download_checkpoint(self, digest: str, attempt_id: int, dest: IO[bytes]) -> int: ...

    def download_dataset(self, name: str, attempt_id: int, dest: IO[bytes]) -> int: ...

    def record_dataset_read(self, name: str, attempt_id: int, root: str) -> dict[str, Any]: ...

    def register_output_at_site(self, attempt_id: int, manifest: dict[str, Any], digest: str) -> dict[str, Any]: ...

    def upload_output(self, attempt_id: int, archive: IO[bytes], size: int) -> dict[str, Any]: ...


class AgentCycle:
    """One site's agent, one cycle at a time (``Agent`` runs the cycles on threads). Thread-safe:
    ``run_forever``'s threads share it.

    ``heartbeat_s``: the long poll's length (and the pace of heartbeats when the server does not
    hold them). ``poll_s``: how often the reporter looks at the backend. ``log_batch_bytes``:
    log text per heartbeat at most; four times that may wait in memory while the server is away,
    beyond which output waits in the backend.
    """

    #: The site's own data store (``agent/sitedata.py``): jobs read the datasets it holds from
    #: it, and it takes the heartbeat's store orders. None: this agent holds no store.
    site_data: SiteData | None = None

    def __init__(
        self,
        client: AgentClient,
        site: str,
        backend: Backend,
        work_dir: Path,
        *,
        agent_id: str | None = None,
        heartbeat_s: float = 2.0,
        poll_s: float = 0.1,
        log_batch_bytes: int = 256 * 1024,
        max_backoff_s: float = 30.0,
        stop_on_partition: bool = True,
        checkpoint_every_s: float | None = CHECKPOINT_EVERY_S,
        health: NodeHealth | None = None,
    ) -> None:
        self.client, self.site, self.backend = client, site, backend
        if isinstance(backend, RunsContainers):
            backend.site_name = site
        # 0700 (others may keep only the right to pass through, for jobs run as other users).
        self.work_dir = private_dir(Path(work_dir), traverse_ok=True)
        (self.work_dir / "archives").mkdir(parents=True, exist_ok=True)
        self.agent_id = agent_id or _stable_agent_id(self.work_dir)
        self.heartbeat_s, self.poll_s = heartbeat_s, poll_s
        self.log_batch_bytes, self.max_backoff_s = log_batch_bytes, max_backoff_s
        #: Stop attempts when the server has been out of reach for longer than the lease.
        self.stop_on_partition = stop_on_partition
        self.health = health
        self._lock = threading.RLock()
        self._outbox = LogOutbox()
        self._pending: dict[int, AttemptAssignment] = {}  # waiting for their workdir archive
        self._downloading: set[int] = set()
        self._fetch_warned: set[int] = set()
        self._local: dict[int, AttemptReport] = {}  # ended before the backend had them
        self._accepted: dict[int, AttemptState] = {}  # last state the server accepted
        self._stopping: set[int] = set()  # held attempts already told to stop (orders repeat until they end)
        self._live: dict[int, AttemptReport] = {}  # last live report, repeated while output is due
        self._lease_s: float | None = None
        self._registered = threading.Event()
        # For Agent's threads (agent.py): halting the loops, and since when the server is lost.
        self._halt = threading.Event()
        self._stop: threading.Event | None = None
        self._unreachable_since: float | None = None
        self._abandoned: dict[int, str] = {}  # attempts stopped by our own shutdown → reported LOST
        self._meter: dict[int, list[float | None]] = {}  # attempt → [started, ended] (monotonic)
        self._last_ok: float | None = None  # monotonic time the last accepted heartbeat was sent
        #: Carries jobs' checkpoint folders to and from the server, so a retry at another site
        #: resumes from them (backends that keep them; ``checkpoint_every_s``: the periodic upload).
        self.checkpoints: CheckpointCarrier | None = None
        #: Uploads a succeeded job's SUANLI_OUTPUT_DIR, which becomes a derived dataset.
        self.outputs = outputs.OutputCarrier(client, self.work_dir)
        #: The link that carries requests to this site's service replicas (None: no services).
        self.service_link: ServiceLink | None = None
        if isinstance(backend, KeptCheckpoints):
            self.checkpoints = CheckpointCarrier(client, self.work_dir / "archives", every_s=checkpoint_every_s)
        if isinstance(backend, Recoverable):
            # A restarted agent finds what its previous process was running and reports it
            # (same fencing tokens): the server adopts what it knows and stops the rest.
            now = time.monotonic()
            adopted = backend.adopt()
            for attempt_id, elapsed in adopted.items():
                self._meter[attempt_id] = [now - elapsed, None]
            renewed = backend.last_renewal()
            if adopted and renewed is not None:
                # Their leases were last renewed by the previous agent process: the partition
                # fence counts from then until this one's first heartbeat is accepted.
                self._last_ok = now - max(0.0, time.time() - renewed)
        if self.checkpoints is not None and isinstance(backend, KeptCheckpoints):
            for held in backend.held_assignments():  # adopted ones
                self.checkpoints.track(held, backend.checkpoint_dir(held))
        self._swept = False
        self._sweep_orphans()

    # -- one cycle, for tests and for the loops -------------------------------------------
    def register(self) -> RegisterResponse:
        request = RegisterRequest(
            site=self.site,
            agent_id=self.agent_id,
            backend=self.backend.name,
            version=__version__,
            nodes=self.inventory(),
            containers=self.backend.containers_available() if isinstance(self.backend, RunsContainers) else False,
            sandbox=self.backend.sandbox,
        )
        response = self.client.agent_register(request)
        self._lease_s = response.lease_s
        self._sweep_orphans()  # if the engine could not be asked at the start
        if isinstance(self.backend, Recoverable):
            self.backend.set_orphan_timeout(orphan_timeout(response.lease_s) if self.stop_on_partition else None)
        # Registering renews no lease: the partition fence still counts from the last heartbeat.
        self._registered.set()
        log.info(
            "agent %s registered for site %s with %d node(s); lease %gs",
            self.agent_id,
            self.site,
            len(request.nodes),
            response.lease_s,
        )
        return response

    def _sweep_orphans(self) -> None:
        """On an engine (Slurm, Ray), cancel the jobs a previous agent process of this site left
        there: an engine backend adopts none, so no one reports them any more, and the server
        runs their attempts again once their leases lapse (``EngineBackend.sweep_orphans``).
        Once per agent process, before its first heartbeat if the engine answers by then."""
        if self._swept or not isinstance(self.backend, EngineBackend):
            return
        try:
            swept = self.backend.sweep_orphans(self.site)
        except Exception as exc:  # the engine is away: try again at the next registration
            log.warning(
                "cannot look for %s jobs left by a previous agent of site %s (will try again when registering): %s",
                self.backend.engine,
                self.site,
                exc,
            )
            return
        self._swept = True
        if swept:
            log.info("cancelled %d %s job(s) left by a previous agent", len(swept), self.backend.engine)

    def step(self, wait_s: float = 0.0) -> HeartbeatResponse:
        """One full cycle: poll the backend, send inventory, reports and logs, apply the reply."""
        self.sync_checkpoints()
        self._retry_pending()
        with self._lock:
            reports, batch, _ = self._collect(with_logs=True)
        return self._send(reports, batch, nodes=True, wait_s=wait_s)

    def sync_checkpoints(self) -> None:
        """Upload the checkpoint folders and job outputs that are due (``suanli.agent.checkpoints``,
        ``suanli.agent.outputs``)."""
        carriers = [c for c in (self.outputs, self.checkpoints) if c is not None and c.tracking]
        if not carriers:
            return
        try:
            reports = self.backend.poll()  # once for both
        except Exception:  # the heartbeat's own poll reports this; uploads wait for the next cycle
            log.exception("polling the backend for uploads failed")
            return
        for carrier in carriers:
            try:
                carrier.sync(reports)
            except Exception:  # never let an upload stop the agent; the error is logged in full
                log.exception("%s upload failed", "output" if carrier is self.outputs else "checkpoint")

    def report_changes(self) -> HeartbeatResponse | None:
        """A short heartbeat (no inventory, no wait) if any state changed or output is due."""
        self._retry_pending()
        with self._lock:
            reports, batch, changed = self._collect(with_logs=True)
        return self._send(reports, batch, nodes=False, wait_s=0.0) if changed else None

    def _send(
        self, reports: list[AttemptReport], batch: list[LogChunk], *, nodes: bool, wait_s: float
    ) -> HeartbeatResponse:
        request = HeartbeatRequest(
            site=self.site,
            agent_id=self.agent_id,
            nodes=self.inventory() if nodes else None,
            attempts=reports,
            logs=batch,
            wait_s=wait_s,
        )
        # The server renews the leases of these attempts when it takes the request: no earlier
        # than now. The fences count from here, never from the (later) answer.
        sent, sent_wall = time.monotonic(), time.time()
        try:
            response = self.client.agent_heartbeat(request)
        except BaseException:
            with self._lock:
                self._outbox.settle(batch, accepted=False)
            raise
        with self._lock:
            self._last_ok = max(sent, self._last_ok or sent)
            if isinstance(self.backend, Recoverable):
                self.backend.lease_renewed(sent_wall)
            self._outbox.settle(batch, accepted=True)
            if batch and isinstance(self.backend, Recoverable):
                self.backend.logs_accepted(batch)
            for report in reports:
                if report.state.is_terminal():
                    self._drop(report.attempt_id)  # delivered: the backend may let it go
                else:
                    self._accepted[report.attempt_id] = report.state
        self._apply(response)
        return response

    def _collect(self, with_logs: bool) -> tuple[list[AttemptReport], list[LogChunk], bool]:
        polled = self.backend.poll()
        batch: list[LogChunk] = []
        if with_logs:
            room = 4 * self.log_batch_bytes - self._outbox.size
            if room > 0:
                self._outbox.add(self.backend.read_logs(min(room, self.log_batch_bytes)))
            batch = self._outbox.claim(self.log_batch_bytes)
        reports: list[AttemptReport] = []
        for report in polled:
            attempt_id = report.attempt_id
            if attempt_id in self._abandoned and report.state == AttemptState.CANCELLED:
                # Stopped because this agent is going away, not because anyone asked: the
                # platform lost it, so the server requeues it rather than ending the job.
                report = report.model_copy(update={"state": AttemptState.LOST, "message": self._abandoned[attempt_id]})
            report = self._metered(report)
            if not report.state.is_terminal():
                self._live[attempt_id] = report
            elif (
                not self.backend.logs_drained(attempt_id)
                or self._outbox.holds(attempt_id)
                or (self.checkpoints is not None and self.checkpoints.holds(report))
                or self.outputs.holds(report)
            ):
                # Output (or the last checkpoint upload) still due: the end waits until the server has it.
                report = self._live.get(attempt_id) or report.model_copy(
                    update={"state": AttemptState.STARTING, "exit_code": None, "message": ""}
                )
            elif report.state == AttemptState.SUCCEEDED and (why := self.outputs.refused(attempt_id)):
                report = report.model_copy(update={"message": why})
            reports.append(report)
        reports += [
            AttemptReport(
                attempt_id=a.attempt_id,
                fencing_token=a.fencing_token,
                state=AttemptState.STARTING,
                message="fetching the workdir",
            )
            for a in self._pending.values()
        ]
        reports += self._local.values()
        changed = bool(batch) or any(self._accepted.get(r.attempt_id) != r.state for r in reports)
        return reports, batch, changed

    def inventory(self) -> list[NodeReport]:
        """The backend's nodes, with the operator's health check applied when configured."""
        nodes = self.backend.inventory()
        return self.health.apply(nodes) if self.health else nodes

    def _metered(self, report: AttemptReport) -> AttemptReport:
        """Attach the attempt's elapsed time: metering comes from the site, not from clients.
        The clock starts when the backend first reports the attempt and stops when it ends."""
        now = time.monotonic()
        span = self._meter.setdefault(report.attempt_id, [now, None])
        if report.state.is_terminal() and span[1] is None:
            span[1] = now
        started, ended = span
        assert started is not None
        return report.model_copy(update={"elapsed_s": round((ended or now) - started, 3)})

    def _drop(self, attempt_id: int) -> None:
        self.backend.forget(attempt_id)
        self._meter.pop(attempt_id, None)
        for table in (self._pending, self._local, self._accepted, self._live):
            table.pop(attempt_id, None)
        self._fetch_warned.discard(attempt_id)
        self._stopping.discard(attempt_id)
        self._outbox.drop(attempt_id)
        if self.checkpoints is not None:
            self.checkpoints.forget(attempt_id)
        self.outputs.forget(attempt_id)
        if self.service_link is not None:
            self.service_link.remove(attempt_id)

    # -- applying the server's reply ------------------------------------------------------
    def _apply(self, response: HeartbeatResponse) -> None:
        for attempt_id in response.forget:
            log.debug("attempt %s is settled on the server; the agent lets it go", attempt_id)
            with self._lock:
                self._drop(attempt_id)
        if response.stop:
            with self._lock:
                held = {r.attempt_id: r.state for r in self.backend.poll()}
            for order in response.stop:
                self._stop_attempt(order, held)
        for assignment in response.start:
            self._start_attempt(assignment)

    def _stop_attempt(self, order: StopOrder, held: dict[int, AttemptState] | None = None) -> None:
        """Stop an attempt once. The server repeats its order on every heartbeat until the
        attempt's end reaches it, so a repeat is not acted on (nor logged) again; an order for an
        attempt this agent does not hold (a restarted agent, an attempt already ended and let go)
        is answered at once with a CANCELLED report, which settles it on the server. ``held``:
        the backend's attempts and states (None: poll it now)."""
        attempt_id = order.attempt_id
        with self._lock:
            if held is None:
                held = {r.attempt_id: r.state for r in self.backend.poll()}
            if attempt_id in self._local or attempt_id in self._stopping:
                return  # answered already, or stopping: its end is reported when it comes
            if attempt_id not in self._pending and attempt_id not in held:
                log.info("attempt %s is not held by this agent; telling the server it is stopped", attempt_id)
                self._local[attempt_id] = AttemptReport(
                    attempt_id=attempt_id,
                    fencing_token=attempt_id,  # an attempt's fencing token is its id (app/agents.py)
                    state=AttemptState.CANCELLED,
                    message=f"not running at site {self.site} (its agent does not hold it)",
                )
                return
            if held.get(attempt_id, AttemptState.RUNNING).is_terminal():
                return  # ended already: its end goes with the next report
            pending = self._pending.pop(attempt_id, None)
            if pending is not None:
                self._local[order.attempt_id] = AttemptReport(
                    attempt_id=order.attempt_id,
                    fencing_token=pending.fencing_token,
                    state=AttemptState.CANCELLED,
                    message=f"stopped before it started: {order.reason}"
                    if order.reason
                    else "stopped before it started",
                )
                return
            log.info(
                "stopping attempt %s (%s) with %gs grace",
                attempt_id,
                order.reason or "no reason given",
                order.grace_s,
            )
            self._stopping.add(attempt_id)
            self.backend.cancel(attempt_id, order.grace_s)

    def _start_attempt(self, assignment: AttemptAssignment) -> None:
        attempt_id = assignment.attempt_id
        with self._lock:
            if attempt_id in self._pending or attempt_id in self._local or attempt_id in self._live:
                return  # a repeated assignment (the backend ignores repeats of those it holds)
            self._pending[attempt_id] = assignment
        log.info("starting attempt %s of job %s (%s)", attempt_id, assignment.job_id, assignment.job_name)
        self._try_start(attempt_id)

    def _lease_lapsed(self) -> bool:
        """No heartbeat accepted for the orphan timeout: the server may be about to requeue this
        agent's attempts, and a supervisor would stop a rank started now at once. New attempts
        wait for the next accepted heartbeat (which renews their leases) before they start."""
        with self._lock:
            if not self.stop_on_partition or self._last_ok is None or self._lease_s is None:
                return False
            return time.monotonic() - self._last_ok > orphan_timeout(self._lease_s)

    def _retry_pending(self) -> None:
        if self._lease_lapsed():
            return
        with self._lock:
            waiting = [i for i in self._pending if i not in self._downloading]
        for attempt_id in waiting:
            self._try_start(attempt_id)

    def _try_start(self, attempt_id: int) -> None:
        """Fetch the workdir (outside the lock: it can be slow), then hand the attempt over."""
        with self._lock:
            assignment = self._pending.get(attempt_id)
            if assignment is None or attempt_id in self._downloading:
                return
            self._downloading.add(attempt_id)
        digest = assignment.workdir_digest
        archive: Path | None = None
        try:
            archive = fetch_archive(self.client, self.work_dir, digest) if digest else None
            if assignment.datasets:
                store = self.site_data.store if self.site_data is not None else None
                assignment = fetch_datasets(self.client, self.work_dir, assignment, store)
            assignment = outputs.prepare(self.work_dir, assignment)
            self._restore_checkpoint(assignment)
        except ServerUnreachable as exc:
            with self._lock:
                first = attempt_id not in self._fetch_warned
                self._fetch_warned.add(attempt_id)
            (log.warning if first else log.debug)(
                "cannot fetch the workdir of attempt %s yet; will retry: %s", attempt_id, exc
            )
            return
        except CheckpointUnavailable as exc:
            self._fail_locally(assignment, str(exc))
            return
        except (ApiError, OSError, ValueError) as exc:
            what = f"the workdir archive {digest}" if archive is None and digest else "the job's datasets"
            self._fail_locally(assignment, f"cannot fetch {what}: {exc}")
            return
        finally:
            with self._lock:
                self._downloading.discard(attempt_id)
        if self._lease_lapsed():
            return  # still pending: it starts after the next accepted heartbeat
        with self._lock:
            if self._pending.pop(attempt_id, None) is None:
                return  # stopped while its workdir was fetched
            self.outputs.track(assignment)
            # The meter runs from the hand-over: a job that ends before the first poll sees it
            # still ran (and is billed) for the time it took.
            self._meter.setdefault(attempt_id, [time.monotonic(), None])
            assignment = self._as_replica(assignment)
            try:
                self.backend.start(assignment, archive)
            except Exception as exc:
                log.exception("the %s backend could not start attempt %s", self.backend.name, attempt_id)
                self._local[attempt_id] = _failed(
                    assignment, f"the {self.backend.name} backend could not start it: {exc}"
                )

    def _as_replica(self, assignment: AttemptAssignment) -> AttemptAssignment:
        """A service replica gets a free port in ``$PORT``, and the link learns of it."""
        svc, link = assignment.service, self.service_link
        if svc is None or link is None:
            return assignment
        port = free_port()
        link.add(assignment.attempt_id, port, svc.probe_path, svc.probe_timeout_s)
        return assignment.model_copy(update={"envs": {**assignment.envs, "PORT": str(port)}})

    def _fail_locally(self, assignment: AttemptAssignment, message: str) -> None:
        log.warning("attempt %s failed before it started: %s", assignment.attempt_id, message)
        with self._lock:
            if self._pending.pop(assignment.attempt_id, None) is not None:
                self._local[assignment.attempt_id] = _failed(assignment, message)

    def _restore_checkpoint(self, assignment: AttemptAssignment) -> None:
        """Follow the attempt's checkpoint folder and, when the job's latest checkpoint was made
        at another site (``checkpoint_digest``), fill the folder with it before the job starts."""
        if self.checkpoints is None or not isinstance(self.backend, KeptCheckpoints):
            if assignment.checkpoint_digest:
                log.warning(
                    "the %s backend keeps no checkpoint folders: attempt %s starts without its checkpoint",
                    self.backend.name,
                    assignment.attempt_id,
                )
            return
        folder = self.backend.checkpoint_dir(assignment)
        self.checkpoints.restore(assignment, folder)
        self.checkpoints.track(assignment, folder)


def _failed(assignment: AttemptAssignment, message: str) -> AttemptReport:
    return AttemptReport(
        attempt_id=assignment.attempt_id,
        fencing_token=assignment.fencing_token,
        state=AttemptState.FAILED,
        message=message,
    )


def _stable_agent_id(work_dir: Path) -> str:
    """Kept in ``<work_dir>/agent-id`` so a restarted agent is recognised as the same one."""
    path = work_dir / "agent-id"
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    agent_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    path.write_text(agent_id + "\n", encoding="utf-8")
    return agent_id
