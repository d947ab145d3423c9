"""`suanli server`, `suanli agent`, `suanli up`: the commands that start processes."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from suanli.app.settings import DEFAULT_PORT, Settings, default_home
from suanli.core.errors import SuanliError
from suanli.filemodes import private_dir

# The server, agent and network modules (FastAPI, SQLAlchemy, uvicorn) are imported inside the
# commands that need them, so `suanli jobs` and friends start fast.

err = Console(stderr=True, soft_wrap=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="State directory (default: $SUANLI_HOME, else ~/.suanli).", show_default=False),
]
HostOption = Annotated[str, typer.Option("--host", help="Address to listen on. Keep 127.0.0.1 unless you mean it.")]
PortOption = Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # One line per HTTP request is noise at INFO (the agent heartbeats every few seconds).
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


def try_hint(url: str, home: Path) -> str:
    """The first command to try, runnable as printed in a new shell: it names the server and
    the state directory (where the CLI finds the saved token) unless they are the defaults."""
    from suanli.sdk.client import DEFAULT_SERVER

    exports = []
    if home.expanduser().resolve() != (Path.home() / ".suanli").resolve():
        exports.append(f"export SUANLI_HOME={shlex.quote(str(home))}; ")
    if url.rstrip("/") != DEFAULT_SERVER.rstrip("/"):
        exports.append(f"export SUANLI_SERVER={shlex.quote(url)}; ")
    return "".join(exports) + "suanli submit examples/hello.yaml --follow"


def _until_signalled() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so the main thread can wait and then clean up. A second
    signal while it cleans up (stopping attempts takes their grace period) leaves at once."""
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def server(
    home: HomeOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = DEFAULT_PORT,
    network: Annotated[
        Path | None, typer.Option("--network", "-n", help="Network file declaring regions, sites, nodes, tariffs.")
    ] = None,
    lease: Annotated[
        float | None,
        typer.Option(
            "--lease",
            help="Seconds an attempt stays its site's without a report (default 30, at least 2).",
            min=2.0,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the control plane (API, scheduler). State: SQLite under --home, or $SUANLI_DATABASE_URL."""
    import uvicorn

    from suanli.app.control import ControlPlane
    from suanli.app.serverkeys import KeyMismatch
    from suanli.launch.network import read_network_file
    from suanli.server.app import create_app
    from suanli.web import mount_dashboard

    _logging(verbose)
    settings = Settings(home=home or default_home(), host=host, port=port)
    if lease is not None:
        settings.lease_s = lease
    try:
        control = ControlPlane(settings)
        control.migrate()
    except (KeyMismatch, ValueError) as exc:  # keys this replica does not share with the others
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if network is not None:
        spec = read_network_file(network)
        fresh = control.apply_network(spec)
        for site in spec.sites:
            state = "new token" if site.name in fresh else "token"
            err.print(
                f"site [bold]{site.name}[/] ({site.region}, {site.backend.value}): "
                f"{state} in {control.site_token_path(site.name)}"
            )
    if control.admin_token_written:
        err.print(f"admin token written to [bold]{control.admin_token_written}[/] (mode 0600; shown nowhere else)")
    err.print(
        f"admin: suanli login --server http://{host}:{port} --token-file {control.admin_token_path}",
    )
    err.print(f"suanli server on [bold]http://{host}:{port}[/]  (dashboard: http://{host}:{port}/, API docs: /docs)")
    uvicorn.run(
        mount_dashboard(create_app(control, background=True)),
        host=host,
        port=port,
        log_level="warning" if not verbose else "info",
    )


def agent(
    site: Annotated[str, typer.Option("--site", help="The site this agent serves (as declared on the server).")],
    server_url: Annotated[str | None, typer.Option("--server", help="Server URL (default: $SUANLI_SERVER).")] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="The site's agent token (default: $SUANLI_AGENT_TOKEN).", show_default=False),
    ] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="Read the token from this file.")] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend", help="Engine that runs the jobs: local, slurm or ray (default: the config's, else local)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Agent config file: the engine's settings (see docs/engines.md)."),
    ] = None,
    work_dir: Annotated[Path | None, typer.Option("--work-dir", help="Where attempts and checkpoints live.")] = None,
    gpus: Annotated[
        str | None,
        typer.Option("--gpus", help="Declare virtual GPU slots for this node, e.g. H100:8 (default: found with NVML)."),
    ] = None,
    cpus: Annotated[float | None, typer.Option("--cpus", help="CPUs to offer (default: all).")] = None,
    memory: Annotated[float | None, typer.Option("--memory", help="Memory to offer, GiB (default: all).")] = None,
    stop_on_partition: Annotated[
        bool,
        typer.Option(
            "--stop-on-partition/--keep-on-partition",
            help="Stop this site's attempts when the server is out of reach for longer than the lease.",
        ),
    ] = True,
    health_check: Annotated[
        str | None,
        typer.Option("--health-check", help="A program run per node; non-zero exit drains the node with its output."),
    ] = None,
    health_interval: Annotated[float, typer.Option("--health-interval", help="Seconds between health checks.")] = 60.0,
    gpu_health: Annotated[
        bool,
        typer.Option(
            "--gpu-health/--no-gpu-health",
            help="Watch this machine's NVIDIA GPUs through NVML (XID errors, ECC, lost GPUs, heat) and mark "
            "its node unhealthy on a fault. Needs the 'nvidia' extra and a driver; otherwise nothing is watched.",
        ),
    ] = True,
    gpu_max_temp: Annotated[
        str,
        typer.Option(
            "--gpu-max-temp",
            help="GPU temperature (°C) at which the node is unhealthy until it cools 5 °C below; "
            "'slowdown': each GPU's own slowdown threshold.",
        ),
    ] = "90",
    gpu_fatal_xids: Annotated[
        str,
        typer.Option(
            "--gpu-fatal-xids",
            help="XIDs that drain the node, comma-separated (default: 48,62,63,64,74,79,92,94,95,119,120,140).",
        ),
    ] = "default",
    node_name: Annotated[
        str | None,
        typer.Option("--node-name", help="Name of the node --gpus/--cpus/--memory declare (default: host name)."),
    ] = None,
    checkpoint_every: Annotated[
        float,
        typer.Option(
            "--checkpoint-every",
            help="Seconds between uploads of a running job's changed checkpoint folder, so a retry at another "
            "site resumes from it (0: only when an attempt ends).",
        ),
    ] = 60.0,
    keep_jobs_on_exit: Annotated[
        bool,
        typer.Option(
            "--keep-jobs-on-exit",
            help="At Ctrl-C/SIGTERM leave the attempts running (local: paused until an agent restarted within "
            "the lease adopts them; Slurm and Ray: the next agent cancels them, it cannot adopt engine jobs).",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a site agent: register with the server, take attempts, run them on the site's engine."""
    import psutil

    from suanli.agent.agent import Agent
    from suanli.agent.backends.config import AgentConfig, make_backend, read_agent_config
    from suanli.agent.health import HealthChecker, HealthChecks, NodeHealth
    from suanli.agent.nvml_health import NvmlHealth, parse_xids
    from suanli.agent.service_link import ServiceLink
    from suanli.core.network import NodeDecl
    from suanli.core.resources import parse_accelerator
    from suanli.sdk import default_server
    from suanli.sdk.agent import SiteClient

    _logging(verbose)
    settings = read_agent_config(config) if config else AgentConfig()
    backend = backend or settings.backend
    secret = token or (token_file.read_text().strip() if token_file else None) or os.environ.get("SUANLI_AGENT_TOKEN")
    if not secret:
        raise SuanliError("the agent needs its site token: --token, --token-file or $SUANLI_AGENT_TOKEN")
    root = work_dir or settings.work_dir or default_home() / "agent" / site
    private_dir(root, traverse_ok=True)  # before the backend makes it: 0700, never open to others
    nodes = None
    if gpus or cpus or memory:
        nodes = [
            NodeDecl(
                name=node_name or socket.gethostname(),
                gpus=parse_accelerator(gpus) if gpus else None,
                cpus=cpus or float(psutil.cpu_count() or 1),
                memory=memory or round(psutil.virtual_memory().total / 2**30, 1),
            )
        ]
    checks: list[NodeHealth] = [HealthChecker(health_check, health_interval)] if health_check else []
    if gpu_health:
        try:
            fatal = parse_xids(gpu_fatal_xids)
            max_temp = None if gpu_max_temp.strip().lower() == "slowdown" else float(gpu_max_temp)
        except ValueError as exc:
            raise SuanliError(f"--gpu-fatal-xids or --gpu-max-temp: {exc}") from None
        watch = NvmlHealth.open(node=node_name, fatal_xids=fatal, max_temp_c=max_temp)
        if watch is not None:
            checks.append(watch)
    the_agent = Agent(
        SiteClient(server_url or default_server(), token=secret),
        site,
        make_backend(backend, root, settings, nodes),
        root,
        agent_id=f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
        stop_on_partition=stop_on_partition,
        checkpoint_every_s=checkpoint_every or None,
        health=HealthChecks(*checks) if checks else None,
    )
    # Requests for this site's service replicas come down one outbound link (docs/serving.md).
    the_agent.service_link = ServiceLink(server_url or default_server(), secret, site=site)
    stop = _until_signalled()
    err.print(f"agent for site [bold]{site}[/] → {server_url or default_server()} (work dir {root}); Ctrl-C stops it")
    the_agent.run_forever(stop)
    if keep_jobs_on_exit:
        # A local backend's attempts stop by themselves past the orphan timeout unless an agent
        # restarted on this work dir adopts them first (see suanli.agent.recovery).
        err.print("leaving the attempts running for the next agent on this work dir")
        the_agent.shutdown(cancel_running=False)
        return
    err.print("stopping the attempts this agent runs … (Ctrl-C again leaves at once)")
    the_agent.shutdown(cancel_running=True)


def up(
    demo: Annotated[
        bool, typer.Option("--demo", help="Three sites on this machine: beijing, tianjin-gaocun, ningxia.")
    ] = False,
    network: Annotated[
        Path | None, typer.Option("--network", "-n", help="A network file of local-backend sites.")
    ] = None,
    engines: Annotated[
        bool,
        typer.Option(
            "--engines",
            help="With --demo: add a Slurm site and a Ray site for each engine running here (scripts/engines/).",
        ),
    ] = False,
    home: HomeOption = None,
    port: PortOption = DEFAULT_PORT,
    replicas: Annotated[
        int,
        typer.Option(
            "--replicas",
            min=1,
            help="Front desks to run, on --port and the ports after it (more than one needs --postgres).",
        ),
    ] = 1,
    postgres: Annotated[
        bool,
        typer.Option("--postgres", help="Keep the network in a PostgreSQL cluster of its own, for this run only."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug lines from the server.")] = False,
    detach: Annotated[
        bool,
        typer.Option("--detach", "-d", help="Run in the background (log: <home>/up.log); 'suanli down' stops it."),
    ] = False,
) -> None:
    """The server on 127.0.0.1 and one agent process per site (home: agents/<site>). Ctrl-C stops all it started."""
    from suanli.launch.network import (
        DEMO_WITNESS,
        LocalNetwork,
        demo_network,
        read_network_file,
        running_engines,
        single_site_network,
    )
    from suanli.sdk import Client
    from suanli.sdk.credentials import CREDENTIALS_FILE, save_token

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    base = private_dir(home or default_home())  # 0700; narrowed, with a warning, if open to others
    if detach:
        if replicas > 1 and not postgres:
            err.print("[red]error:[/] --replicas needs --postgres: replicas share one PostgreSQL database")
            raise typer.Exit(2)
        _detach(
            base,
            port,
            demo=demo,
            network=network,
            engines=engines,
            verbose=verbose,
            replicas=replicas,
            postgres=postgres,
        )
        return
    if demo:
        usable = []
        for engine, problem in running_engines().items() if engines else ():
            if problem:
                err.print(f"[yellow]no {engine} site:[/] {problem} (start it: scripts/engines/{engine}.sh start)")
            else:
                usable.append(engine)
        spec, state = demo_network(usable), base / "demo"
    elif network is not None:
        spec, state = read_network_file(network), base
    else:
        spec, state = single_site_network(), base
    if replicas > 1 and not postgres:
        err.print("[red]error:[/] --replicas needs --postgres: replicas share one PostgreSQL database")
        raise typer.Exit(2)
    settings = Settings(home=state, port=port)
    net = LocalNetwork(settings, spec, witness_home=state / "witness" if demo else None, replicas=replicas)
    stop = _until_signalled()
    try:
        if postgres:
            from suanli.launch.replicas import DATABASE, private_postgres

            net.postgres = private_postgres()
            settings.database_url = net.postgres.url(DATABASE)
            err.print(f"PostgreSQL at 127.0.0.1:{net.postgres.port} (a cluster for this run, in {net.postgres.folder})")
        net.start()
        net.wait_online()
        url = net.servers
        token_path = net.control.admin_token_path if net.control else state / "admin.token"
        saved = save_token(net.url, net.admin_token, base / CREDENTIALS_FILE)
        err.print(f"[bold green]suanli is up[/] at [bold]{url}[/]  (state in {state})")
        err.print(f"  admin token: {token_path} (mode 0600; the CLI here uses it, saved in {saved})")
        err.print(f"  dashboard: [bold]{net.url}/[/]  (sign in with the admin token: cat {token_path})")
        with Client(url, token=net.admin_token) as client:
            for s in client.sites():
                gpus = ", ".join(f"{g.total} × {t}" for t, g in s.gpus.items()) or "CPU only"
                err.print(f"  site [bold]{s.name:<16}[/] {s.region:<10} {s.nodes} node(s), {gpus}")
        for a in net.agents:
            err.print(f"  agent of {a.site}: pid {a.proc.pid}, home {a.home} (log: {a.log_path})")
        for r in net.running_replicas:
            err.print(f"  front desk {r.url}: pid {r.proc.pid}, home {r.home} (log: {r.log_path})")
        if net.witness_home is not None:
            err.print(f"  witness [bold]{DEMO_WITNESS}[/] cosigns the ledger (its key and state: {net.witness_home})")
        err.print(f"Try: {try_hint(url, base)}    (Ctrl-C here stops the network)", soft_wrap=True)
        sys.stdout.flush()
        stop.wait()
        err.print("stopping: jobs, agents, server …")
    finally:
        net.stop()
    err.print("stopped.")


def _detach(
    base: Path,
    port: int,
    *,
    demo: bool,
    network: Path | None,
    engines: bool,
    verbose: bool,
    replicas: int = 1,
    postgres: bool = False,
) -> None:
    from suanli.launch import detach

    args = ["--home", str(base), "--port", str(port), "--replicas", str(replicas)]
    args += ["--demo"] * demo + ["--engines"] * engines + ["--verbose"] * verbose + ["--postgres"] * postgres
    if network is not None:
        args += ["--network", str(network.resolve())]
    url = f"http://127.0.0.1:{port}"
    started = detach.start(base, args, url)
    for line in Path(started.log).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("Try:"):
            err.print(line, markup=False, highlight=False)
    err.print(f"  running in the background: pid {started.pid}, log {started.log}")
    err.print(f"Try: {try_hint(url, base)}    ('suanli down' stops the network)", soft_wrap=True)


def down(
    home: HomeOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print what was stopped as JSON.")] = False,
) -> None:
    """Stop the network 'suanli up --detach' started from this home: jobs, agents, server."""
    from suanli.launch import detach

    base = (home or default_home()).expanduser()
    stopped = detach.stop(base)
    if json_out:
        typer.echo(json.dumps({"stopped": stopped is not None, "pid": stopped.pid if stopped else None}))
    elif stopped is None:
        err.print(f"nothing to stop: no 'suanli up --detach' runs from {base}")
    else:
        err.print(f"stopped the network at {stopped.url} (pid {stopped.pid})")
