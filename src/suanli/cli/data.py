"""``suanli data``: register, list, show, grade and check datasets; copy them between sites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from suanli.cli import siteregister
from suanli.cli.context import (
    JsonOption,
    ServerOption,
    TokenOption,
    err_console,
    note,
    open_client,
    out_console,
    say,
)
from suanli.cli.privacy import budget, federate, spend
from suanli.cli.render import table
from suanli.core.states import TransferState
from suanli.sdk import Client

app = typer.Typer(
    name="data", help="Datasets: register, grade, check where they may go, copy them.", no_args_is_help=True
)
app.command()(budget)
app.command()(spend)
app.command()(federate)

LevelOpt = Annotated[str, typer.Option("--level", help="core | important | general")]
PiOpt = Annotated[int, typer.Option("--pi", help="Individuals whose (non-sensitive) personal information it holds.")]
SpiOpt = Annotated[int, typer.Option("--spi", help="Individuals whose sensitive personal information it holds.")]
CatOpt = Annotated[
    list[str] | None, typer.Option("--category", help="Category id (e.g. an FTZ negative-list id); repeat.")
]


def _classification(
    level: str, sub_grade: int | None, pi: int, spi: int, categories: list[str] | None, return_flow: bool
) -> dict[str, Any]:
    return {
        "level": level,
        "sub_grade": sub_grade,
        "pi_count": pi,
        "spi_count": spi,
        "categories": categories or [],
        "return_flow": return_flow,
    }


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _summary(d: dict[str, Any]) -> str:
    c = d["classification"]
    sub = f"/{c['sub_grade']}" if c.get("sub_grade") else ""
    inh = " (inherited, re-grade it)" if c.get("inherited") else ""
    return (
        f"{d['name']:<20} {d['owner']:<12} {d['home_site']:<16} {c['level']}{sub}{inh:<10} "
        f"PI {c['pi_count']:,} SPI {c['spi_count']:,}  {d['size']:,} B  replicas: {', '.join(d['replicas']) or '—'}"
    )


@app.command()
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    site: Annotated[str, typer.Option("--site", help="Home site.")],
    owner: Annotated[str, typer.Option("--owner", help="Owner tenant (the exporter).")],
    path: Annotated[
        Path | None, typer.Option("--path", help="A data file on the server's machine (admin only).")
    ] = None,
    upload: Annotated[
        Path | None,
        typer.Option("--upload", help="A data file here: sent sealed to the site's agent, stored there only."),
    ] = None,
    local_path: Annotated[
        Path | None,
        typer.Option("--local-path", help="A file on the site's disk, put into its agent's store (run at the site)."),
    ] = None,
    agent_home: Annotated[
        Path | None,
        typer.Option("--agent-home", help="With --local-path: the site agent's home (its store, its token)."),
    ] = None,
    level: LevelOpt = "general",
    sub_grade: Annotated[int | None, typer.Option("--sub-grade")] = None,
    pi: PiOpt = 0,
    spi: SpiOpt = 0,
    category: CatOpt = None,
    return_flow: Annotated[
        bool, typer.Option("--return-flow", help="PI collected abroad, nothing domestic added.")
    ] = False,
    derived_from: Annotated[list[str] | None, typer.Option("--derived-from", help="Input dataset; repeat.")] = None,
    chunk_mib: Annotated[int, typer.Option("--chunk-mib", help="Chunk size, 4–16 MiB.")] = 8,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Register a graded dataset at its home site (derived ones inherit the highest input level).

    With --upload the file is read here and its bytes go, sealed, through the front desk to the
    site's agent, whose store alone holds them; with --local-path (run at the site) a file on the
    site's disk goes into its agent's store and only its manifest to the front desk; with --path
    the server reads a file on its own machine into the site's store on that machine (admin only)."""
    if sum(x is not None for x in (path, upload, local_path)) != 1:
        raise typer.BadParameter(
            "give one of --upload FILE (a file here), --local-path FILE --agent-home DIR (at the site) "
            "or --path FILE (on the server's machine)"
        )
    classification = None if derived_from else _classification(level, sub_grade, pi, spi, category, return_flow)
    if local_path is not None:
        if agent_home is None:
            raise typer.BadParameter("--local-path needs --agent-home: the site agent's home, where its store is")
        with open_client(ctx, server, token) as client:
            d = siteregister.register_local(
                client, name, owner, site, local_path, agent_home, chunk_mib, classification, derived_from or []
            )
        if json_out:
            _echo_json(d)
            return
        say(f"registered {d['name']} in {d['home_site']}'s agent store: {d['chunks']} chunks, root {d['root'][:16]}…")
        say(_summary(d))
        return
    if upload is not None:
        with open_client(ctx, server, token) as client:
            d = siteregister.upload(client, name, owner, site, upload, chunk_mib, classification, derived_from or [])
        if json_out:
            _echo_json(d)
            return
        say(f"uploaded {d['name']} to {d['home_site']}'s store: {d['chunks']} chunks, Merkle root {d['root'][:16]}…")
        say(_summary(d))
        return
    assert path is not None
    body: dict[str, Any] = {
        "name": name,
        "owner": owner,
        "home_site": site,
        "path": str(path.resolve()),
        "chunk_mib": chunk_mib,
        "derived_from": derived_from or [],
    }
    if classification is not None:
        body["classification"] = classification
    with open_client(ctx, server, token) as client:
        d = client.register_dataset(**body)
    if json_out:
        _echo_json(d)
        return
    say(f"registered {d['name']} at {d['home_site']}: {d['chunks']} chunks, Merkle root {d['root'][:16]}…")
    say(_summary(d))


@app.command("ls")
def list_(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List datasets with their level, PI counts and replicas."""
    with open_client(ctx, server, token) as client:
        items = client.datasets(owner)
    if json_out:
        _echo_json(items)
        return
    if not items:
        note("No datasets yet. Register one with 'suanli data register'.")
        return
    console = out_console()
    headers = ("NAME", "OWNER", "HOME", "LEVEL", "PI", "SPI", "BYTES", "REPLICAS")
    console.print(table(headers, [_row(d) for d in items], width=console.width))


def _row(d: dict[str, Any]) -> tuple[str, ...]:
    c = d["classification"]
    level = c["level"] + (f"/{c['sub_grade']}" if c.get("sub_grade") else "")
    level += " (inherited, re-grade it)" if c.get("inherited") else ""
    counts = (f"{c['pi_count']:,}", f"{c['spi_count']:,}", f"{d['size']:,}")
    return (d["name"], d["owner"], d["home_site"], level, *counts, ", ".join(d["replicas"]) or "-")


@app.command()
def show(
    ctx: typer.Context, name: str, json_out: JsonOption = False, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Show a dataset and every version of its grading."""
    with open_client(ctx, server, token) as client:
        d = client.dataset(name)
    if json_out:
        _echo_json(d)
        return
    say(_summary(d))
    say(f"root {d['root']}  chunks {d['chunks']} × {d['chunk_size']:,} B")
    for g in d["grades"]:
        c = g["classification"]
        say(
            f"  v{g['version']}: {c['level']} PI {c['pi_count']:,} SPI {c['spi_count']:,} "
            f"categories {', '.join(c['categories']) or '—'} — {g['graded_by']} at {g['graded_at']}"
        )


@app.command()
def grade(
    ctx: typer.Context,
    name: str,
    level: LevelOpt = "general",
    sub_grade: Annotated[int | None, typer.Option("--sub-grade")] = None,
    pi: PiOpt = 0,
    spi: SpiOpt = 0,
    category: CatOpt = None,
    return_flow: Annotated[bool, typer.Option("--return-flow")] = False,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Re-grade a dataset (a new version; old ones stay on record), graded by you. Keeping or
    raising applies at once; lowering the level, a category or a PI / SPI count is a request
    an auditor decides, and the dataset keeps its grade until then."""
    with open_client(ctx, server, token) as client:
        out = client.grade_dataset(name, _classification(level, sub_grade, pi, spi, category, return_flow))
    if json_out:
        _echo_json(out)
        return
    d = out["dataset"]
    if out["applied"]:
        say(f"{name} is now grade version {d['grade_version']}")
    else:
        r = out["request"]
        say(f"held for an auditor: request {r['id']} lowers {'; '.join(r['lowers'])}")
        say(f"{name} keeps grade version {d['grade_version']} until an auditor approves it (suanli data requests)")
    say(_summary(d))


def _request_line(r: dict[str, Any]) -> str:
    c = r["classification"]
    decided = f" by {r['decided_by']}" if r.get("decided_by") else ""
    return (
        f"{r['id']:<14} {r['dataset']:<16} {r['state']}{decided:<14} {c['level']} PI {c['pi_count']:,} "
        f"SPI {c['spi_count']:,} — lowers {'; '.join(r['lowers'])} (asked by {r['requested_by']})"
    )


@app.command()
def requests(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help="pending | approved | denied")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List grade requests: gradings that lower a dataset, held for an auditor."""
    with open_client(ctx, server, token) as client:
        items = client.grade_requests(state=state, dataset=dataset)
    if json_out:
        _echo_json(items)
        return
    if not items:
        note("No grade requests.")
    for r in items:
        say(_request_line(r))


def _decide_grade(
    ctx: typer.Context, request_id: str, action: str, note_: str, json_out: bool, server: str | None, token: str | None
) -> None:
    with open_client(ctx, server, token) as client:
        out = client.decide_grade_request(request_id, action, note_)
    if json_out:
        _echo_json(out)
        return
    say(_request_line(out["request"]))
    say(_summary(out["dataset"]))


@app.command()
def approve(
    ctx: typer.Context,
    request_id: str,
    note_: Annotated[str, typer.Option("--note")] = "",
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """(Auditors) Approve a grade request: the dataset takes the lower grade."""
    _decide_grade(ctx, request_id, "approve", note_, json_out, server, token)


@app.command()
def deny(
    ctx: typer.Context,
    request_id: str,
    note_: Annotated[str, typer.Option("--note")] = "",
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """(Auditors) Deny a grade request: the dataset keeps its grade."""
    _decide_grade(ctx, request_id, "deny", note_, json_out, server, token)


ToOpt = Annotated[str | None, typer.Option("--to", help="Destination site.")]
ZoneOpt = Annotated[str | None, typer.Option("--zone", help="Or: downloads by users in this zone (overseas).")]


def _permit_line(p: dict[str, Any]) -> str:
    staging = "; the scheduler may stage copies there" if p["staging"] else ""
    return f"{p['dataset']} → {p['destination']}: basis {p['basis']}, PI impact assessment {p['pia_ref']}{staging}"


@app.command()
def permit(
    ctx: typer.Context,
    name: str,
    basis: Annotated[
        str,
        typer.Option(
            "--basis",
            help="PIPL basis the notice gave: separate_consent | contract | hr | legal_duty | emergency | "
            "public_interest | published",
        ),
    ],
    pia: Annotated[str, typer.Option("--pia", help="Reference of the PI protection impact assessment.")],
    to: ToOpt = None,
    zone: ZoneOpt = None,
    staging: Annotated[
        bool, typer.Option("--staging/--no-staging", help="Let the scheduler copy it there for waiting jobs.")
    ] = False,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Give the owner's word for exports of NAME to a site (or downloads to a zone): the PIPL
    basis and PI impact assessment every PI export there records, and whether the scheduler
    may copy it there on its own."""
    with open_client(ctx, server, token) as client:
        p = client.permit_export(name, basis=basis, pia_ref=pia, to=to, zone=zone, staging=staging)
    if json_out:
        _echo_json(p)
        return
    say(_permit_line(p))


@app.command()
def permits(
    ctx: typer.Context,
    name: str,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List the owner's word for exports of NAME, per destination."""
    with open_client(ctx, server, token) as client:
        items = client.export_permissions(name)
    if json_out:
        _echo_json(items)
        return
    if not items:
        note(f"No export permissions for {name}: `suanli data permit {name} --to SITE --basis … --pia …` gives one.")
    for p in items:
        say(_permit_line(p))


@app.command()
def revoke(
    ctx: typer.Context,
    name: str,
    to: ToOpt = None,
    zone: ZoneOpt = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Withdraw the owner's word for exports of NAME to a site (or zone)."""
    with open_client(ctx, server, token) as client:
        client.revoke_export(name, to=to, zone=zone)
    say(f"withdrawn: exports of {name} to {to or f'client@{zone}'} need the owner's word again")


@app.command()
def check(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="DATASET", help="The dataset's name.", show_default=False)],
    to: Annotated[str | None, typer.Option("--to", help="Destination site.")] = None,
    kind: Annotated[str, typer.Option("--kind", help="transfer | job_read | download | overseas_access")] = "transfer",
    zone: Annotated[str | None, typer.Option("--zone", help="Requester's zone for download / overseas_access.")] = None,
    purpose: Annotated[
        str, typer.Option("--purpose", help="none | contract | hr | emergency | foreign_judicial")
    ] = "none",
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Explain, in words, whether DATASET may go to a site and what it needs first."""
    with open_client(ctx, server, token) as client:
        d = client.check_movement(name, to=to, zone=zone, kind=kind, purpose=purpose)
    if json_out:
        _echo_json(d)
        return
    say(d["explain"])
    say(f"now: {d['hold']}")


@app.command()
def exporter(
    ctx: typer.Context,
    tenant: str,
    ciio: Annotated[
        bool, typer.Option("--ciio/--no-ciio", help="A critical information infrastructure operator.")
    ] = False,
    ftz: Annotated[str | None, typer.Option("--ftz", help="Free trade zone the tenant is registered in.")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Set what the rules need to know about an exporter (CIIO, free trade zone)."""
    with open_client(ctx, server, token) as client:
        e = client.set_exporter(tenant, ciio=ciio, ftz=ftz)
    say(f"{e['name']}: CIIO {'yes' if e['ciio'] else 'no'}, FTZ {e['ftz'] or '—'}")


def _run_with_progress(client: Client, transfer_id: str, total: int) -> dict[str, Any]:
    """Queue the transfer on the server and follow it to its end with a progress bar."""
    client.run_transfer(transfer_id, wait=False)
    columns = (*Progress.get_default_columns()[:2], BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err_console(), transient=True) as bar:
        task = bar.add_task("copying", total=total)
        done = client.wait_transfer(transfer_id, progress=lambda t: bar.update(task, completed=t["bytes_done"]))
        bar.update(task, completed=total)
    return done


@app.command()
def copy(
    ctx: typer.Context,
    name: str,
    to: Annotated[str, typer.Option("--to", help="Destination site.")],
    purpose: Annotated[str, typer.Option("--purpose")] = "none",
    bandwidth_mbps: Annotated[float | None, typer.Option("--bandwidth-mbps", help="Cap, megabits per second.")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Resume this transfer id instead.")] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Copy a dataset to a site, encrypted and verified — if the rules allow it now."""
    with open_client(ctx, server, token) as client:
        if resume:
            t = client.transfer(resume)
        else:
            t = client.create_transfer(name, to, purpose=purpose, bandwidth_mbps=bandwidth_mbps)
        decision = t["decision"]
        note(
            f"route: {decision['route']} (rules {', '.join(decision['rule_ids'])}, "
            f"rule set {decision['ruleset_version']})"
        )
        if t["state"] in (TransferState.DENIED, TransferState.HELD):
            say(f"transfer {t['id']} {t['state']}: {t['reason']}")
            if t["state"] == TransferState.HELD:
                say(f"create the filing with: suanli filing create {name} --to {to}")
            raise typer.Exit(1)
        total = client.dataset(t["dataset"])["size"]
        done = _run_with_progress(client, t["id"], total)
    if json_out:
        _echo_json(done)
    else:
        say(f"transfer {done['id']}: {done['state']} — {done['reason']} ({done['chunks_resent']} chunks resent)")
    if done["state"] != TransferState.DONE:
        raise typer.Exit(1)


@app.command()
def transfers(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List transfers with their state and reason."""
    with open_client(ctx, server, token) as client:
        items = client.transfers(dataset)
    if json_out:
        _echo_json(items)
        return
    if not items:
        note("No transfers.")
        return
    rows = [(t["id"], t["dataset"], t["source_site"], t["dest_site"], t["state"], _why(t)) for t in items]
    console = out_console()
    console.print(table(("ID", "DATASET", "FROM", "TO", "STATE", "REASON"), rows, width=console.width))


def _why(t: dict[str, Any]) -> str:
    return f"{t['reason']} (for job {t['for_job']})" if t.get("for_job") else str(t["reason"])


@app.command()
def download(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write it.")],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Download a dataset of your tenant. The rules decide it first, for the zone your user
    record gives (a download abroad is an export: counted, and perhaps held for a filing:
    `suanli filing create NAME --download`), and it goes on the ledger."""
    if out.is_dir():
        out = out / name
    part = out.with_name(f".{out.name}.part")
    with open_client(ctx, server, token) as client:
        try:
            with part.open("wb") as fh:
                size = client.download_data(name, fh)
            part.replace(out)
        finally:
            part.unlink(missing_ok=True)
    if json_out:
        _echo_json({"dataset": name, "path": str(out), "bytes": size})
        return
    say(f"downloaded {name} to {out} ({size:,} bytes)")
