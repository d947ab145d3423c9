"""Transfer states: the transition table every state write in ``app/movements.py`` goes through."""

from __future__ import annotations

import pytest

from suanli.core.errors import TransitionError
from suanli.core.states import TransferState, check_transfer_transition

S = TransferState


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.READY, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.DONE),
        (S.RUNNING, S.FAILED),
        (S.FAILED, S.QUEUED),
        (S.HELD, S.READY),
        (S.QUEUED, S.HELD),
        (S.RUNNING, S.RUNNING),
    ],
)
def test_the_moves_a_transfer_makes(old: TransferState, new: TransferState) -> None:
    check_transfer_transition(old, new)


@pytest.mark.parametrize(("old", "new"), [(S.DONE, S.QUEUED), (S.DENIED, S.READY), (S.READY, S.DONE)])
def test_finished_refused_or_unstarted_transfers_cannot_jump(old: TransferState, new: TransferState) -> None:
    with pytest.raises(TransitionError, match=f"from {old.value} to {new.value}"):
        check_transfer_transition(old, new)


def test_states_are_stored_as_the_ledger_spells_them() -> None:
    assert [s.value for s in S] == ["held", "denied", "ready", "queued", "running", "failed", "done"]
    assert S("queued") == "queued"
    assert S.DONE.is_terminal()
    assert not S.FAILED.is_terminal()
