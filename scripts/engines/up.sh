#!/usr/bin/env bash
# Install and start the real engines (Slurm, Ray) that the engine tests and `suanli up --demo
# --engines` use, when this machine can: root with apt-get (CI always). Otherwise say loudly what
# is skipped. Under CI=true a missing engine is an error, never a skip.
#
#   ENGINES=auto  (default) install + start when root with apt; skip loudly otherwise
#   ENGINES=no    skip both (the engine tests then skip, or fail under CI)
#   ENGINES=yes   insist: fail when they cannot be installed or started
set -uo pipefail
cd "$(dirname "$0")/../.."
MODE="${ENGINES:-auto}"
CI_RUN=false; case "${CI:-}" in 1|true|TRUE|yes) CI_RUN=true; MODE=yes ;; esac

banner() { printf '\n\033[1;33m%s\033[0m\n%s\n\n' "!!! $1" "$2" >&2; }

if [ "$MODE" = no ]; then
  banner "ENGINES=no: Slurm and Ray are not started" "The real-engine tests (pytest -m engine) will be SKIPPED."
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  if [ "$MODE" = yes ]; then
    echo "[engines] Slurm and Ray need root with apt-get here (CI=$CI_RUN); cannot start them" >&2; exit 1
  fi
  banner "NOT ROOT WITH APT: Slurm and Ray are not installed or started" \
    "The real-engine tests (pytest -m engine: tests/engines, Slurm/Ray in tests/contract) will be SKIPPED.
Run as root on Debian/Ubuntu, or start them yourself: scripts/engines/slurm.sh install && scripts/engines/slurm.sh start;
scripts/engines/ray.sh install && scripts/engines/ray.sh start."
  exit 0
fi
status=0
start=$(date +%s)
if scripts/engines/slurm.sh install && scripts/engines/slurm.sh start; then
  echo "[engines] Slurm up after $(( $(date +%s) - start )) s" >&2
else
  status=1; banner "SLURM DID NOT START" "See /var/lib/suanli-slurm/log/. Its tests will fail under CI, skip otherwise."
fi
start=$(date +%s)
if scripts/engines/ray.sh install && scripts/engines/ray.sh start; then
  echo "[engines] Ray up after $(( $(date +%s) - start )) s" >&2
else
  status=1; banner "RAY DID NOT START" "See /tmp/suanli-ray-start.log. Its tests will fail under CI, skip otherwise."
fi
if [ "$MODE" = yes ]; then exit $status; fi
exit 0
