"""The override flags ``suanli submit`` and ``suanli rerun`` share: each replaces what the spec
file (or the stored spec) says (flag over file; ``--env`` adds to ``envs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from suanli.core.errors import SpecError
from suanli.core.overrides import Overrides, apply_overrides, parse_envs, parse_gpus
from suanli.core.spec import JobSpec, job_spec_from_data

GpusOption = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        metavar="TYPE:N[,TYPE:N]",
        help="GPUs per node, over the spec's resources.accelerators: H100:8, or alternatives "
        "H100:8,A800:8; 0 for none.",
        show_default=False,
    ),
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option(
        "--env", "-e", metavar="NAME=VALUE", help="Set an environment variable, over the spec's envs. Repeatable."
    ),
]
TimeOption = Annotated[
    str | None,
    typer.Option("--time", metavar="DURATION", help="time_limit, over the spec's: 30m, 2h, 2h30m.", show_default=False),
]
PriorityOption = Annotated[
    str | None,
    typer.Option("--priority", metavar="low|normal|high", help="Priority, over the spec's.", show_default=False),
]
WorkdirOption = Annotated[
    Path | None,
    typer.Option(
        "--workdir",
        metavar="DIR",
        help="Upload this folder (relative to the current directory) as the workdir, over the spec's.",
        show_default=False,
    ),
]
RegionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--region", metavar="REGION", help="Run only in this region, over the spec's placement.regions. Repeatable."
    ),
]


def overrides_from(
    *,
    name: str | None = None,
    gpus: str | None = None,
    env: list[str] | None = None,
    time: str | None = None,
    priority: str | None = None,
    region: list[str] | None = None,
) -> Overrides:
    try:
        envs = parse_envs(env or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--env") from None
    return Overrides(
        name=name,
        gpus=None if gpus is None else parse_gpus(gpus),
        envs=envs,
        time_limit=time,
        priority=priority,
        regions=region or None,
    )


def with_overrides(spec: JobSpec, given: Overrides) -> JobSpec:
    """The spec with ``given`` applied, checked by the spec's own rules."""
    if given.empty:
        return spec
    data = apply_overrides(spec.model_dump(mode="json", exclude_none=True), given)
    try:
        return job_spec_from_data(data)
    except SpecError as exc:
        problems = "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in exc.problems)
        raise typer.BadParameter(problems, param_hint="an override") from None


def workdir_dir(path: Path | None) -> Path | None:
    """``--workdir``: an existing folder, made absolute."""
    if path is None:
        return None
    if not path.is_dir():
        raise typer.BadParameter(f"{path} is not a folder", param_hint="--workdir")
    return path.resolve()
