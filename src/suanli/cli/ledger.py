"""``suanli ledger``: checkpoints, proofs, counters, and ``verify`` — the regulator's check."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.cli.context import ServerOption, TokenOption, error, note, open_client, say
from suanli.core.errors import SuanliError
from suanli.core.ledger import (
    ORIGIN,
    Checkpoint,
    Record,
    log_verifier,
    verify_checkpoint,
    verify_consistency,
    verify_log,
)
from suanli.core.signednote import Verifier

app = typer.Typer(
    name="ledger", help="The append-only data ledger: export, verify, proofs, counters.", no_args_is_help=True
)


#: The format of ``suanli ledger export`` files (docs/datachain.md, "Exported ledgers").
EXPORT_FORMAT = "suanli-ledger-export/v1"


def _fetch(ctx: typer.Context, server: str | None, token: str | None) -> dict[str, Any]:
    with open_client(ctx, server, token) as client:
        keys = client.ledger_keys()
        return {
            "format": EXPORT_FORMAT,
            "origin": keys.get("origin", ""),
            "log_vkey": keys.get("vkey", ""),
            "public_key": keys["public_key"],
            "witnesses": keys.get("witnesses", []),
            "entries": client.ledger_entries(),
            "checkpoints": client.ledger_checkpoints(),
        }


@app.command()
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="JSON file to write.")],
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """(auditor) Save the whole log, its checkpoints with their cosignatures, and the keys, to
    verify offline later (``suanli ledger verify --file``)."""
    doc = _fetch(ctx, server, token)
    out.write_text(json.dumps(doc), encoding="utf-8")
    say(f"{len(doc['entries'])} entries, {len(doc['checkpoints'])} checkpoints written to {out}")


def _log_key(text: str) -> Verifier | bytes:
    """A pinned log key: its vkey line, or the raw Ed25519 key in hex."""
    if "+" in text:
        return Verifier.parse(text)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise SuanliError(f"--key '{text}' is neither a vkey line nor a 32-byte Ed25519 key in hex")
    return raw


@app.command()
def verify(
    ctx: typer.Context,
    from_: Annotated[
        Path | None, typer.Option("--from", help="A checkpoint JSON you kept earlier: the log must still hold it.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Verify an exported log offline instead of asking the server.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Pinned log key (its vkey line, or hex). Default: the key the log/server names."),
    ] = None,
    witness_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--witness-key", help="Pinned witness vkey (repeat). Default: the witnesses the network file lists."
        ),
    ] = None,
    witnesses: Annotated[
        int | None,
        typer.Option("--witnesses", min=0, help="Cosignatures required on the newest checkpoint (default: all)."),
    ] = None,
    save: Annotated[
        Path | None, typer.Option("--save-checkpoint", help="Keep the newest checkpoint here for next time.")
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", min=0, help="Online: wait up to this many seconds for the witnesses to cosign a new tail."
        ),
    ] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Check every entry, the log's signed checkpoints (C2SP, Ed25519) and the witnesses'
    cosignatures: passes only when a checkpoint signed by the log and cosigned by --witnesses
    witnesses covers the whole log. A modified, deleted or reordered entry is named; no
    checkpoint, an unsigned tail or an unwitnessed tail fails. Exit 1 when anything fails."""
    try:
        trusted = Checkpoint.from_dict(json.loads(from_.read_text(encoding="utf-8"))) if from_ else None
    except ValueError as exc:
        raise SuanliError(f"--from {from_}: {exc}") from None
    deadline = time.monotonic() + wait
    while True:
        doc = json.loads(file.read_text(encoding="utf-8")) if file else _fetch(ctx, server, token)
        try:
            log_key = _log_key(key or doc.get("log_vkey") or doc["public_key"])
            wits = [Verifier.parse(w) for w in (witness_keys or doc.get("witnesses", []))]
            cps = [Checkpoint.from_dict(c) for c in doc["checkpoints"]]
        except ValueError as exc:
            raise SuanliError(str(exc)) from None
        records = [Record(e["index"], bytes.fromhex(e["leaf_hash"]), e["data"].encode()) for e in doc["entries"]]
        report = verify_log(records, cps, log_key, witnesses=wits, quorum=witnesses, trusted=trusted)
        if file or not report.awaiting_witnesses or time.monotonic() >= deadline:
            break
        time.sleep(0.5)  # the witnesses cosign on their next round
    if not key:
        note("using the log key the log carries; pin it with --key to guard against a replaced key")
    if not witness_keys and wits:
        note("using the witness keys the log names; pin them with --witness-key")
    kinds: dict[str, int] = {}
    for e in doc["entries"]:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    latest = max(cps, key=lambda c: c.size) if cps else None
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "checkpoints": report.checkpoints,
                    "signed": report.signed,
                    "witnessed": report.witnessed,
                    "quorum": report.quorum,
                    "witnessed_by": report.witnessed_by,
                    "problems": report.problems,
                    "first_bad": report.first_bad,
                }
            )
        )
    if not report.ok:
        if not json_out:
            for p in report.problems:
                error(p)
            if report.first_bad is not None:
                note(f"first entry at fault: {report.first_bad}")
            error(f"the ledger does NOT verify ({len(report.problems)} problem(s))")
        raise typer.Exit(1)
    if save and latest:
        save.write_text(json.dumps(latest.to_dict()), encoding="utf-8")
    if json_out:
        return
    if trusted and latest and trusted.size <= latest.size:
        note(f"consistent with your checkpoint at size {trusted.size}")
    by = f", cosigned by {', '.join(report.witnessed_by)}" if report.witnessed_by else ""
    say(f"ok: {report.entries} entries, {report.checkpoints} signed checkpoints verified{by}")
    if not wits:
        note("no witness cosigns this log: whoever holds the log key could rewrite it unseen")
    for kind, n in sorted(kinds.items()):
        say(f"  {kind:<20} {n}")
    if latest:
        say(f"newest checkpoint: size {latest.size}, root {latest.root.hex()}, {latest.timestamp}")
    shown = log_key if isinstance(log_key, Verifier) else log_verifier(log_key, latest.origin if latest else ORIGIN)
    say(f"log key: {shown.vkey()}")


@app.command()
def checkpoints(ctx: typer.Context, server: ServerOption = None, token: TokenOption = None) -> None:
    """List signed checkpoints."""
    with open_client(ctx, server, token) as client:
        for c in client.ledger_checkpoints():
            by = ", ".join(c.get("witnessed_by", [])) or "no witness yet"
            say(f"size {c['size']:>8}  root {c['root']}  {c['timestamp']}  key {c['key_id']}  ({by})")


@app.command()
def consistency(
    ctx: typer.Context,
    first: Annotated[int | None, typer.Argument(help="Size of a signed checkpoint (or use --from).")] = None,
    second: Annotated[int | None, typer.Argument(help="Size of a later signed checkpoint (default: newest).")] = None,
    from_: Annotated[
        Path | None, typer.Option("--from", help="A checkpoint JSON you kept (--save-checkpoint) instead of FIRST.")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Pinned log key (vkey or hex).")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Check that the newest signed checkpoint extends an earlier one: both must be signed by the
    log key, and the server's RFC 9162 proof must join *their* roots (the roots the server sends
    with the proof are not trusted). Exit 1 when it does not."""
    with open_client(ctx, server, token) as client:
        keys = client.ledger_keys()
        try:
            log_key = _log_key(key or keys.get("vkey") or keys["public_key"])
            cps = {c.size: c for c in (Checkpoint.from_dict(d) for d in client.ledger_checkpoints())}
            old = Checkpoint.from_dict(json.loads(from_.read_text(encoding="utf-8"))) if from_ else None
        except ValueError as exc:
            raise SuanliError(str(exc)) from None
        if old is None:
            if first is None:
                raise SuanliError("name the earlier tree: a checkpoint size, or --from a checkpoint you kept")
            old = cps.get(first)
            if old is None:
                raise SuanliError(f"the server holds no signed checkpoint at size {first}; sizes: {sorted(cps)[:20]}")
        new = cps.get(second) if second else (cps[max(cps)] if cps else None)
        if new is None:
            raise SuanliError(f"the server holds no signed checkpoint at size {second or '(none at all)'}")
        for cp in (old, new):
            if not verify_checkpoint(cp, log_key):
                error(f"the checkpoint at size {cp.size} is not signed by the log key")
                raise typer.Exit(1)
        if old.size > new.size:
            error(f"the newest checkpoint (size {new.size}) is smaller than yours (size {old.size}): the log shrank")
            raise typer.Exit(1)
        proof = client.consistency_proof(old.size, new.size)["proof"] if old.size < new.size else []
    ok = verify_consistency(old.size, new.size, old.root, new.root, [bytes.fromhex(h) for h in proof])
    say(f"size {old.size} → {new.size}: {'consistent' if ok else 'NOT consistent'} ({len(proof)} hashes)")
    if not ok:
        error(f"the signed tree of size {new.size} does not extend the signed tree of size {old.size}")
        raise typer.Exit(1)


@app.command()
def counters(
    ctx: typer.Context,
    year: Annotated[int | None, typer.Option("--year")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """(auditor) Each exporter's yearly counters of individuals exported (X6)."""
    with open_client(ctx, server, token) as client:
        for c in client.ledger_counters(year):
            say(f"{c['year']}  {c['exporter']:<16} PI {c['pi']:>12,}  SPI {c['spi']:>10,}")


@app.command()
def entries(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Option("--kind", help="decision, transfer.state, filing.state, placement…")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """(auditor) Read ledger entries, e.g. every policy decision with its rules (--kind decision)."""
    with open_client(ctx, server, token) as client:
        items = client.ledger_entries(kind=kind)
    if json_out:
        typer.echo(json.dumps([{**e, "data": json.loads(e["data"])} for e in items], indent=2, ensure_ascii=False))
        return
    for e in items:
        doc = json.loads(e["data"])
        b = doc["body"]
        summary = " ".join(
            f"{k}={v}"
            for k, v in b.items()
            if k in ("dataset", "transfer", "filing", "route", "state", "rule_ids", "destination", "job", "path")
        )
        say(f"{e['index']:>6}  {doc['at'][:19]}  {e['kind']:<18} {summary}")
