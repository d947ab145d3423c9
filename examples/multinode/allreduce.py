"""A tiny all-reduce over TCP: every rank sends rank+1 to rank 0, which prints the sum."""

from __future__ import annotations

import os
import socket
import time

rank = int(os.environ["SUANLI_NODE_RANK"])
size = int(os.environ["SUANLI_NUM_NODES"])
addr = os.environ["SUANLI_MASTER_ADDR"]
port = int(os.environ["SUANLI_MASTER_PORT"])
print(f"rank {rank}/{size}: GPUs {os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)

if rank == 0:
    with socket.create_server((addr, port)) as server:
        total = 1
        for _ in range(size - 1):
            conn, _ = server.accept()
            with conn:
                total += int(conn.recv(64).decode())
    expected = size * (size + 1) // 2
    print(f"rank 0: sum of ranks+1 = {total} (expected {expected})", flush=True)
    raise SystemExit(0 if total == expected else 1)

deadline = time.monotonic() + 60
while True:
    try:
        with socket.create_connection((addr, port), timeout=5) as conn:
            conn.sendall(str(rank + 1).encode())
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
print(f"rank {rank}: sent {rank + 1}", flush=True)
