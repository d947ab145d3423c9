"""The front desk's relay for copies between sites: what the ``/api/v1/agents/relay`` router calls.

A site's agent reaches the relay with its own token, and only for a transfer that is
``running`` between its site and another: the source site may push sealed chunks and read what
the destination says (the chunks it holds, the outcome); the destination site may pull sealed
chunks and say those things. Any other site, or a transfer not running, gets the 404 of a
missing one. The relay (:class:`~suanli.datachain.relay.Relay`, one per front desk) holds the
chunks in memory, a bounded number per transfer, and never the key: the ticket it opens is made
here from the transfer's row and its dataset's manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from suanli.app import registry, uploads
from suanli.app.control import ControlPlane
from suanli.app.errors import Conflict, NotFound
from suanli.app.sites import site_for_token
from suanli.core.states import TransferState
from suanli.datachain.manifest import Manifest
from suanli.datachain.relay import Chunk, Outcome, RelayLost, Ticket
from suanli.datachain.transfer import TransferError, checked_transfer_id
from suanli.store.models import DataTransfer

T = TypeVar("T")

#: The longest a relay request waits (for room, a chunk, or the other side's word).
MAX_WAIT_S = 25.0


class Role(StrEnum):
    SOURCE = "source"
    DEST = "dest"


@dataclass(frozen=True)
class Party:
    site: str
    role: Role
    ticket: Ticket


def party(control: ControlPlane, token: str | None, transfer_id: str, role: Role | None = None) -> Party:
    """Who asks (by the site's token) and as what; opens the transfer at the relay. A site
    that is not the one ``role`` names, or a transfer not running, is told it does not exist."""
    missing = NotFound(f"no transfer '{transfer_id}' running through the relay for this site")
    try:
        checked_transfer_id(transfer_id)
    except TransferError:
        raise missing from None
    with control.db.read() as s:
        site = site_for_token(s, token)
        upload = uploads.ticket_for(control, site.name, transfer_id)
        if upload is not None:  # an upload to this site: the front desk itself is the source
            if role not in (None, Role.DEST):
                raise missing
            control.relay.open(upload)
            return Party(site.name, Role.DEST, upload)
        fetch = control.agent_copies.source_ticket(site.name, transfer_id)
        if fetch is not None:  # a download from this site: the front desk itself is the destination
            if role not in (None, Role.SOURCE):
                raise missing
            control.relay.open(fetch)
            return Party(site.name, Role.SOURCE, fetch)
        t = s.get(DataTransfer, transfer_id)
        if t is None or t.state != TransferState.RUNNING:
            raise missing
        roles = {t.source_site: Role.SOURCE, t.dest_site: Role.DEST}
        mine = roles.get(site.name)
        if mine is None or (role is not None and mine != role):
            raise missing
        ds = registry.get_dataset(s, t.dataset)
        at_rest = registry.classification_of(s, ds).sealed_at_rest
        ticket = Ticket(t.id, t.dataset, Manifest.model_validate(ds.manifest), at_rest)
    control.relay.open(ticket)
    return Party(site.name, mine, ticket)


def _wait(wait_s: float) -> float:
    return max(0.0, min(wait_s, MAX_WAIT_S))


def push(control: ControlPlane, token: str | None, transfer_id: str, chunk: Chunk, wait_s: float) -> bool:
    """The source's sealed chunk into the relay; ``False`` when it stayed full for ``wait_s``."""
    party(control, token, transfer_id, Role.SOURCE)
    return _relayed(lambda: control.relay.push(transfer_id, chunk, _wait(wait_s)))


def _relayed(call: Callable[[], T]) -> T:
    """The relay's answer; its refusals as the API's: a side out of step with this relay's life
    (:class:`RelayLost`: it must reopen) is a 404, anything else it refuses a 409."""
    try:
        return call()
    except RelayLost as exc:
        raise NotFound(str(exc)) from None
    except TransferError as exc:
        raise Conflict(str(exc)) from None


def pull(control: ControlPlane, token: str | None, transfer_id: str, wait_s: float) -> Chunk | None:
    party(control, token, transfer_id, Role.DEST)
    return _relayed(lambda: control.relay.pull(transfer_id, _wait(wait_s)))


def report_have(control: ControlPlane, token: str | None, transfer_id: str, have: set[int]) -> None:
    party(control, token, transfer_id, Role.DEST)
    _relayed(lambda: control.relay.report_have(transfer_id, have))


def wait_have(control: ControlPlane, token: str | None, transfer_id: str, wait_s: float) -> set[int] | None:
    party(control, token, transfer_id, Role.SOURCE)
    return _relayed(lambda: control.relay.wait_have(transfer_id, _wait(wait_s)))


def report_outcome(control: ControlPlane, token: str | None, transfer_id: str, outcome: Outcome) -> None:
    party(control, token, transfer_id, Role.DEST)
    _relayed(lambda: control.relay.report_outcome(transfer_id, outcome))


def wait_outcome(control: ControlPlane, token: str | None, transfer_id: str, wait_s: float) -> Outcome | None:
    party(control, token, transfer_id, Role.SOURCE)
    return _relayed(lambda: control.relay.wait_outcome(transfer_id, _wait(wait_s)))
