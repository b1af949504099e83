#!/usr/bin/env bash
# Throwaway SLURM cluster on localhost, for the launcher's `slurm`- and `cluster`-marked tests.
#
#   scripts/slurm-localhost.sh install         apt-get the packages (skipped when already installed)
#   scripts/slurm-localhost.sh up [LAYOUT]     start munged + slurmctld + the slurmd(s), wait for the nodes to be idle
#   scripts/slurm-localhost.sh down            cancel all jobs, stop the daemons this script started
#   scripts/slurm-localhost.sh status          print the state; exit 0 iff the cluster is usable
#
# LAYOUT:
#   one-node   one node named after the host (all its CPUs and memory), partition `debug` (the default).
#   two-node   the same, plus two nodes `n1` and `n2` in partition `pair`, for jobs that cross a node boundary:
#              one slurmd per node (`slurmd -N n1`, `slurmd -N n2`), each with its own port, spool folder, pid
#              and log file, and half the host's CPUs and memory (the three nodes share the same CPUs). As on
#              any real cluster the node names must resolve (Lightning's rendezvous connects to the first node
#              by name): `up` adds `127.0.0.2 n1` and `127.0.0.3 n2` to /etc/hosts, marked with
#              "# advnets slurm-localhost", and `down` (or `up one-node`) removes exactly those lines.
#   (none)     the layout of the running cluster, else one-node.
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
# Notes: PID 1 on some machines reaps slowly, so a dead daemon can linger as a zombie: liveness checks skip
# state Z. Jobs run as root.
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
PAIR=(n1 n2)                       # the two-node layout's nodes, their addresses and slurmd ports
PAIR_ADDR=(127.0.0.2 127.0.0.3)
PAIR_PORT=(6821 6822)
HOSTS=/etc/hosts
HOSTS_MARK='# advnets slurm-localhost'

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

pidfile() {  # where daemon $1 (slurmd: of node $2) writes its pid: the installed config decides
  local key f
  case $1 in slurmctld) key=SlurmctldPidFile ;; slurmd) key=SlurmdPidFile ;; munged) echo /run/munge/munged.pid; return ;; esac
  f=$(sed -n "s/^$key=//p" "$CONF" 2>/dev/null | tail -n 1)
  f=${f:-$DIR/$1.pid}
  echo "${f//%n/${2:-$NODE}}"
}

daemon_pid() {  # print the pid of daemon $1 (slurmd: of node $2) if its pidfile names a live process of it
  local f p
  f=$(pidfile "$1" "${2:-}")
  [ -s "$f" ] || return 1
  p=$(tr -dc '0-9' <"$f")
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$1" ] && is_running "$p" && echo "$p"
}

conf_nodes() { sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$CONF" 2>/dev/null; }   # the installed config's nodes
conf_layout() { head -n 1 "$CONF" 2>/dev/null | sed -n 's/.*layout=\([a-z-]*\).*/\1/p'; }

stop_daemons() {  # SIGTERM each daemon named NAME or slurmd@NODE (found by its pidfile), wait 10 s, then SIGKILL
  local n p pids=()
  for n in "$@"; do
    if p=$(daemon_pid "${n%@*}" "$([[ $n == *@* ]] && echo "${n#*@}")"); then kill "$p" 2>/dev/null || true; pids+=("$p"); fi
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
node_state() { sinfo -h -n "${1:-$NODE}" -o %T 2>/dev/null | head -n 1; }
ctld_up() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_ready() { node_state "${1:-$NODE}" | grep -Eqx 'idle|mixed|allocated|completing|planned'; }
shim_ok() { [ "$WANT_SHIM" != 1 ] || { grep -qs "$SHIM_MARK" "$SHIM" && [ "$(command -v sacct)" = "$SHIM" ]; }; }
ours_conf() { head -n 1 "$CONF" 2>/dev/null | grep -qF "$CONF_MARK"; }
resolves() { [ "$(getent ahostsv4 "$1" 2>/dev/null | awk 'NR == 1 {print $1}')" = "$2" ]; }   # name $1 -> address $2
hosts_ok() {  # the two-node layout's names resolve to their addresses
  [ "$(conf_layout)" != two-node ] && return 0
  local i
  for i in "${!PAIR[@]}"; do resolves "${PAIR[$i]}" "${PAIR_ADDR[$i]}" || return 1; done
}
healthy() {
  local n nodes
  nodes=$(conf_nodes)
  [ -n "$nodes" ] && daemon_pid slurmctld >/dev/null && munge_ok && ctld_up && hosts_ok || return 1
  for n in $nodes; do daemon_pid slurmd "$n" >/dev/null && node_ready "$n" || return 1; done
}

# --- config ----------------------------------------------------------------------------------------------
render_conf() {  # the whole slurm.conf of layout $1 on stdout
  local hw
  hw=$(slurmd -C 2>/dev/null | head -n 1)
  [[ $hw == NodeName=* ]] || die "'slurmd -C' gave no node line: $hw"
  cat <<EOF
$CONF_MARK (SLURM_LOCAL_DIR=$DIR; layout=$1); rewritten by 'up'
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
# the nodes are what this file says (the two-node layout's nodes are halves of this host)
SlurmdParameters=config_overrides
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
# one slurmd per node (%n: its node name)
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.%n.log
$hw NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  [ "$1" = two-node ] || return 0
  local cpus mem i
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  cpus=$((cpus / 2 > 0 ? cpus / 2 : 1))
  for i in "${!PAIR[@]}"; do
    echo "NodeName=${PAIR[$i]} NodeAddr=${PAIR_ADDR[$i]} Port=${PAIR_PORT[$i]} CPUs=$cpus Boards=1 SocketsPerBoard=1" \
      "CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$((mem / 2)) State=UNKNOWN"
  done
  echo "PartitionName=pair Nodes=$(IFS=,; echo "${PAIR[*]}") MaxTime=INFINITE State=UP"
}

# --- /etc/hosts ------------------------------------------------------------------------------------------
hosts_clean() {  # remove the lines this script added (in place: /etc/hosts may be a bind mount)
  grep -qsF "$HOSTS_MARK" "$HOSTS" || return 0
  local kept
  kept=$(grep -vF "$HOSTS_MARK" "$HOSTS" || true)
  printf '%s\n' "$kept" >"$HOSTS"
}

hosts_add() {  # one marked line per node of the two-node layout; a name already bound elsewhere is an error
  local i
  for i in "${!PAIR[@]}"; do
    resolves "${PAIR[$i]}" "${PAIR_ADDR[$i]}" && continue
    if getent hosts "${PAIR[$i]}" >/dev/null; then
      die "node name ${PAIR[$i]} already resolves to $(getent hosts "${PAIR[$i]}" | awk '{print $1}'), not ${PAIR_ADDR[$i]}"
    fi
    echo "${PAIR_ADDR[$i]} ${PAIR[$i]} $HOSTS_MARK" >>"$HOSTS"
  done
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

states() { local n sep=""; for n in $(conf_nodes); do printf "%s%s %s" "$sep" "$n" "$(node_state "$n")"; sep=", "; done; }

cmd_up() {
  local layout=${1:-}
  need_root
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null || die "Slurm is not installed: run '$0 install' first"
  lock
  if [ -z "$layout" ]; then layout=$(ours_conf && conf_layout || true); layout=${layout:-one-node}; fi
  case $layout in one-node|two-node) ;; *) die "layout '$layout'; allowed: one-node, two-node" ;; esac
  mkdir -p "$DIR"/state "$DIR"/spool "$DIR"/log
  local new="$DIR/slurm.conf"
  render_conf "$layout" >"$new"

  # fast path: nothing to do when running healthy with exactly this config
  if cmp -s "$new" "$CONF" && healthy; then
    install_shim
    say "already up ($layout: $(states); logs in $DIR/log)"
    return 0
  fi

  start_munge
  local n old=()
  for n in $(conf_nodes); do old+=("slurmd@$n"); done
  stop_daemons "${old[@]}" slurmctld
  if [ -e "$CONF" ] && ! ours_conf && [ ! -e "$CONF.advnets-orig" ]; then cp -p "$CONF" "$CONF.advnets-orig"; fi
  install -D -m 644 "$new" "$CONF"
  hosts_clean
  [ "$layout" = two-node ] && hosts_add
  # 9>&-: the daemons must not inherit the lock
  slurmctld 9>&- || die "slurmctld failed to start"
  for n in $(conf_nodes); do
    mkdir -p "$DIR/spool/$n"
    slurmd -N "$n" 9>&- || die "slurmd of node $n failed to start"
  done

  local i resumed=0
  for i in $(seq 150); do   # up to 30 s; a cold start takes about 1 s
    healthy && break
    if [ $i -ge 25 ] && [ $resumed = 0 ]; then
      for n in $(conf_nodes); do
        if node_state "$n" | grep -Eq 'down|drain|fail'; then   # a stale DOWN state
          scontrol update NodeName="$n" State=RESUME 2>/dev/null || true; resumed=1
        fi
      done
    fi
    sleep 0.2
  done
  healthy || die "nodes not ready after 30 s ($(states))"
  install_shim
  sinfo
  say "up ($layout; logs in $DIR/log)"
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
  local n nodes=()
  for n in $(conf_nodes); do nodes+=("slurmd@$n"); done
  stop_daemons "${nodes[@]}" slurmctld
  if [ -e "$DIR/munged.ours" ]; then stop_daemons munged; rm -f "$DIR/munged.ours"; fi
  if grep -qs "$SHIM_MARK" "$SHIM"; then rm -f "$SHIM"; fi
  hosts_clean
  say "down (state kept in $DIR)"
}

cmd_status() {
  local ok=0 p
  if munge_ok; then echo "munge:     ok"; else echo "munge:     NOT working"; ok=1; fi
  local n nodes
  nodes=$(conf_nodes)
  if p=$(daemon_pid slurmctld); then echo "slurmctld: pid $p"; else echo "slurmctld: not running"; ok=1; fi
  if ctld_up; then echo "ping:      UP"; else echo "ping:      DOWN"; ok=1; fi
  [ -n "$nodes" ] || { echo "nodes:     none configured"; ok=1; }
  for n in $nodes; do
    if p=$(daemon_pid slurmd "$n"); then p="slurmd pid $p"; else p="slurmd not running"; ok=1; fi
    echo "node:      $n $(node_state "$n" || true) ($p)"
    node_ready "$n" || ok=1
  done
  if ! ours_conf; then echo "config:    $CONF not written by this script"; ok=1; else echo "layout:    $(conf_layout)"; fi
  if ! hosts_ok; then echo "hosts:     ${PAIR[*]} do not resolve to ${PAIR_ADDR[*]} ($HOSTS)"; ok=1; fi
  if shim_ok; then echo "sacct:     $(command -v sacct)"; else echo "sacct:     shim missing or shadowed ($(command -v sacct || echo none))"; ok=1; fi
  echo "dir:       $DIR"
  if [ $ok = 0 ]; then echo "status:    healthy"; else echo "status:    NOT healthy"; fi
  return $ok
}

case ${1:-} in
  install) cmd_install ;;
  up) cmd_up "${2:-}" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 {install|up [one-node|two-node]|down|status}" >&2; exit 2 ;;
esac
