"""Secure transfer throughput: a dataset copied between two local site stores through the full
path — chunk, seal (AES-256-GCM), send, open, verify (BLAKE3 against the manifest), store —
beside a plain ``cp`` of the same file on the same disk.

``--path relay`` (the default) measures site → relay → site, as copies between sites go: the
source pushes sealed chunks to the front desk's relay (a real ``suanli`` front desk in its own
process, ``/api/v1/agents/relay``, each side with its site's token), and the destination, in a
third process, pulls them, opens, verifies and stores them. The front desk's per-agent request
rate limit is off for the run (``SUANLI_AGENT_RATE_LIMIT=0``): this measures the path, not the
limiter. ``--path direct`` measures the sender straight into the receiver's HTTP channel.

The receiver runs in its own process (as a site would), started afresh for every round. Both
copies are durable when their clock stops: the transfer's ``finish`` fsyncs the file and its
directories, and ``cp`` is followed by an fsync of the file and of its directory. The manifest
is built before the clock starts, as it is when a dataset is registered.

Each round times one transfer and one ``cp``, alternating which goes first (the default 4 rounds
put each first twice). Each timed ``cp`` follows an untimed one, so that its page-cache writes
land in memory just freed: on this VM, memory left idle for a few seconds is slow to touch again,
and ``cp`` would otherwise run at a third of its speed. The comparison is thus cp's best case.
The figures are the medians over ``--repeat`` rounds, with every round's figure beside them,
because the machine this runs on is shared; the 1-minute load average is printed before and
after. By default the source is in the page cache for both (read once before each copy): the
target (``gb_per_s`` >= 1 and >= 50 % of ``cp_gb_per_s``) is defined on that.
``--cold`` drops the page cache before each copy instead (root only), so both read from disk.

    python bench/transfer.py [--path relay|direct] [--size-gib 2] [--chunk-mib 8] [--workers N]
                             [--repeat 4] [--cold] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from _harness import emit
from suanli.agent.relay_link import HttpRelayLink
from suanli.datachain.channel_http import HttpChannel
from suanli.datachain.crypto import new_key
from suanli.datachain.manifest import Manifest, MiB, build_manifest, check_chunk_size
from suanli.datachain.relay import RelayChannel
from suanli.datachain.sender import file_chunks, send
from suanli.datachain.transfer import DEFAULT_WORKERS, Offer

#: The receiving site's token for this run (every channel request carries it).
TOKEN = secrets.token_urlsafe(24)

RECEIVER = """
import os, sys, time
from pathlib import Path
from suanli.datachain.crypto import KeyStore
from suanli.datachain.site_store import SiteStore
from suanli.datachain.channel_http import serve
root = Path(sys.argv[1])
server = serve(SiteStore(root / "site", KeyStore(root / "keys")), os.environ["SUANLI_BENCH_TOKEN"])
print(server.server_address[1], flush=True)
sys.stdin.read()
"""


#: The front desk of a two-site network: it registers the dataset (general, no PI), then makes a
#: decided copy to tianjin and marks it running for each line read (what the runner will do).
FRONT_DESK = """
import json, sys, threading, time
from pathlib import Path
import uvicorn
from suanli.app.control import ControlPlane
from suanli.app.settings import Settings
from suanli.core.network import parse_network
from suanli.core.states import TransferState
from suanli.sdk import Client
from suanli.server.app import create_app
from suanli.store.models import DataTransfer
home, src, chunk_mib = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
control = ControlPlane(Settings(home=home, port=0))
control.migrate()
control.apply_network(parse_network(
    "regions: [beijing, tianjin]\\nsites:\\n"
    "  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: b1, cpus: 1, memory: 1}]}\\n"
    "  - {name: tianjin, region: tianjin, zone: mainland, nodes: [{name: t1, cpus: 1, memory: 1}]}\\n"
    "tenants: [{name: bench, home_region: beijing}]\\n"
))
server = uvicorn.Server(uvicorn.Config(create_app(control), host="127.0.0.1", port=0, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.01)
url = "http://127.0.0.1:%d" % server.servers[0].sockets[0].getsockname()[1]
client = Client(url, token=control.admin_token_path.read_text().strip())
general = {"level": "general", "sub_grade": 1, "pi_count": 0, "categories": ["marketing"]}
client.register_dataset(name="bench", owner="bench", home_site="beijing", path=src, chunk_mib=chunk_mib,
                        classification=general)
tokens = {s: control.site_token_path(s).read_text().strip() for s in ("beijing", "tianjin")}
print(json.dumps({"url": url, "tokens": tokens}), flush=True)
for _ in sys.stdin:
    tid = client.create_transfer("bench", "tianjin")["id"]
    with control.db.session() as s:
        s.get(DataTransfer, tid).state = TransferState.RUNNING
    print(tid, flush=True)
"""

#: The destination site's agent: pulls the transfer from the relay into its own store.
RELAY_RECEIVER = """
import json, sys
from pathlib import Path
from suanli.agent.relay_link import HttpRelayLink
from suanli.datachain.crypto import KeyStore
from suanli.datachain.manifest import Manifest
from suanli.datachain.relay import receive
from suanli.datachain.site_store import SiteStore
from suanli.datachain.transfer import Offer
print("ready", flush=True)
doc = json.loads(sys.stdin.readline())
root = Path(doc["root"])
store = SiteStore(root / "site", KeyStore(root / "keys"))
offer = Offer(doc["tid"], "bench", Manifest.model_validate(doc["manifest"]), bytes.fromhex(doc["key"]))
link = HttpRelayLink(doc["url"], doc["token"])
print(receive(store, offer, link, poll_s=5), flush=True)
link.close()
"""


def make_file(path: Path, size: int) -> None:
    block = os.urandom(64 * MiB)
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_receiver(root: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SUANLI_BENCH_TOKEN": TOKEN},
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def stop_receiver(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait()


def receiver_idle_cpu(root: Path) -> float:
    """CPU seconds a receiver spends starting (imports) and stopping, to subtract from the figure."""
    before = children_cpu()
    proc, _ = start_receiver(root)
    stop_receiver(proc)
    return children_cpu() - before


def prepare_cache(src: Path, cold: bool) -> None:
    """Warm: the source is in the page cache (read once). Cold: nothing is (root only)."""
    if cold:
        subprocess.run(["sync"], check=True)
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        except OSError as exc:
            raise SystemExit(f"--cold needs to drop the page cache (root on Linux): {exc}") from None
        return
    with src.open("rb", buffering=0) as f:
        while f.read(64 * MiB):
            pass


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed_secure(src: Path, manifest: Manifest, root: Path, workers: int, idle_cpu_s: float) -> tuple[float, float]:
    """(seconds, CPU seconds of sender and receiver) for one transfer through the full path."""
    before = children_cpu()
    proc, port = start_receiver(root)
    try:
        channel = HttpChannel("127.0.0.1", port, TOKEN)
        offer = Offer(transfer_id=uuid.uuid4().hex, dataset="bench", manifest=manifest, key=new_key())
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        with file_chunks(src, manifest) as chunks:
            result = send(chunks, offer, channel, workers=workers)
        seconds = time.perf_counter() - t0
        sender_cpu_s = time.process_time() - cpu0
        channel.close()
    finally:
        stop_receiver(proc)
    receiver_cpu_s = children_cpu() - before - idle_cpu_s
    assert result.root == manifest.root
    copied = root / "site" / "datasets" / "bench" / "data"
    assert copied.stat().st_size == manifest.size
    shutil.rmtree(root)
    return seconds, sender_cpu_s + max(receiver_cpu_s, 0.0)


class FrontDesk:
    """A real front desk in its own process, holding the bench dataset; ``running()`` makes a
    decided copy to tianjin, marked running, and returns its id."""

    def __init__(self, home: Path, src: Path, chunk_mib: int) -> None:
        env = {**os.environ, "SUANLI_AGENT_RATE_LIMIT": "0", "SUANLI_RATE_LIMIT": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FRONT_DESK, str(home), str(src), str(chunk_mib)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        doc = json.loads(self.proc.stdout.readline())
        self.url: str = doc["url"]
        self.tokens: dict[str, str] = doc["tokens"]

    def running(self) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("next\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def cpu_s(self) -> float:
        return float(sum(psutil.Process(self.proc.pid).cpu_times()[:2]))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def timed_relay(src: Path, manifest: Manifest, root: Path, workers: int, desk: FrontDesk) -> tuple[float, float]:
    """(seconds, CPU seconds of sender, relay and receiver) for one copy site → relay → site.
    The clock stops when the destination has finished (durable) and reported its root."""
    tid = desk.running()
    offer = Offer(transfer_id=tid, dataset="bench", manifest=manifest, key=new_key())
    before, desk_before = children_cpu(), desk.cpu_s()
    proc = subprocess.Popen(
        [sys.executable, "-c", RELAY_RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    doc = {
        "root": str(root),
        "tid": tid,
        "manifest": manifest.model_dump(),
        "key": offer.key.hex(),  # to the destination agent only; the relay never sees it
        "url": desk.url,
        "token": desk.tokens["tianjin"],
    }
    link = HttpRelayLink(desk.url, desk.tokens["beijing"])
    proc.stdout.readline()  # "ready": its imports are done before the clock starts
    try:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        proc.stdin.write(json.dumps(doc) + "\n")
        proc.stdin.flush()
        with file_chunks(src, manifest) as chunks:
            result = send(chunks, offer, RelayChannel(link, poll_s=5), workers=workers)
        received = proc.stdout.readline().strip()
        seconds = time.perf_counter() - t0
        sender_cpu_s = time.process_time() - cpu0
    finally:
        link.close()
        proc.wait(timeout=60)
    assert result.root == manifest.root == received
    copied = root / "site" / "datasets" / "bench" / "data"
    assert copied.stat().st_size == manifest.size
    shutil.rmtree(root)
    cpu_s = sender_cpu_s + (children_cpu() - before) + (desk.cpu_s() - desk_before)
    return seconds, cpu_s


def timed_cp(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    fsync_path(dst)
    fsync_path(dst.parent)
    seconds = time.perf_counter() - t0
    dst.unlink()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", choices=("relay", "direct"), default="relay", help="site → relay → site, or direct")
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--chunk-mib", type=int, default=8)
    ap.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    ap.add_argument("--repeat", type=int, default=4, help="rounds of (transfer, cp); the figures are medians")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each copy (root only)")
    ap.add_argument("--dir", type=Path, default=None, help="where both copies go (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    chunk = check_chunk_size(args.chunk_mib * MiB)
    size = int(args.size_gib * (1 << 30))
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="suanli-bench-transfer-", dir=args.dir))
    try:
        src = work / "source.bin"
        make_file(src, size)
        manifest = build_manifest(src, chunk)
        idle_cpu_s = receiver_idle_cpu(work / "idle")
        desk = FrontDesk(work / "front-desk", src, args.chunk_mib) if args.path == "relay" else None
        secure: list[float] = []
        cpu: list[float] = []
        plain: list[float] = []
        for r in range(max(1, args.repeat)):
            order = ["secure", "cp"] if r % 2 == 0 else ["cp", "secure"]
            for which in order:
                if which == "cp":
                    # Untimed: cp's page-cache writes then land in memory the kernel has just
                    # freed. On this VM, memory left idle a few seconds is slow to touch again
                    # (cp then runs at a third of its speed), so this is cp's best case.
                    timed_cp(src, work / "cp.bin")
                prepare_cache(src, args.cold)
                if which == "secure" and desk is not None:
                    seconds, cpu_s = timed_relay(src, manifest, work / f"dest-{r}", args.workers, desk)
                    secure.append(seconds)
                    cpu.append(cpu_s)
                elif which == "secure":
                    seconds, cpu_s = timed_secure(src, manifest, work / f"dest-{r}", args.workers, idle_cpu_s)
                    secure.append(seconds)
                    cpu.append(cpu_s)
                else:
                    plain.append(timed_cp(src, work / "cp.bin"))
        gb = size / 1e9
        secure_s, cp_s = statistics.median(secure), statistics.median(plain)
        gb_per_s, cp_gb_per_s = gb / secure_s, gb / cp_s
        if desk is not None:
            desk.close()
        out: dict[str, float | int | str] = {
            "path": "site → relay → site" if args.path == "relay" else "site → site (direct HTTP)",
            "size_gib": args.size_gib,
            "chunk_mib": args.chunk_mib,
            "workers": args.workers,
            "cpus": os.cpu_count() or 0,
            "cache": "cold" if args.cold else "warm",
            "repeat": len(secure),
            "secure_s": round(secure_s, 3),
            "cp_s": round(cp_s, 3),
            "gb_per_s": round(gb_per_s, 3),
            "cp_gb_per_s": round(cp_gb_per_s, 3),
            "ratio_to_cp": round(gb_per_s / cp_gb_per_s, 3),
            "gb_per_s_runs": " ".join(f"{gb / s:.3f}" for s in secure),
            "cp_gb_per_s_runs": " ".join(f"{gb / s:.3f}" for s in plain),
            # CPU time per byte of the whole path (sender + receiver, and the relay's front desk
            # on the relay path; excluding file creation and the direct receiver's start-up):
            # with the machine's cores free, wall-clock throughput is bounded by about cpus / this.
            "cpu_ns_per_byte": round(statistics.median(cpu) / size * 1e9, 3),
            "load_avg_1m_before": round(load_before, 2),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "meets_target": "yes" if gb_per_s >= 1.0 and gb_per_s >= 0.5 * cp_gb_per_s else "no",
        }
        emit(out, args.json, f"secure transfer ({out['path']}) vs cp (same file, same disk)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
