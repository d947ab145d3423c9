"""The local backend's run-as: which OS user a tenant's ranks run as, and the checks at start.

With the agent running as root, a tenant's ranks run as the user ``run_as`` maps it to
(``run_as_default`` for the other tenants): uid, gid and its supplementary groups, with HOME,
USER and LOGNAME set. The supervisor stays root and drops privileges only for the rank it starts
(``RunAs.supervisor_args``), so the job can neither kill it nor forge its exit status; the
workdir and the checkpoint folder are given to the user (``RunAs.take``), and the rank writes
its log through the descriptor it inherits. The work dir and the folders above it must let
the users through (``x`` for others): ``_resolve_run_as`` checks that when the backend starts,
and refuses to start when the users cannot be used as configured.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from suanli.core.errors import SuanliError


@dataclass(frozen=True)
class RunAs:
    """An unprivileged OS user a tenant's jobs run as (the local backend's ``run_as``)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @classmethod
    def lookup(cls, name: str) -> RunAs:
        """The user ``name`` (or a numeric uid); KeyError when this machine has no such user."""
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)

    def supervisor_args(self) -> list[str]:
        """How the supervisor is told to drop to this user before it starts the rank."""
        return ["--uid", str(self.uid), "--gid", str(self.gid), "--groups", ",".join(str(g) for g in self.groups)]

    def take(self, path: Path) -> None:
        """Give ``path`` and everything under it to this user (links themselves, never followed)."""
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)


def _resolve_run_as(
    work_dir: Path, run_as: Mapping[str, str], default: str | None
) -> tuple[dict[str, RunAs], RunAs | None]:
    """Look the configured users up; refuse to start when they cannot be used as asked."""
    if not run_as and not default:
        return {}, None
    if os.geteuid() != 0:
        raise SuanliError(
            f"local.run_as: running jobs as other OS users needs the agent to run as root, and it runs as uid "
            f"{os.geteuid()}; start the agent as root or remove run_as and run_as_default from its config"
        )
    users: dict[str, RunAs] = {}
    for tenant, name in [*run_as.items(), ("", default)]:
        if not name:
            continue
        try:
            user = RunAs.lookup(str(name))
        except (KeyError, ValueError):
            where = f"run_as of tenant '{tenant}'" if tenant else "run_as_default"
            raise SuanliError(f"local.{where}: there is no OS user '{name}' on this machine") from None
        users[tenant] = user
    default_user = users.pop("", None) if default else None
    # Its users pass through to their own folders, but cannot list the others'.
    work_dir.chmod(work_dir.stat().st_mode | 0o111)
    for path in (work_dir / "attempts", work_dir / "checkpoints"):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o711)
    for user in [*users.values(), *([default_user] if default_user else [])]:
        blocked = _blocked_for(work_dir, user)
        if blocked is not None:
            raise SuanliError(
                f"local.run_as: user {user.name} cannot reach the work dir {work_dir}: {blocked} does not let it "
                f"through (chmod o+x {blocked}, or choose a work dir under e.g. /var/lib/suanli)"
            )
    return users, default_user


def _blocked_for(path: Path, user: RunAs) -> Path | None:
    """The first folder on the way to ``path`` that ``user`` may not pass through, if any."""
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        st = folder.stat()
        if st.st_uid == user.uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid in user.groups or st.st_gid == user.gid:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return folder
    return None
