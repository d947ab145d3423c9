"""Logistic regression by full-batch gradient descent, with checkpoint and resume.

Deterministic: the data comes from a fixed seed and full-batch descent uses no randomness, so
an interrupted run that resumes from its checkpoint ends with exactly the weights of an
uninterrupted one (the final line prints a digest of them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import time
from pathlib import Path

FEATURES = 8
SAMPLES = 2000


def make_data(seed: int = 7) -> tuple[list[list[float]], list[float]]:
    rng = random.Random(seed)
    true_w = [rng.uniform(-2, 2) for _ in range(FEATURES)]
    xs, ys = [], []
    for _ in range(SAMPLES):
        x = [rng.gauss(0, 1) for _ in range(FEATURES)]
        z = sum(w * v for w, v in zip(true_w, x, strict=True))
        xs.append(x)
        ys.append(1.0 if rng.random() < 1 / (1 + math.exp(-z)) else 0.0)
    return xs, ys


def step(
    w: list[float], b: float, xs: list[list[float]], ys: list[float], lr: float
) -> tuple[list[float], float, float]:
    gw = [0.0] * FEATURES
    gb = 0.0
    loss = 0.0
    for x, y in zip(xs, ys, strict=True):
        z = b + sum(wi * xi for wi, xi in zip(w, x, strict=True))
        p = 1 / (1 + math.exp(-z))
        loss -= y * math.log(p + 1e-12) + (1 - y) * math.log(1 - p + 1e-12)
        for i in range(FEATURES):
            gw[i] += (p - y) * x[i]
        gb += p - y
    n = len(xs)
    return [wi - lr * g / n for wi, g in zip(w, gw, strict=True)], b - lr * gb / n, loss / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--ckpt", default=os.environ.get("SUANLI_CHECKPOINT_DIR", "checkpoints"))
    parser.add_argument("--every", type=int, default=5, help="checkpoint every N epochs")
    args = parser.parse_args()
    pause = float(os.environ.get("EPOCH_SLEEP", "0"))

    ckpt = Path(args.ckpt) / "train.json"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    w, b, start = [0.0] * FEATURES, 0.0, 0
    if ckpt.exists():
        state = json.loads(ckpt.read_text())
        w, b, start = state["w"], state["b"], state["epoch"]
        print(f"resumed from {ckpt} at epoch {start}", flush=True)
    xs, ys = make_data()
    print(
        f"training on {len(xs)} samples, epochs {start}..{args.epochs}, "
        f"GPUs: {os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}"
    )
    for epoch in range(start, args.epochs):
        w, b, loss = step(w, b, xs, ys, args.lr)
        if (epoch + 1) % args.every == 0 or epoch + 1 == args.epochs:
            tmp = ckpt.with_suffix(".tmp")
            tmp.write_text(json.dumps({"w": w, "b": b, "epoch": epoch + 1}))
            tmp.replace(ckpt)  # atomic: a crash never leaves half a checkpoint
            print(f"epoch {epoch + 1:4d}  loss {loss:.6f}  checkpoint saved", flush=True)
        if pause:
            time.sleep(pause)
    accuracy = sum(
        (1 / (1 + math.exp(-(b + sum(wi * xi for wi, xi in zip(w, x, strict=True))))) > 0.5) == (y == 1.0)
        for x, y in zip(xs, ys, strict=True)
    ) / len(xs)
    digest = hashlib.sha256(json.dumps({"w": w, "b": b}).encode()).hexdigest()[:16]
    print(f"done: accuracy {accuracy:.4f}  weights {digest}")


if __name__ == "__main__":
    main()
