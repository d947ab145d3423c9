#!/usr/bin/env bash
# The real-GPU checks of suanli, in one go, on a machine with an NVIDIA GPU and a python3 that has
# torch but not suanli's own dependencies (no network needed):
#
#   1. installs the wheels in .whl/ (suanli's dependencies that the machine lacks, cp312
#      manylinux x86_64) into a private folder ($SITE, default /tmp/site), nothing system-wide;
#   2. runs suanli from src/ (PYTHONPATH=$SITE:src; no install, so no `suanli` console script);
#   3. lists the GPUs (nvidia-smi) and checks that the versions installed satisfy suanli's needs;
#   4. runs the gpu tests (pytest -m gpu tests/gpu): NVML against the real driver, and a job that
#      computes on the GPU through a small network;
#   5. runs the transfer benchmark (bench/transfer.py, 2 GiB) with 4, 8 and 12 workers.
#
#   bash scripts/gpu-check.sh             # from the repository's root
#
# OUT: a folder for the logs (default ./gpu-check-out): gpu-tests.log, transfer.log, and
# gpu-check.log with everything. Every step runs, with its own time limit, and the whole ends
# within BUDGET_S seconds (default 420); the exit status is non-zero if any step failed.
# PYTHON (default python3), WHEELS (default .whl) and SITE can be overridden.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
SITE="${SITE:-/tmp/site}"
OUT="${OUT:-./gpu-check-out}"
BUDGET_S="${BUDGET_S:-420}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

export PYTHON WHEELS SITE PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
unset SUANLI_FAKE_NVML

START=$SECONDS
FAILED=()
SCRATCH="$(mktemp -d /tmp/suanli-gpu-check.XXXXXX)"  # the benchmark's files; a killed run leaves them
trap 'rm -rf "$SCRATCH"' EXIT

# step NAME LIMIT_S LOG -- COMMAND...: runs COMMAND (a program or one of the functions below)
# under `timeout` (LIMIT_S, or what is left of the budget if less), appending its output to LOG
# (- for none); records a failure without stopping.
step() {
  local name=$1 limit=$2 log=$3
  shift 4
  local left=$((BUDGET_S - (SECONDS - START)))
  ((limit > left)) && limit=$left
  echo
  echo "=== $name (limit ${limit}s; $((SECONDS - START))s gone) ==="
  if ((limit < 5)); then
    echo "*** $name: not run, the time budget (${BUDGET_S}s) is spent"
    FAILED+=("$name (not run: out of time)")
    return
  fi
  local t0=$SECONDS rc
  [[ $log == - ]] && log=/dev/null
  timeout -k 10 "$limit" bash -c '"$@"' step "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  if ((rc == 0)); then
    echo "--- $name: ok in $((SECONDS - t0))s"
  else
    [[ $rc == 124 || $rc == 137 ]] && echo "*** $name: TIMED OUT after ${limit}s"
    echo "*** $name: FAILED (exit $rc) in $((SECONDS - t0))s"
    FAILED+=("$name (exit $rc)")
  fi
}

install_wheels() {
  shopt -s nullglob
  local wheels=("$WHEELS"/*.whl)
  if ((${#wheels[@]} == 0)); then
    echo "no wheels in $WHEELS/: suanli's dependencies must already be importable"
    return 0
  fi
  rm -rf "$SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" &&
    echo "installed ${#wheels[@]} wheels into $SITE"
}

show_machine() {
  "$PYTHON" -c 'import sys; print("python", sys.version.split()[0], "at", sys.executable)'
  nproc
  nvidia-smi -L || echo "(nvidia-smi failed)"
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,temperature.gpu,ecc.mode.current \
    --format=csv || true
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())' ||
    echo "(torch is not importable)"
  # nvidia-smi and torch are only shown: the tests decide.
  nvidia-smi -L >/dev/null
}

# What suanli needs (pyproject.toml) and what those need in turn, against what is importable.
check_versions() {
  "$PYTHON" - <<'EOF' || return
import importlib.metadata as md
import os
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def wanted(req: Requirement, extras: frozenset[str]) -> bool:
    """Whether ``req`` applies here, for a package asked for with ``extras``."""
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""})


with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
needs = project["dependencies"] + project["optional-dependencies"]["nvidia"]
todo = [(req, "suanli") for req in map(Requirement, needs) if wanted(req, frozenset())]
seen, problems = set(), 0
while todo:
    req, wanted_by = todo.pop(0)
    name, extras = canonicalize_name(req.name), frozenset(req.extras)
    if (name, extras) in seen:
        continue
    seen.add((name, extras))
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        print(f"MISSING  {req} for {wanted_by}")
        problems += 1
        continue
    carried = "(wheel)" if str(dist.locate_file("")).startswith(os.environ["SITE"]) else "(this machine's)"
    ok = req.specifier.contains(dist.version, prereleases=True)
    problems += not ok
    print(f"{'ok' if ok else 'MISMATCH':8} {name} {dist.version} {carried}, {req.specifier or 'any'} for {wanted_by}")
    todo += [(child, name) for child in map(Requirement, dist.requires or []) if wanted(child, extras)]
sys.exit(1 if problems else 0)
EOF
  "$PYTHON" -c 'import suanli.server.app, suanli.cli, suanli.agent.agent, suanli.datachain.transfer; print("suanli imports from", suanli.__file__)'
}

export -f install_wheels show_machine check_versions

pytest_args=(-q -rA -m gpu tests/gpu -p no:cacheprovider)
if "$PYTHON" -c 'import pytest_timeout' 2>/dev/null; then
  # Only the plugin the suite's settings use; none of the others this machine may have.
  export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
  pytest_args+=(-p pytest_timeout --timeout=120)
fi

main() {
  echo "suanli GPU check: $(date -u +%FT%TZ) on $(uname -n), logs in $OUT"
  rm -f "$OUT/gpu-tests.log" "$OUT/transfer.log"
  step "install wheels" 90 - -- install_wheels
  step "machine" 30 - -- show_machine
  step "dependency versions" 30 - -- check_versions
  step "gpu tests" 200 "$OUT/gpu-tests.log" -- "$PYTHON" -m pytest "${pytest_args[@]}"
  for workers in 4 8 12; do
    step "transfer benchmark, $workers workers" 110 "$OUT/transfer.log" -- \
      "$PYTHON" bench/transfer.py --size-gib 2 --repeat 3 --workers "$workers" --json --dir "$SCRATCH"
    rm -rf "${SCRATCH:?}"/*
  done
  echo
  echo "=== done in $((SECONDS - START))s; logs in $OUT ==="
  if ((${#FAILED[@]})); then
    printf '*** failed: %s\n' "${FAILED[@]}"
    return 1
  fi
  echo "every step passed"
}

main 2>&1 | tee "$OUT/gpu-check.log"
exit "${PIPESTATUS[0]}"
