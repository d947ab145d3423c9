#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for suanli's engine tests, CI and the demo.
#
#   scripts/engines/slurm.sh install   apt packages: slurm-wlm (+jwt plugin) munge slurmrestd slurmdbd mariadb-server
#   scripts/engines/slurm.sh start     munged, mariadb, slurmdbd, slurmctld, slurmd, slurmrestd (no systemd)
#   scripts/engines/slurm.sh stop      stop them all
#   scripts/engines/slurm.sh status    exit 0 when the node answers `sinfo`
#
# Needs root (and apt for install). The node is named after `hostname -s`, has the machine's CPUs,
# RealMemory=20000 MB and Gres=gpu:4 backed by character devices (symlinks to /dev/null: plain
# files would silently give jobs no GPU). Everything lives under $SUANLI_SLURM_DIR
# (default /var/lib/suanli-slurm) except the configs, which Slurm's tools read from /etc/slurm.
# slurmrestd listens on 127.0.0.1:6820 with JWT auth, as the unprivileged user `suanli-rest`.
set -euo pipefail

D="${SUANLI_SLURM_DIR:-/var/lib/suanli-slurm}"
HOST="$(hostname -s)"
CLUSTER="${SUANLI_SLURM_CLUSTER:-suanli}"
GPUS="${SUANLI_SLURM_GPUS:-4}"
REST_USER="suanli-rest"
REST_ADDR="${SUANLI_SLURMRESTD:-127.0.0.1:6820}"
ETC=/etc/slurm

say() { echo "[slurm.sh] $*" >&2; }
need_root() { [ "$(id -u)" = 0 ] || { say "needs root"; exit 2; }; }

install() {
  need_root
  if command -v slurmctld >/dev/null && command -v slurmrestd >/dev/null && command -v mariadbd >/dev/null \
     && [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/auth_jwt.so ]; then
    say "already installed: $(sinfo --version)"; return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm slurm-wlm-jwt-plugin munge slurmrestd slurmdbd mariadb-server >/dev/null
  say "installed $(sinfo --version)"
}

write_configs() {
  mkdir -p "$D"/{state,spool,log,gpus,run} "$ETC"
  for i in $(seq 0 $((GPUS - 1))); do ln -sfn /dev/null "$D/gpus/nvidia$i"; done
  [ -s "$D/jwt.key" ] || head -c 32 /dev/urandom >"$D/jwt.key"
  chown -R slurm:slurm "$D"; chmod 600 "$D/jwt.key"; chmod 755 "$D" "$D/log"
  cat >"$ETC/slurm.conf" <<EOF
# Written by suanli scripts/engines/slurm.sh: a one-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=slurm
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$D/jwt.key
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=600
# Arrays as large as suanli's (bench/submit.py --array 10000 times both).
MaxArraySize=10001
MaxJobCount=100000
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
NodeName=$HOST CPUs=$(nproc) RealMemory=20000 Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$ETC/gres.conf" <<EOF
AutoDetect=off
NodeName=$HOST Name=gpu File=$D/gpus/nvidia[0-$((GPUS - 1))]
EOF
  cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$D/jwt.key
DbdHost=localhost
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
EOF
  chown slurm:slurm "$ETC/slurmdbd.conf"; chmod 600 "$ETC/slurmdbd.conf"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  say "timed out waiting for $what"; return 1
}

start() {
  need_root
  # Daemons keep the directory they start in as their working directory: start them from one
  # that outlives the checkout (slurmrestd aborts on "getcwd failed" once a clone is removed).
  cd /
  command -v slurmctld >/dev/null || { say "Slurm is not installed: run '$0 install'"; exit 3; }
  write_configs
  # munge
  mkdir -p /run/munge; chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || { head -c 1024 /dev/urandom >/etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  # mariadb, for slurmdbd (sacct)
  mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
  if ! pgrep -x mariadbd >/dev/null; then
    (mariadbd --user=mysql --bind-address=127.0.0.1 >"$D/log/mariadb.log" 2>&1 &)
  fi
  wait_for 30 mariadb mariadb -e 'select 1'
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm'; CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  pgrep -x slurmdbd >/dev/null || slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  wait_for 60 "the node to be idle" bash -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"
  # slurmrestd: JWT only, as a user that is neither root nor SlurmUser.
  id "$REST_USER" >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin "$REST_USER"
  if command -v slurmrestd >/dev/null && ! pgrep -x slurmrestd >/dev/null; then
    (runuser -u "$REST_USER" -- env SLURM_JWT=daemon slurmrestd -a rest_auth/jwt \
      -s openapi/v0.0.38,openapi/dbv0.0.38 "$REST_ADDR" >"$D/log/slurmrestd.log" 2>&1 &)
    wait_for 15 slurmrestd bash -c "exec 3<>/dev/tcp/${REST_ADDR%:*}/${REST_ADDR#*:}"
  fi
  say "up: node $HOST ($(sinfo -h -N -o '%t %c CPUs %m MB %G')); slurmrestd on $REST_ADDR"
}

stop() {
  need_root
  scontrol shutdown >/dev/null 2>&1 || true
  for daemon in slurmrestd slurmdbd slurmd slurmctld; do
    pid=$(pgrep -x "$daemon" || true)
    [ -n "$pid" ] && kill $pid 2>/dev/null || true
  done
  if [ -f /run/mysqld/mysqld.pid ]; then kill "$(cat /run/mysqld/mysqld.pid)" 2>/dev/null || true; fi
  say "stopped (munged left running)"
}

status() { sinfo -h -N -o '%N %t %G' 2>/dev/null | grep -q . ; }

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 64 ;;
esac
