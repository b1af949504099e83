#!/usr/bin/env bash
# Throwaway single-node SLURM cluster on localhost, for the launcher's `slurm`-marked tests.
#
#   scripts/slurm-localhost.sh install   apt-get the packages (skipped when already installed)
#   scripts/slurm-localhost.sh up        start munged + slurmctld + slurmd, wait for the node to be idle
#   scripts/slurm-localhost.sh down      cancel all jobs, stop the daemons this script started
#   scripts/slurm-localhost.sh status    print the state; exit 0 iff the cluster is usable
#
# Run as root on Debian/Ubuntu; needs no systemd, cgroups, slurmdbd or database. `up` and `down` are
# idempotent; `up` on a healthy cluster with an unchanged config returns at once and touches nothing.
#
# Environment:
#   SLURM_LOCAL_DIR          state, spool, pid and log files (default /tmp/advnets-slurm). Kept by `down`,
#                            so job ids keep increasing across restarts (submitit folders stay unambiguous).
#   SLURM_LOCAL_CRED_EXPIRE  AuthInfo cred_expire in seconds (default 5, Slurm's minimum). Slurm also uses
#                            it as the wait before a requeued job may start again (default would be 120 s).
#   SLURM_LOCAL_SACCT_SHIM   1 (default): install scripts/sacct-shim.sh as /usr/local/bin/sacct, because
#                            without accounting submitit cannot see CANCELLED/FAILED/TIMEOUT jobs.
#
# Notes: PID 1 on our machines reaps slowly, so a dead daemon can linger as a zombie: liveness checks skip
# state Z. Jobs run as root, on one node with the CPUs/memory `slurmd -C` reports, partition `debug`.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/advnets-slurm}
CRED_EXPIRE=${SLURM_LOCAL_CRED_EXPIRE:-5}
WANT_SHIM=${SLURM_LOCAL_SACCT_SHIM:-1}
CONF=/etc/slurm/slurm.conf
CONF_MARK='# written by advnets scripts/slurm-localhost.sh'
SHIM=/usr/local/bin/sacct
SHIM_MARK='advnets sacct shim'
SHIM_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sacct-shim.sh
PKGS=(slurmctld slurmd slurm-client munge)
NODE=$(hostname -s)

say() { echo "slurm-localhost: $*"; }
die() {
  echo "slurm-localhost: error: $*" >&2
  sinfo -R >&2 2>/dev/null || true
  tail -n 15 "$DIR"/log/*.log >&2 2>/dev/null || true
  exit 1
}
need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# --- processes -------------------------------------------------------------------------------------------
is_running() { grep -qs '^State:[[:space:]]*[^Z]' "/proc/$1/status"; }   # exists and is not a zombie

pidfile() {  # where the daemon $1 writes its pid: the installed config decides (DIR may have changed)
  local key
  case $1 in slurmctld) key=SlurmctldPidFile ;; slurmd) key=SlurmdPidFile ;; munged) echo /run/munge/munged.pid; return ;; esac
  local f
  f=$(sed -n "s/^$key=//p" "$CONF" 2>/dev/null | tail -n 1)
  echo "${f:-$DIR/$1.pid}"
}

daemon_pid() {  # print the pid of daemon $1 if its pidfile names a live process running that program
  local f p
  f=$(pidfile "$1")
  [ -s "$f" ] || return 1
  p=$(tr -dc '0-9' <"$f")
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$1" ] && is_running "$p" && echo "$p"
}

stop_daemons() {  # SIGTERM each named daemon (found by its pidfile), wait up to 10 s, then SIGKILL
  local n p pids=()
  for n in "$@"; do
    if p=$(daemon_pid "$n"); then kill "$p" 2>/dev/null || true; pids+=("$p"); fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  local i left
  for i in $(seq 100); do
    left=0
    for p in "${pids[@]}"; do is_running "$p" && left=1; done
    [ $left = 0 ] && return 0
    sleep 0.1
  done
  for p in "${pids[@]}"; do is_running "$p" && kill -9 "$p" 2>/dev/null; done
  return 0
}

# --- health ----------------------------------------------------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1; }
ctld_up() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_ready() { node_state | grep -Eqx 'idle|mixed|allocated|completing|planned'; }
shim_ok() { [ "$WANT_SHIM" != 1 ] || { grep -qs "$SHIM_MARK" "$SHIM" && [ "$(command -v sacct)" = "$SHIM" ]; }; }
ours_conf() { head -n 1 "$CONF" 2>/dev/null | grep -qF "$CONF_MARK"; }
healthy() { daemon_pid slurmctld >/dev/null && daemon_pid slurmd >/dev/null && munge_ok && ctld_up && node_ready; }

# --- config ----------------------------------------------------------------------------------------------
render_conf() {  # the whole slurm.conf on stdout
  local hw
  hw=$(slurmd -C 2>/dev/null | head -n 1)
  [[ $hw == NodeName=* ]] || die "'slurmd -C' gave no node line: $hw"
  cat <<EOF
$CONF_MARK (SLURM_LOCAL_DIR=$DIR); rewritten by 'up'
ClusterName=advnets
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=$CRED_EXPIRE
# no cgroups, no accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
# requeue (scontrol requeue / submitit's preemption and timeout handling) must restart jobs here
JobRequeue=1
# quick, predictable kills and time limits
KillWait=5
OverTimeLimit=0
InactiveLimit=0
# a node coming back after a restart is usable at once; finished jobs stay visible (sacct shim) for 1 h
ReturnToService=2
MinJobAge=3600
# start batch jobs at once (default delay ~3 s); run the main scheduling loop every second (default 60 s)
# so a requeued job starts again as soon as its BeginTime (now + cred_expire + 1 s) has passed
SchedulerParameters=batch_sched_delay=0,sched_interval=1
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
$hw NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# --- subcommands -----------------------------------------------------------------------------------------
lock() {  # serialise concurrent up/down calls
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 120 9 || die "another slurm-localhost.sh call holds $DIR/.lock"
}

cmd_install() {
  need_root
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then say "already installed (${PKGS[*]})"; return 0; fi
  say "installing ${missing[*]}"
  # `invoke-rc.d: policy-rc.d denied execution of start` during the install is expected and harmless
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PKGS[@]}"
}

start_munge() {
  munge_ok && return 0
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  if ! daemon_pid munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged 9>&- || die "munged failed to start"
    touch "$DIR/munged.ours"
  fi
  local i
  for i in $(seq 50); do munge_ok && return 0; sleep 0.1; done
  die "munge does not work (munged running?)"
}

install_shim() {
  [ "$WANT_SHIM" = 1 ] || return 0
  [ -f "$SHIM_SRC" ] || die "missing $SHIM_SRC"
  if [ -e "$SHIM" ] && ! grep -qs "$SHIM_MARK" "$SHIM"; then
    say "warning: $SHIM exists and is not our shim; leaving it alone"; return 0
  fi
  cmp -s "$SHIM_SRC" "$SHIM" || install -m 755 "$SHIM_SRC" "$SHIM"
  [ "$(command -v sacct)" = "$SHIM" ] || say "warning: 'sacct' resolves to $(command -v sacct), not $SHIM (PATH order)"
}

cmd_up() {
  need_root
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null || die "Slurm is not installed: run '$0 install' first"
  lock
  mkdir -p "$DIR"/state "$DIR"/spool "$DIR"/log
  local new="$DIR/slurm.conf"
  render_conf >"$new"

  # fast path: nothing to do when running healthy with exactly this config
  if cmp -s "$new" "$CONF" && healthy; then
    install_shim
    say "already up ($(node_state); logs in $DIR/log)"
    return 0
  fi

  start_munge
  stop_daemons slurmd slurmctld
  if [ -e "$CONF" ] && ! ours_conf && [ ! -e "$CONF.advnets-orig" ]; then cp -p "$CONF" "$CONF.advnets-orig"; fi
  install -D -m 644 "$new" "$CONF"
  # 9>&-: the daemons must not inherit the lock
  slurmctld 9>&- || die "slurmctld failed to start"
  slurmd 9>&- || die "slurmd failed to start"

  local i resumed=0
  for i in $(seq 150); do   # up to 30 s; a cold start takes about 1 s
    healthy && break
    if [ $i -ge 25 ] && [ $resumed = 0 ] && node_state | grep -Eq 'down|drain|fail'; then
      scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true; resumed=1   # stale DOWN state
    fi
    sleep 0.2
  done
  healthy || die "node not ready after 30 s (state: $(node_state))"
  install_shim
  sinfo
  say "up (logs in $DIR/log)"
}

cmd_down() {
  need_root
  lock
  if daemon_pid slurmctld >/dev/null && ctld_up; then
    local jobs i
    jobs=$(squeue -h -o %i 2>/dev/null | sed 's/_.*//' | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for i in $(seq 75); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  stop_daemons slurmd slurmctld
  if [ -e "$DIR/munged.ours" ]; then stop_daemons munged; rm -f "$DIR/munged.ours"; fi
  if grep -qs "$SHIM_MARK" "$SHIM"; then rm -f "$SHIM"; fi
  say "down (state kept in $DIR)"
}

cmd_status() {
  local ok=0 p
  if munge_ok; then echo "munge:     ok"; else echo "munge:     NOT working"; ok=1; fi
  if p=$(daemon_pid slurmctld); then echo "slurmctld: pid $p"; else echo "slurmctld: not running"; ok=1; fi
  if p=$(daemon_pid slurmd); then echo "slurmd:    pid $p"; else echo "slurmd:    not running"; ok=1; fi
  if ctld_up; then echo "ping:      UP"; else echo "ping:      DOWN"; ok=1; fi
  echo "node:      $NODE $(node_state || true)"
  node_ready || ok=1
  if ! ours_conf; then echo "config:    $CONF not written by this script"; ok=1; fi
  if shim_ok; then echo "sacct:     $(command -v sacct)"; else echo "sacct:     shim missing or shadowed ($(command -v sacct || echo none))"; ok=1; fi
  echo "dir:       $DIR"
  if [ $ok = 0 ]; then echo "status:    healthy"; else echo "status:    NOT healthy"; fi
  return $ok
}

case ${1:-} in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 {install|up|down|status}" >&2; exit 2 ;;
esac
