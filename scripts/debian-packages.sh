#!/usr/bin/env bash
# Make sure Debian packages a part of suanli needs are installed (the Makefile's browser,
# sandbox and containers targets).
#
# Usage: scripts/debian-packages.sh WHAT 'CHECK' PACKAGE...
#   WHAT     what they are for, as the messages name it
#   CHECK    a shell test that succeeds when everything is there already
# When CHECK fails: as root with apt-get, installs PACKAGE... (running `apt-get update` first
# only if the install fails); otherwise it says what to run and exits 0, so the tests that need
# them skip loudly (or fail under CI=true).
set -euo pipefail
what="$1" check="$2"
shift 2
if bash -c "$check" >/dev/null 2>&1; then
  echo "$what: $* installed"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" || { apt-get update -q && apt-get install -y -q "$@"; }
else
  echo "$what: missing; as root run: apt-get install -y $*" >&2
fi
