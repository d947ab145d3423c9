"""The site agent: the loop between the server (over HTTP, through the SDK) and a backend.

Pull protocol, so sites behind firewalls work: the agent registers, then heartbeats with its
inventory, the state of its attempts and new log output; the reply says what to start, stop and
forget. ``step`` is one such cycle and needs no threads, so tests drive an agent tick by tick;
it and the rest of one exchange with the server (and the delivery rules that make a failed send
harmless) are in ``suanli.agent.cycle``, which ``Agent`` builds on.

This module holds ``Agent``'s threads: ``run_forever`` runs a long poll (new work arrives as soon
as the server has it), a reporter that sends a short heartbeat within ``poll_s`` of any state
change or new output, and a checkpoint uploader. Here too: registering with retries, the
back-off while the server is away, stopping attempts when cut off near the lease
(``stop_on_partition``), and ``shutdown``.
"""

from __future__ import annotations

import logging
import threading
import time

from suanli.agent.cycle import AgentCycle
from suanli.agent.delivery import Backoff
from suanli.agent.recovery import SUPERVISOR_GRACE_S, Recoverable, orphan_timeout
from suanli.core.protocol import HeartbeatResponse, StopOrder
from suanli.sdk import ApiError, ServerUnreachable

log = logging.getLogger("suanli.agent")

#: Heartbeat answers that mean "register again" (server restarted, or forgot this agent).
_REREGISTER = frozenset({401, 403, 404})


class Agent(AgentCycle):
    """One site's agent: ``AgentCycle`` (the state and one cycle; its constructor takes the
    settings) run on threads by ``run_forever``. Thread-safe: those threads share it."""

    # -- running ---------------------------------------------------------------------------
    def _long_poll(self) -> HeartbeatResponse:
        """The heartbeat the server may hold until it has work; carries no logs, so the
        reporter's batches are never stuck behind a held reply."""
        self._retry_pending()
        with self._lock:
            reports, _, _ = self._collect(with_logs=False)
        return self._send(reports, [], nodes=True, wait_s=self._wait_s())

    def run_forever(self, stop: threading.Event) -> None:
        """Register (retrying while the server is away), then long-poll and report until ``stop``.

        Running attempts are left alone when it returns; see ``shutdown``. Raises only when the
        server refuses the registration itself (a wrong site or token: retrying cannot help).
        """
        self._stop = stop
        # The reporter runs from the start: it also keeps the backend's liveness mark fresh, so
        # adopted attempts do not stop themselves while the server is still out of reach.
        reporter = threading.Thread(
            target=self._report_loop, args=(stop,), name=f"suanli-agent-{self.site}-reporter", daemon=True
        )
        reporter.start()
        carrier = threading.Thread(
            target=self._checkpoint_loop, args=(stop,), name=f"suanli-agent-{self.site}-checkpoints", daemon=True
        )
        carrier.start()
        link = None
        if self.service_link is not None:
            link = threading.Thread(
                target=self.service_link.run, args=(stop,), name=f"suanli-agent-{self.site}-link", daemon=True
            )
            link.start()
        try:
            if self._register_until_ok(stop):
                self._heartbeat_loop(stop)
        finally:
            self._halt.set()
            reporter.join()
            if link is not None:
                link.join()
            carrier.join()  # an upload under way ends first: shutdown's last uploads come after it

    def shutdown(self, cancel_running: bool = False, grace_s: float = 10.0) -> None:
        """Stop the loops; with ``cancel_running``, also stop every attempt and wait for it
        (``suanli up`` does this at Ctrl-C), then send the final reports if the server listens."""
        self._halt.set()
        if self._stop is not None:
            self._stop.set()
        if self.service_link is not None:
            self.service_link.close()
        if not cancel_running:
            return
        with self._lock:
            for assignment in list(self._pending.values()):
                self._stop_attempt(
                    StopOrder(attempt_id=assignment.attempt_id, reason="the agent is shutting down", grace_s=grace_s)
                )
        live = [r for r in self.backend.poll() if not r.state.is_terminal()]
        if live:
            log.info("stopping %d running attempt(s) before the agent exits", len(live))
        with self._lock:
            for report in live:
                self._abandoned[report.attempt_id] = f"the agent of site {self.site} shut down"
        self.backend.stop_all(grace_s)
        for _ in range(5):  # checkpoints, logs, then end states: a few short cycles, best effort
            try:
                self.sync_checkpoints()
                if self.report_changes() is None:
                    break
            except Exception as exc:
                log.info("could not send the final reports: %s", exc)
                break

    def _capped(self, delay: float) -> float:
        """Retries while the server is out of reach come at least four times a lease, so that
        an agent is back within a quarter lease of the link (or the server) returning."""
        return min(delay, max(1.0, (self._lease_s or 30.0) / 4))

    def _wait_s(self) -> float:
        wait = min(self.heartbeat_s, 30.0)
        if self._lease_s:
            wait = min(wait, self._lease_s / 3)  # a held reply must not outlast the lease
        return max(0.0, wait)

    def _register_until_ok(self, stop: threading.Event) -> bool:
        backoff = Backoff(min(1.0, self.heartbeat_s), self.max_backoff_s)
        tries = 0
        while not (stop.is_set() or self._halt.is_set()):
            try:
                self.register()
                self._back_online()
                return True
            except ServerUnreachable as exc:
                tries += 1
                delay = self._capped(backoff.next())
                if tries == 1 or tries % 10 == 0:
                    log.warning(
                        "agent for site %s cannot register (try %d, next in %.1fs): %s", self.site, tries, delay, exc
                    )
            except ApiError as exc:
                if exc.status < 500 and exc.status != 429:
                    log.error("the server refused to register agent %s for site %s: %s", self.agent_id, self.site, exc)
                    raise
                tries += 1
                delay = backoff.next()
                log.warning("registration failed (HTTP %d: %s); retrying in %.1fs", exc.status, exc, delay)
            stop.wait(delay)
        return False

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        backoff = Backoff(min(1.0, self.heartbeat_s), self.max_backoff_s)
        while not (stop.is_set() or self._halt.is_set()):
            if not self._registered.is_set() and not self._register_until_ok(stop):
                return
            began = time.monotonic()
            with self._lock:
                answered = self._stopping | self._local.keys()
            try:
                response = self._long_poll()
            except ServerUnreachable as exc:
                self._lost_server(exc)
                self._fence_if_partitioned()
                stop.wait(self._capped(backoff.next()))
                continue
            except ApiError as exc:
                if exc.status in _REREGISTER:
                    log.warning(
                        "the server does not know agent %s (HTTP %d); registering again", self.agent_id, exc.status
                    )
                    self._registered.clear()
                else:
                    log.error("heartbeat refused (HTTP %d): %s", exc.status, exc)
                stop.wait(backoff.next())
                continue
            except Exception:
                log.exception("heartbeat failed")
                stop.wait(backoff.next())
                continue
            backoff.reset()
            self._back_online()
            if self.site_data is not None:
                self.site_data.take(response.store)
                self.site_data.send(response.send)
            # Straight back for more only after news. The server repeats a stop order until the
            # attempt's end reaches it: answering each repeat at once spun this loop (and the
            # server) hundreds of times a second for the whole grace period.
            fresh = any(o.attempt_id not in answered for o in response.stop)
            if not (response.start or response.forget or fresh):
                # At least four heartbeats a lease, whatever heartbeat_s says: each renews it.
                pace = min(self.heartbeat_s, (self._lease_s or 30.0) / 4)
                stop.wait(max(0.0, pace - (time.monotonic() - began)))

    def _report_loop(self, stop: threading.Event) -> None:
        backoff = Backoff(min(1.0, self.heartbeat_s), self.max_backoff_s)
        not_before = 0.0
        while not stop.wait(self.poll_s) and not self._halt.is_set():
            if isinstance(self.backend, Recoverable):
                self.backend.keepalive()
            self._fence_if_partitioned()
            if not self._registered.is_set() or time.monotonic() < not_before:
                continue
            try:
                self.report_changes()
            except ApiError as exc:
                if exc.status in _REREGISTER:
                    self._registered.clear()
                log.debug("report refused (HTTP %d): %s", exc.status, exc)
                not_before = time.monotonic() + backoff.next()
            except Exception as exc:
                if isinstance(exc, ServerUnreachable):
                    self._lost_server(exc)
                else:
                    log.exception("report failed")
                not_before = time.monotonic() + backoff.next()
            else:
                backoff.reset()

    def _checkpoint_loop(self, stop: threading.Event) -> None:
        """Uploads of checkpoint folders, on their own thread: one can take a while, and reports
        and logs must not wait behind it."""
        while not stop.wait(1.0) and not self._halt.is_set():
            if self._registered.is_set():
                self.sync_checkpoints()

    def _lost_server(self, exc: Exception) -> None:
        with self._lock:
            first = self._unreachable_since is None
            if first:
                self._unreachable_since = time.monotonic()
        if first:
            log.warning("lost the server; attempts keep running, retrying with back-off: %s", exc)

    def _fence_if_partitioned(self) -> None:
        """Near its lease without a renewal, this agent's attempts are no longer its own: the
        server declares them lost when the lease runs out and may run them elsewhere. Stop them
        first (``recovery.orphan_timeout`` after the last accepted heartbeat was sent, which
        leaves time for the grace period), so no job ever runs twice (``stop_on_partition``).
        Whatever kept the heartbeats from being accepted counts: a server out of reach, or one
        that answers with errors. The supervisors hold the same fence from the liveness file."""
        with self._lock:
            lease = self._lease_s or 30.0
            if not self.stop_on_partition or self._last_ok is None:
                return
            silent = time.monotonic() - self._last_ok
            if silent <= orphan_timeout(lease):
                return
            live = [r for r in self.backend.poll() if not r.state.is_terminal() and r.attempt_id not in self._abandoned]
            for report in live:
                self._abandoned[report.attempt_id] = (
                    f"the agent of site {self.site} lost the server for {silent:.0f}s (lease {lease:g}s) and "
                    "stopped it, so that it cannot run twice"
                )
        for report in live:
            log.warning("stopping attempt %s: no lease renewal from the server for %.0fs", report.attempt_id, silent)
            self.backend.cancel(report.attempt_id, min(SUPERVISOR_GRACE_S, lease / 4))

    def _back_online(self) -> None:
        with self._lock:
            since, self._unreachable_since = self._unreachable_since, None
        if since is not None:
            log.info("the server is back after %.0fs", time.monotonic() - since)
