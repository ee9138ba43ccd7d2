#!/usr/bin/env bash
# scripts/slurm_ci.sh — the project's one-node Slurm "cluster" for its tests (tests/slurm.rs) on Debian 12 (bookworm),
# run as root, no systemd; adapted from ../shared/slurm/up.sh (accounting off by default: SLURM_ACCT=0).
# Tested on: Debian 12 under gVisor (runsc), 2 cores, slurm-wlm 22.05.8-4+deb12u3, munge 0.5.15,
#            MariaDB 10.11.19 (only with SLURM_ACCT=1).
#
#   slurm_ci.sh up       install (if needed) + write config + start munged, [mariadb, slurmdbd,] slurmctld, slurmd
#   slurm_ci.sh down     cancel all jobs, stop every daemon this script started (by PID file only)
#   slurm_ci.sh status   show daemons / sinfo / squeue
#
# Env knobs:
#   SLURM_ACCT=1        (default 0) 1: also bring up MariaDB + slurmdbd so `sacct` works.
#                       SLURM_ACCT=0: AccountingStorageType=none -> sacct prints
#                       "Slurm accounting storage is disabled" (rc 1); jobcomp/filetxt log still written.
#   SLURM_CI_DIR=/tmp/slurm-ci   state, spool, logs, pid files (wiped on `up` unless SLURM_KEEP_STATE=1)
#   SLURM_INSTALL=1     (default 1) apt-get install missing packages.
#   SLURM_CPUS=N        CPUs to declare for the node (default: nproc)
#   SLURM_CGROUP=1      (default 0) proctrack/cgroup + task/cgroup,task/affinity (+ cgroup.conf). Worked
#                       here (gVisor, cgroup v1 hybrid) and removes the ~3 s end-of-job tail of
#                       proctrack/pgid, but needs a writable /sys/fs/cgroup; the default needs no cgroups.
#
# Config goes to /etc/slurm/slurm.conf (+ slurmdbd.conf), the default path, so sbatch/srun/squeue/
# sacct/scontrol need no SLURM_CONF in the test's environment.
set -euo pipefail

D=${SLURM_CI_DIR:-/tmp/slurm-ci}
ACCT=${SLURM_ACCT:-0}
H=$(hostname -s)
CPUS=${SLURM_CPUS:-$(nproc)}
ETC=/etc/slurm
log() { echo "[slurm_up $(date +%T)] $*" >&2; }

wait_for() {  # wait_for SECONDS cmd...   -> 0 when cmd succeeds, 1 on timeout
  local t=$1; shift; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_pidfile() {  # stop_pidfile FILE NAME  -> TERM, wait 15 s, KILL; only that PID
  local f=$1 n=$2 p
  [ -s "$f" ] || return 0
  p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null; then
    log "stopping $n (pid $p)"; kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 75); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && { log "$n did not exit, KILL"; kill -KILL "$p" 2>/dev/null || true; }
  fi
  rm -f "$f"
}

install_pkgs() {
  local pkgs="slurmctld slurmd slurm-client munge"
  if [ "$ACCT" = 1 ]; then pkgs="$pkgs slurmdbd mariadb-server"; fi
  local missing=""
  for p in $pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  [ "${SLURM_INSTALL:-1}" = 1 ] || { log "missing packages:$missing"; exit 1; }
  log "apt-get install$missing"
  apt-get update -qq
  # policy-rc.d in the image returns 101, so postinst does not try to start the services.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

write_conf() {
  mkdir -p "$ETC" "$D"/{spool/ctld,spool/d,log,run}
  cat > "$ETC/slurm.conf" <<EOF
# one-node CI cluster, written by scripts/slurm_ci.sh
ClusterName=ci
SlurmctldHost=$H
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# requeued jobs get BeginTime = now + cred_expire + 1 (default 120 s -> 121 s wait; slurm.conf(5) documents this)
AuthInfo=cred_expire=5
MpiDefault=none
$(if [ "${SLURM_CGROUP:-0}" = 1 ]; then echo "ProctrackType=proctrack/cgroup"; echo "TaskPlugin=task/cgroup,task/affinity"; else
echo "# pgid, not linuxproc: linuxproc loses background children once the batch shell exits (orphans survive)"
echo "ProctrackType=proctrack/pgid"; echo "TaskPlugin=task/none"; fi)
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$D/spool/ctld
SlurmdSpoolDir=$D/spool/d
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
EOF
  if [ "$ACCT" = 1 ]; then
    cat >> "$ETC/slurm.conf" <<EOF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$H
EOF
  else
    echo "AccountingStorageType=accounting_storage/none" >> "$ETC/slurm.conf"
  fi
  cat >> "$ETC/slurm.conf" <<EOF
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.log
SchedulerType=sched/backfill
# default batch_sched_delay=3 -> ~3 s submit-to-start; sched_interval/bf_interval 60/30 s -> jobs whose
# BeginTime passed (requeue) wait up to 30 s. These make submit-to-start <= ~1 s.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
MinJobAge=3600
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=$H CPUs=$CPUS RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if [ "${SLURM_CGROUP:-0}" = 1 ]; then
    printf 'CgroupPlugin=autodetect\nConstrainCores=yes\nConstrainRAMSpace=no\n' > "$ETC/cgroup.conf"
  else rm -f "$ETC/cgroup.conf"; fi
  if [ "$ACCT" = 1 ]; then
    cat > "$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=$H
DbdPort=6819
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=root
EOF
    chmod 600 "$ETC/slurmdbd.conf"   # slurmdbd refuses a world-readable conf
  fi
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then log "munged already running, reusing it"; return; fi
  if [ ! -s /etc/munge/munge.key ]; then   # the munge postinst normally creates it
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 755 /run/munge
  runuser -u munge -- /usr/sbin/munged        # daemonizes; writes /run/munge/munged.pid
  wait_for 10 bash -c 'munge -n | unmunge' || { log "munged failed"; exit 1; }
  cp /run/munge/munged.pid "$D/run/munged.pid"   # marks it as ours for `down`
}

start_mariadb() {
  if mariadb-admin ping >/dev/null 2>&1; then log "mariadb already running, reusing it"; else
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
    nohup /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
      --pid-file=/run/mysqld/mysqld.pid --skip-networking >"$D/log/mariadb.out" 2>&1 &
    echo $! > "$D/run/mariadbd.pid"
    wait_for 30 mariadb-admin ping || { log "mariadb failed"; cat "$D/log/mariadb.out" >&2; exit 1; }
  fi
  # fresh accounting DB each bring-up (job ids restart at 1 with a fresh StateSaveLocation)
  if [ "${SLURM_KEEP_STATE:-0}" != 1 ]; then mariadb -e 'DROP DATABASE IF EXISTS slurm_acct_db'; fi
}

up() {
  install_pkgs
  if pid_alive "$D/run/slurmctld.pid"; then log "already up"; return 0; fi
  if [ "${SLURM_KEEP_STATE:-0}" != 1 ]; then rm -rf "$D/spool" "$D/log"; fi
  write_conf
  start_munge
  if [ "$ACCT" = 1 ]; then
    start_mariadb
    slurmdbd                                   # daemonizes; PidFile above
    wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/6819" || { log "slurmdbd failed"; tail -20 "$D/log/slurmdbd.log" >&2; exit 1; }
    sacctmgr -i add cluster ci >/dev/null 2>&1 || true   # idempotent; slurmctld then registers to it
  fi
  slurmctld                                    # daemonizes (also forks slurmscriptd)
  slurmd
  wait_for 30 bash -c "scontrol ping | grep -q UP" || { log "slurmctld not up"; tail -20 "$D/log/slurmctld.log" >&2; exit 1; }
  if ! wait_for 30 bash -c "sinfo -h -n $H -o %T | grep -qx idle"; then
    scontrol update nodename="$H" state=resume || true
    wait_for 10 bash -c "sinfo -h -n $H -o %T | grep -qx idle" || { log "node not idle"; sinfo >&2; tail -20 "$D/log/slurmd.log" >&2; exit 1; }
  fi
  log "up: $(sinfo -h -o '%P %a %D %T %N' | tr '\n' ' ')"
}

down() {
  if pid_alive "$D/run/slurmctld.pid"; then
    local ids; ids=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${ids// }" ]; then
      log "cancelling jobs: $ids"; scancel $ids 2>/dev/null || true
      wait_for 30 bash -c '[ -z "$(squeue -h 2>/dev/null)" ]' || log "jobs still listed after 30 s"
    fi
  fi
  # pid files vanish when the daemons exit, so read them before `scontrol shutdown`
  local keep; keep=$(mktemp -d)
  for n in slurmctld slurmd; do if [ -s "$D/run/$n.pid" ]; then cp "$D/run/$n.pid" "$keep/$n.pid"; fi; done
  if pid_alive "$D/run/slurmctld.pid"; then scontrol shutdown >/dev/null 2>&1 || true; fi  # stops slurmctld + slurmd, saves state
  stop_pidfile "$keep/slurmd.pid" slurmd
  stop_pidfile "$keep/slurmctld.pid" slurmctld
  rm -rf "$keep" "$D/run/slurmd.pid" "$D/run/slurmctld.pid"
  stop_pidfile "$D/run/slurmdbd.pid" slurmdbd
  stop_pidfile "$D/run/mariadbd.pid" mariadbd
  stop_pidfile "$D/run/munged.pid" munged
  log "down"
}

status() {
  for n in munged mariadbd slurmdbd slurmctld slurmd; do
    if pid_alive "$D/run/$n.pid"; then echo "$n: running (pid $(cat "$D/run/$n.pid"))"; else echo "$n: not started by us / stopped"; fi
  done
  sinfo 2>&1 || true; squeue 2>&1 || true
}

case "${1:-up}" in
  up) up ;; down) down ;; status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
