#!/usr/bin/env bash
# A one-node Ray cluster on this machine, for suanli's engine tests, CI and the demo.
#
#   scripts/engines/ray.sh install   pip install the 'ray' extra (ray[default]) into the venv
#   scripts/engines/ray.sh start     ray start --head: 2 CPUs, 4 × GPU_fake, dashboard on 127.0.0.1:8265
#   scripts/engines/ray.sh stop      ray stop
#   scripts/engines/ray.sh status    exit 0 when the Job Submission API answers
#
# Ray is started from the venv (VENV, default .venv) so that jobs get the venv's python: started
# from elsewhere, a job fails with "No module named ray". No root needed.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${VENV:-.venv}"
BIN="$VENV/bin"
CPUS="${SUANLI_RAY_CPUS:-2}"
GPUS="${SUANLI_RAY_GPUS:-4}"
PORT="${SUANLI_RAY_DASHBOARD_PORT:-8265}"
URL="http://127.0.0.1:$PORT"

say() { echo "[ray.sh] $*" >&2; }

answers() { "$BIN/python" - "$URL" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/api/version", timeout=2).read()
except Exception:
    sys.exit(1)
EOF
}

case "${1:-}" in
  install)
    if "$BIN/python" -c "import ray.job_submission, aiohttp" 2>/dev/null; then
      say "already installed: ray $("$BIN/python" -c 'import ray; print(ray.__version__)')"
    else
      "$BIN/python" -m pip install --quiet -e '.[ray]'
      say "installed ray $("$BIN/python" -c 'import ray; print(ray.__version__)')"
    fi
    ;;
  start)
    [ -x "$BIN/ray" ] || { say "Ray is not installed in $VENV: run '$0 install'"; exit 3; }
    if answers; then say "already up at $URL"; exit 0; fi
    # The venv first on PATH: jobs' `python` and `ray` are the venv's.
    PATH="$(cd "$BIN" && pwd):$PATH" RAY_USAGE_STATS_ENABLED=0 "$BIN/ray" start --head \
      --num-cpus="$CPUS" --num-gpus=0 --resources="{\"GPU_fake\": $GPUS}" \
      --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 --dashboard-port="$PORT" \
      --disable-usage-stats >/tmp/suanli-ray-start.log 2>&1 || { cat /tmp/suanli-ray-start.log >&2; exit 1; }
    for _ in $(seq 1 300); do answers && break; sleep 0.1; done
    answers || { say "the dashboard did not answer at $URL"; exit 1; }
    say "up: Job Submission API at $URL ($CPUS CPUs, $GPUS × GPU_fake)"
    ;;
  stop)
    [ -x "$BIN/ray" ] && "$BIN/ray" stop >/dev/null 2>&1 || true
    say "stopped"
    ;;
  status) answers ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 64 ;;
esac
