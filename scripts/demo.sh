#!/usr/bin/env bash
# `make demo`: start a three-site network on this machine, run jobs on it, leave it running.
# DEMO_EXIT=1 stops the network after the tour (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${SUANLI_PORT:-8731}"
export SUANLI_SERVER="http://127.0.0.1:${PORT}"
HOME_DIR="${SUANLI_HOME:-$HOME/.suanli}"
mkdir -p "$HOME_DIR"
LOG="$HOME_DIR/demo-up.log"

step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
su() { "$BIN/suanli" "$@"; }

step "Starting the demo network: suanli up --demo --port ${PORT}  (log: ${LOG})"
"$BIN/suanli" up --demo --port "$PORT" >"$LOG" 2>&1 &
UP=$!
cleanup() { kill -INT "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 200); do
  if ! kill -0 "$UP" 2>/dev/null; then echo "suanli up stopped:"; cat "$LOG"; exit 1; fi
  if su sites --json 2>/dev/null | grep -q '"online": *true'; then break; fi
  sleep 0.1
done
cat "$LOG"

step "Three sites, one network"
run "$BIN/suanli" sites

step "Run a job and follow its output"
run "$BIN/suanli" submit examples/hello.yaml --follow

step "Two jobs that each want all 16 H100 of tianjin-gaocun: the second waits, and says why"
BIG1=$(su submit examples/big.yaml --name big-1 --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
BIG2=$(su submit examples/big.yaml --name big-2 --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sleep 1
run "$BIN/suanli" jobs
run "$BIN/suanli" status "$BIG2"

step "A job no site can ever hold is refused at once"
run "$BIN/suanli" submit examples/too-big.yaml || true

step "Cancel big-1: big-2 takes the GPUs; then cancel big-2 too"
run "$BIN/suanli" cancel "$BIG1"
sleep 1
run "$BIN/suanli" jobs
run "$BIN/suanli" cancel "$BIG2"

step "A training job that checkpoints (tianjin-gaocun, one H100 slot); follow it to the end"
TRAIN=$(su submit examples/train.yaml --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
run "$BIN/suanli" logs "$TRAIN" --follow

step "A two-node gang at ningxia"
run "$BIN/suanli" submit examples/multinode.yaml --follow

step "The data chain: a graded dataset at beijing, read by a job at ningxia"
NOTES="$HOME_DIR/notes.bin"
if ! su data show notes >/dev/null 2>&1; then
  head -c 32M /dev/urandom >"$NOTES"
  run "$BIN/suanli" data register notes --path "$NOTES" --site beijing --owner bj-ai --pi 200000 --category marketing
fi
run "$BIN/suanli" data check notes --to ningxia
DIGEST=notes-digest
SPEC=examples/read-data.yaml
if su data show "$DIGEST" >/dev/null 2>&1; then  # from an earlier run: the output needs a new name
  DIGEST="notes-digest-$(date +%s)"
  SPEC="$HOME_DIR/read-data.yaml"
  sed "s/dataset: notes-digest/dataset: $DIGEST/" examples/read-data.yaml >"$SPEC"
fi
READ=$(su submit "$SPEC" --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
run "$BIN/suanli" logs "$READ" --follow
run "$BIN/suanli" data transfers
run "$BIN/suanli" data show "$DIGEST"
run "$BIN/suanli" download "$READ" -o "$HOME_DIR/$DIGEST"   # the job's output folder, unpacked
if [ "$(cat "$HOME_DIR/$DIGEST/sha256.txt")" = "$(sha256sum "$NOTES" | cut -c1-64)" ]; then
  echo "the downloaded output holds the sha256 of the notes at beijing: the copy to ningxia was exact"
else
  echo "error: the downloaded output does not match the notes at beijing" >&2
  exit 1
fi
run "$BIN/suanli" ledger verify --wait 10   # signed by the log and cosigned by the demo's witness

step "Serve a model: the test model behind the front desk, called with curl (OpenAI-compatible)"
su service stop tiny-chat >/dev/null 2>&1 || true  # from an earlier run
run "$BIN/suanli" serve examples/serve.yaml
for _ in $(seq 1 300); do
  if su service status tiny-chat --json | grep -q '"ready": *1'; then break; fi
  sleep 0.2
done
run "$BIN/suanli" service status tiny-chat
APP=$(su token create --name demo-app --scope serve:invoke --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
CHAT='{"model": "tiny-chat", "messages": [{"role": "user", "content": "where is the gpu"}], "max_tokens": 8}'
run curl -sS --fail-with-body "${SUANLI_SERVER}/v1/chat/completions" -H "Authorization: Bearer ${APP}" \
  -H 'Content-Type: application/json' -d "$CHAT"
echo
STREAM='{"model": "tiny-chat", "messages": [{"role": "user", "content": "where is the gpu"}], "max_tokens": 4, "stream": true}'
run curl -sSN --fail-with-body "${SUANLI_SERVER}/v1/chat/completions" -H "Authorization: Bearer ${APP}" \
  -H 'Content-Type: application/json' -d "$STREAM"
run curl -sS --fail-with-body "${SUANLI_SERVER}/serve/bj-ai/tiny-chat/v1/models" -H "Authorization: Bearer ${APP}"
echo
run "$BIN/suanli" service stop tiny-chat

step "Every job, and where it ran"
run "$BIN/suanli" jobs --all
run "$BIN/suanli" status "$TRAIN"

step "The bill: metered by the sites, priced by their time-of-use tariffs"
run "$BIN/suanli" usage --by job
run "$BIN/suanli" invoice bj-ai "$(TZ=Asia/Shanghai date +%Y-%m)"

if [ "${DEMO_EXIT:-0}" = "1" ]; then
  step "Stopping the network (DEMO_EXIT=1)"
  exit 0
fi
step "The network is running at ${SUANLI_SERVER}"
echo "In another terminal:  source .venv/bin/activate && suanli jobs"
echo "API docs:             ${SUANLI_SERVER}/docs"
echo "Ctrl-C stops the network and every job it started."
wait "$UP"
