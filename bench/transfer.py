"""Secure transfer throughput: a dataset copied between two local site stores through the full
path — chunk, seal (AES-256-GCM), send over HTTP on 127.0.0.1, open, verify (BLAKE3 against
the manifest), store — beside a plain ``cp`` of the same file on the same disk.

The receiver runs in its own process (as a site would); both copies end with an fsync of the
destination, and both read a source that is already in the page cache (the manifest was built
when the dataset was registered, before the clock starts).

    python bench/transfer.py [--size-gib 2] [--chunk-mib 8] [--workers 2] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _harness import emit
from suanli.datachain.channel_http import HttpChannel
from suanli.datachain.crypto import new_key
from suanli.datachain.manifest import MiB, build_manifest, check_chunk_size
from suanli.datachain.transfer import Offer, file_chunks, send

RECEIVER = """
import sys, time
from pathlib import Path
from suanli.datachain.crypto import KeyStore
from suanli.datachain.transfer import SiteStore
from suanli.datachain.channel_http import serve
root = Path(sys.argv[1])
server = serve(SiteStore(root / "site", KeyStore(root / "keys")))
print(server.server_address[1], flush=True)
sys.stdin.read()
"""


def make_file(path: Path, size: int) -> None:
    block = os.urandom(64 * MiB)
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def receiver_start_cpu(root: Path) -> float:
    """CPU seconds a receiver spends starting (imports) and stopping, to subtract from the figure."""
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.terminate()
    proc.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_cp(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--chunk-mib", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="where both copies go (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    chunk = check_chunk_size(args.chunk_mib * MiB)
    size = int(args.size_gib * (1 << 30))
    work = Path(tempfile.mkdtemp(prefix="suanli-bench-transfer-", dir=args.dir))
    try:
        src = work / "source.bin"
        make_file(src, size)
        manifest = build_manifest(src, chunk)
        recv_root = work / "dest"
        idle_cpu_s = receiver_start_cpu(work / "idle")
        proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(recv_root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        try:
            channel = HttpChannel("127.0.0.1", port)
            offer = Offer(transfer_id=uuid.uuid4().hex, dataset="bench", manifest=manifest, key=new_key())
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            with file_chunks(src, manifest) as chunks:
                result = send(chunks, offer, channel, workers=args.workers)
            secure_s = time.perf_counter() - t0
            sender_cpu_s = time.process_time() - cpu0
            channel.close()
        finally:
            proc.terminate()
            proc.wait()
        receiver_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        receiver_cpu_s = receiver_cpu.ru_utime + receiver_cpu.ru_stime - idle_cpu_s
        assert result.root == manifest.root
        copied = recv_root / "site" / "datasets" / "bench" / "data"
        assert copied.stat().st_size == size
        copied.unlink()
        cp_s = timed_cp(src, work / "cp.bin")
        gb = size / 1e9
        out: dict[str, float | int | str] = {
            "size_gib": args.size_gib,
            "chunk_mib": args.chunk_mib,
            "workers": args.workers,
            "cpus": os.cpu_count() or 0,
            "secure_s": round(secure_s, 3),
            "cp_s": round(cp_s, 3),
            "gb_per_s": round(gb / secure_s, 3),
            "cp_gb_per_s": round(gb / cp_s, 3),
            "ratio_to_cp": round(cp_s / secure_s, 3),
            # CPU time per byte of the whole path (sender + receiver, excluding file creation):
            # with the machine's cores free, wall-clock throughput is bounded by cpus / this.
            "cpu_ns_per_byte": round((sender_cpu_s + receiver_cpu_s) / size * 1e9, 3),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        emit(out, args.json, "secure transfer vs cp (same file, same disk)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
