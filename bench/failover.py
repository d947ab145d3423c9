"""Front-desk fail-over: replicas of `suanli server` on one PostgreSQL, the scheduler leader killed.

A private PostgreSQL cluster (``suanli.launch.postgres``), ``--replicas`` servers on it sharing
one ``$SUANLI_HOME`` (its key and token files; the jobs carry no workdir, and archives would be
in the database's blob store anyway: ``suanli up --replicas`` and
``tests/integration/test_replicas_share.py`` run replicas with homes of their own), two sites whose agents list
every replica (``--server a,b,c``), and ``--clients`` processes submitting ``--jobs`` trivial
jobs in all through the SDK, each with the replicas in a different order. While they submit,
the replica that leads the scheduler (the ``leadership`` row names its pid) is killed with
SIGKILL ``--kills`` times, and a new replica is started on its port each time.

Then every acknowledged job must finish, once:

- ``acknowledged``: submissions answered 201; ``lost``: of those, jobs the database lacks;
- ``duplicates``: jobs in the database that no client was answered with (a retried submission
  that made a second job);
- ``ran_twice``: jobs with more than one attempt; ``completed_twice``: more than one attempt
  that succeeded; ``unfinished``: acknowledged jobs not SUCCEEDED at the end;
- ``max_failover_s``: the longest time from a kill until another replica took the lead (its
  epoch in the ``leadership`` row moved); ``submits_per_s``: acknowledged / submitting time.

Targets: 0 lost, 0 duplicates, 0 run twice, fail-over ≤ 10 s.

    python bench/failover.py [--jobs 2000] [--clients 4] [--replicas 3] [--kills 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

from _harness import emit, free_port, healthy, private_postgres
from faults import Proc, wait_for
from suanli.adaptors import psycopg_module
from suanli.core.spec import JobSpec
from suanli.launch.postgres import LocalPostgres
from suanli.sdk import Client

NETWORK = """\
regions: [beijing, tianjin]
sites:
  - name: site-a
    region: beijing
    nodes: [{name: node-a, cpus: 64, memory: 256}]
  - name: site-b
    region: tianjin
    nodes: [{name: node-b, cpus: 64, memory: 256}]
tenants:
  - {name: bench, home_region: beijing}
"""
JOB = {"run": "true", "resources": {"cpus": 1, "memory": 0.1}, "time_limit": "5m"}


def submitter(servers: list[str], token: str, count: int, out: str) -> None:
    """One client process: ``count`` submissions, each acknowledged id written as it comes."""
    spec = JobSpec.model_validate(JOB)
    with Client(",".join(servers), token=token, submit_retries=10, retry_backoff_s=0.1) as client, open(out, "a") as f:
        for _ in range(count):
            try:
                job = client.submit(spec)
            except Exception as exc:  # counted as not acknowledged
                f.write(json.dumps({"error": str(exc)[:200]}) + "\n")
            else:
                f.write(json.dumps({"id": job.id}) + "\n")
            f.flush()


class Replicas:
    def __init__(self, root: Path, url: str, count: int) -> None:
        self.root, self.url = root, url
        self.ports = [free_port() for _ in range(count)]
        self.procs: dict[int, Proc] = {}
        self.env = {"SUANLI_DATABASE_URL": url}

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def start(self, port: int) -> None:
        args = ["server", "--home", str(self.root / "home"), "--port", str(port)]
        args += ["--network", str(self.root / "network.yaml")]
        proc = Proc(args, self.root / f"server-{port}.log", self.env)
        proc.start()
        self.procs[port] = proc
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}"), 60, f"the replica on port {port} to answer")

    def port_of(self, pid: int) -> int:
        return next(p for p, proc in self.procs.items() if proc.proc is not None and proc.proc.pid == pid)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


def _leader(dsn: str) -> tuple[int, int] | None:
    """(epoch, pid) of the replica that leads now, from the leadership row."""
    with psycopg_module().connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT epoch, holder FROM leadership WHERE name = 'scheduler'").fetchone()
    if row is None:
        return None
    return int(row[0]), int(str(row[1]).split(":")[1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    with private_postgres("suanli-failover-", keep=args.keep) as (root, pg):
        return _run(args, root, pg)


def _run(args: argparse.Namespace, root: Path, pg: LocalPostgres) -> dict[str, Any]:
    replicas: Replicas | None = None
    agents: list[Proc] = []
    try:
        url = pg.create_database("suanli")
        dsn = pg.dsn("suanli")
        (root / "network.yaml").write_text(NETWORK)
        replicas = Replicas(root, url, args.replicas)
        for port in replicas.ports:  # the first one alone first: it creates keys and tokens
            replicas.start(port)
        servers = ",".join(replicas.urls)
        for site, node in (("site-a", "node-a"), ("site-b", "node-b")):
            config = root / f"agent-{site}.yaml"
            config.write_text("local:\n  sandbox: none\n")
            token = root / "home" / "tokens" / f"site-{site}.token"
            argv = ["agent", "--site", site, "--server", servers, "--token-file", str(token), "--config", str(config)]
            argv += ["--work-dir", str(root / "agents" / site), "--node-name", node, "--cpus", "64", "--memory", "256"]
            agent = Proc(argv, root / f"agent-{site}.log")
            agent.start()
            agents.append(agent)
        admin = (root / "home" / "admin.token").read_text().strip()
        wait_for(lambda: _leader(dsn) is not None, 30, "a replica to lead")

        outs = [root / f"client-{i}.jsonl" for i in range(args.clients)]
        per = [args.jobs // args.clients + (1 if i < args.jobs % args.clients else 0) for i in range(args.clients)]
        ctx = multiprocessing.get_context("spawn")
        clients = []
        started = time.monotonic()
        for i in range(args.clients):
            order = replicas.urls[i % len(replicas.urls) :] + replicas.urls[: i % len(replicas.urls)]
            p = ctx.Process(target=submitter, args=(order, admin, per[i], str(outs[i])))
            p.start()
            clients.append(p)

        def acknowledged_so_far() -> int:
            return sum(sum(1 for line in o.read_text().splitlines() if '"id"' in line) for o in outs if o.exists())

        failovers: list[float] = []
        for k in range(args.kills):
            target = (k + 1) * args.jobs // (args.kills + 1)
            wait_for(lambda t=target: acknowledged_so_far() >= t, 600, f"{target} submissions")
            before = _leader(dsn)
            assert before is not None
            epoch, pid = before
            port = replicas.port_of(pid)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            replicas.procs[port].proc.wait()  # type: ignore[union-attr]

            def moved(old: int = epoch) -> bool:
                now = _leader(dsn)
                return now is not None and now[0] > old

            wait_for(moved, 60, "another replica to take the lead", every=0.05)
            failovers.append(time.monotonic() - killed_at)
            replicas.start(port)  # a new replica in its place
        for p in clients:
            p.join()
        submit_s = time.monotonic() - started

        ids: list[str] = []
        errors: list[str] = []
        for o in outs:
            for line in o.read_text().splitlines():
                row = json.loads(line)
                (ids.append(row["id"]) if "id" in row else errors.append(row["error"]))
        acked = set(ids)

        def settled() -> bool:
            with psycopg_module().connect(dsn, autocommit=True) as conn:
                n = conn.execute(
                    "SELECT count(*) FROM jobs WHERE state NOT IN ('SUCCEEDED','FAILED','CANCELLED')"
                ).fetchone()
            return n is not None and int(n[0]) == 0

        wait_for(settled, args.settle, "every job to finish", every=0.5)
        with psycopg_module().connect(dsn, autocommit=True) as conn:
            jobs = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, seq, state FROM jobs").fetchall()}
            per_job = conn.execute(
                "SELECT j.id, count(a.id), count(a.id) FILTER (WHERE a.state = 'SUCCEEDED') "
                "FROM jobs j LEFT JOIN attempts a ON a.job_seq = j.seq GROUP BY j.id"
            ).fetchall()
        attempts = {r[0]: (int(r[1]), int(r[2])) for r in per_job}
        return {
            "replicas": args.replicas,
            "clients": args.clients,
            "kills": args.kills,
            "acknowledged": len(acked),
            "not_acknowledged": len(errors),
            "lost": len(acked - set(jobs)),
            "duplicates": len(set(jobs) - acked),
            "ran_twice": sum(1 for j in acked if attempts.get(j, (0, 0))[0] > 1),
            "completed_twice": sum(1 for j in acked if attempts.get(j, (0, 0))[1] > 1),
            "unfinished": sum(1 for j in acked if jobs.get(j, (0, ""))[1] != "SUCCEEDED"),
            "failover_s": " ".join(f"{f:.2f}" for f in failovers),
            "max_failover_s": round(max(failovers), 2) if failovers else 0.0,
            "submits_per_s": round(len(acked) / submit_s, 1),
            "first_error": errors[0] if errors else "",
        }
    finally:
        for agent in agents:
            agent.stop()
        if replicas is not None:
            replicas.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--settle", type=float, default=600.0, help="seconds to wait for every job to finish")
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs) afterwards")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    emit(result, args.json, title="front-desk fail-over (replicas on one PostgreSQL, leader killed)")


if __name__ == "__main__":
    main()
