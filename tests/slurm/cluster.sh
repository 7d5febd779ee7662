#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1 for tests/test_slurm.py (and for trying the profile by hand).
#
#   tests/slurm/cluster.sh start    install (apt-get, once) and start munged, MariaDB, slurmdbd,
#                                   slurmctld and slurmd; wait until the node is idle
#   tests/slurm/cluster.sh status   exit 0 when every daemon runs and the node answers
#   tests/slurm/cluster.sh stop     cancel its jobs, stop the daemons it started (by PID file)
#   tests/slurm/cluster.sh env      print `export SLURM_CONF=...` for this cluster's clients
#
# Everything lives in a private state dir ($FULCRUM_SLURM_DIR, default /tmp/fulcrum-slurm): config,
# munge key and socket, database, spool, logs, PID files. No system service is started or stopped.
# The one thing outside it is a symlink /etc/slurm/slurm.conf -> $STATE/etc/slurm.conf, made only
# where no slurm.conf exists and removed by `stop`: the executor's jobstep plugin drops SLURM_CONF
# from the environment of the `srun` it runs inside each job, so that srun reads the default path,
# as on a real cluster. Ports: $FULCRUM_SLURM_PORT (default 16817) for slurmctld, +1 slurmd,
# +2 slurmdbd, +3 MariaDB.
#
# The node has the machine's CPUs and memory (as `slurmd -C` reads them) and one fake GPU: a GRES
# `gpu` backed by /dev/null, so rules that ask for `--gpus=1` schedule; their code runs on the CPU.
# Partitions: `cpu` (default) and `gpu`, both on that node; account: `fulcrum`. Accounting goes
# through slurmdbd + MariaDB, as on real clusters, so sacct (the executor plugin's default status
# command) works. Root is needed (apt-get, munged runs as the munge user).
set -euo pipefail

STATE=${FULCRUM_SLURM_DIR:-/tmp/fulcrum-slurm}
PORT=${FULCRUM_SLURM_PORT:-16817}
CLUSTER=fulcrum
ACCOUNT=fulcrum
ETC=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
CONF=$ETC/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf
MUNGE_SOCKET=$STATE/munge/munge.socket
MUNGE_PID=$STATE/munge/munged.pid
DB_SOCKET=$RUN/mariadb.sock
DB_PASS=fulcrum-ci
NODE=$(hostname -s)
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
export SLURM_CONF=$CONF

say() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

# ------------------------------------------------------------------ install
install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	[[ $(id -u) -eq 0 ]] || die "needs root to install ${missing[*]}"
	say "installing ${missing[*]}"
	local t0=$SECONDS
	# policy-rc.d-less machines would start the packages' own services (on /etc/slurm, the default
	# munge socket); this cluster never uses them, so keep them from starting during the install.
	local policy=/usr/sbin/policy-rc.d made_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"/tmp/fulcrum-slurm-apt.log" 2>&1 ||
		{
			tail -20 /tmp/fulcrum-slurm-apt.log >&2
			[[ $made_policy -eq 1 ]] && rm -f "$policy"
			die "apt-get install failed"
		}
	[[ $made_policy -eq 1 ]] && rm -f "$policy"
	say "installed in $((SECONDS - t0)) s"
}

# ------------------------------------------------------------------ processes
# A PID file names one of ours only while that process runs the expected program and carries this
# state dir in its command line or environment, so a reused PID is never signalled.
ours() { # name pidfile -> prints the pid if it is ours and alive
	local name=$1 pidfile=$2 pid cmdline environ
	[[ -s $pidfile ]] || return 1
	pid=$(tr -dc '0-9' <"$pidfile")
	[[ -n $pid && -d /proc/$pid ]] || return 1
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name"* ]] || return 1
	cmdline=$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
	environ=$({ tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null) || return 1
	[[ $cmdline == *"$STATE"* || $'\n'$environ$'\n' == *$'\n'"SLURM_CONF=$CONF"$'\n'* ]] || return 1
	echo "$pid"
}

wait_for() { # seconds description command...
	local limit=$1 what=$2 t0=$SECONDS
	shift 2
	until "$@" >/dev/null 2>&1; do
		((SECONDS - t0 < limit)) || die "$what: not ready after ${limit} s (logs: $LOG)"
		sleep 0.2
	done
}

stop_one() { # name pidfile
	local name=$1 pidfile=$2 pid i
	pid=$(ours "$name" "$pidfile") || {
		rm -f "$pidfile"
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		[[ -d /proc/$pid ]] || break
		sleep 0.1
	done
	if [[ -d /proc/$pid ]]; then
		say "$name ($pid) ignored TERM for 10 s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
	say "stopped $name ($pid)"
}

# ------------------------------------------------------------------ configuration
node_hardware() { # the node line's hardware part, as slurmd measures it
	local line field out=()
	line=$(slurmd -C)
	for field in ${line%%$'\n'*}; do
		[[ $field =~ ^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)= ]] && out+=("$field")
	done
	echo "${out[*]}"
}

write_config() {
	mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/db" "$STATE/munge"
	chmod 755 "$STATE"
	local hw
	hw=$(node_hardware)
	[[ -n $hw ]] || die "slurmd -C printed no hardware"
	cat >"$CONF.new" <<EOF
# Written by tests/slurm/cluster.sh; rewritten at every start.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers: track and account job processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 5 min: >= 3x the executor plugin's first status
# delay (40 s), so squeue would also do as a status command; sacct is what the plugin uses here.
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# Clients reach slurmdbd through the MUNGE socket named here (AuthInfo covers slurmctld/slurmd only).
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageEnforce=associations,limits
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 $hw Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
	mv "$CONF.new" "$CONF"
	if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; then
		:
	elif [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
		die "$SYSTEM_CONF exists and is not this cluster's: this machine has a Slurm of its own"
	else
		mkdir -p "$(dirname "$SYSTEM_CONF")"
		ln -s "$CONF" "$SYSTEM_CONF"
	fi
	# A GPU that is not there: enough for the scheduler, the job runs on the CPU.
	printf 'NodeName=%s Name=gpu File=/dev/null\n' "$NODE" >"$ETC/gres.conf"
	# slurmdbd.conf: next to slurm.conf (slurmdbd finds it through SLURM_CONF), 0600, SlurmUser's.
	umask 077
	cat >"$ETC/slurmdbd.conf" <<EOF
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
	umask 022
	chmod 600 "$ETC/slurmdbd.conf"
}

# ------------------------------------------------------------------ daemons
start_munge() {
	ours munged "$MUNGE_PID" >/dev/null && return 0
	chown munge:munge "$STATE/munge"
	chmod 755 "$STATE/munge" # clients reach the socket; the key itself is 0600
	if [[ ! -s $STATE/munge/munge.key ]]; then
		runuser -u munge -- mungekey --create --keyfile="$STATE/munge/munge.key"
	fi
	touch "$LOG/munged.log"
	chown munge:munge "$LOG/munged.log"
	# munged refuses to run as root; as the munge user it owns its key, seed and socket.
	runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
		--seed-file="$STATE/munge/munged.seed" --pid-file="$MUNGE_PID" --log-file="$LOG/munged.log"
	wait_for 20 munged bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"
}

db() { mariadb --no-defaults --socket="$DB_SOCKET" -u root; }

start_mariadb() {
	if ! ours mariadbd "$RUN/mariadbd.pid" >/dev/null; then
		if [[ ! -d $STATE/db/mysql ]]; then
			mariadb-install-db --no-defaults --user=root --datadir="$STATE/db" --skip-test-db \
				--auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 ||
				die "mariadb-install-db failed: $LOG/mariadb-install.log"
		fi
		setsid mariadbd --no-defaults --user=root --datadir="$STATE/db" --socket="$DB_SOCKET" \
			--port=$((PORT + 3)) --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$RUN/mariadbd.pid" \
			--log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
			</dev/null >>"$LOG/mariadb.log" 2>&1 &
		wait_for 60 mariadb mariadb-admin --no-defaults --socket="$DB_SOCKET" -u root ping
	fi
	db <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurmdbd() {
	ours slurmdbd "$RUN/slurmdbd.pid" >/dev/null && return 0
	slurmdbd
	wait_for 60 slurmdbd sacctmgr -n list cluster
}

setup_accounting() {
	[[ -n $(sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]] || sacctmgr -i add cluster "$CLUSTER" >/dev/null
	[[ -n $(sacctmgr -n -P list account "$ACCOUNT" format=account) ]] ||
		sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="fulcrum CI" organization=fulcrum >/dev/null
	local user
	user=$(id -un)
	[[ -n $(sacctmgr -n -P list assoc user="$user" account="$ACCOUNT" format=user) ]] ||
		sacctmgr -i add user "$user" account="$ACCOUNT" defaultaccount="$ACCOUNT" >/dev/null
}

start_slurmctld() {
	ours slurmctld "$RUN/slurmctld.pid" >/dev/null && return 0
	slurmctld -f "$CONF"
	wait_for 30 slurmctld scontrol ping
}

start_slurmd() {
	ours slurmd "$RUN/slurmd.pid" >/dev/null && return 0
	slurmd -f "$CONF"
}

node_state() {
	local state
	state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null) || return 0
	echo "${state%%$'\n'*}"
}

node_ready() { [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; }

# ------------------------------------------------------------------ commands
cmd_start() {
	local t0=$SECONDS
	install_packages
	local t1=$SECONDS
	write_config
	start_munge
	start_mariadb
	start_slurmdbd
	setup_accounting
	start_slurmctld
	start_slurmd
	wait_for 60 "node $NODE idle" node_ready
	say "up in $((SECONDS - t1)) s ($((SECONDS - t0)) s with install): node $NODE $(node_hardware) gpu:1;" \
		"partitions cpu, gpu; account $ACCOUNT"
	cmd_env
}

cmd_stop() {
	if [[ -f $CONF ]] && ours slurmctld "$RUN/slurmctld.pid" >/dev/null; then
		# Jobs of this cluster only: its slurmctld is the one SLURM_CONF names.
		scancel --full --user="$(id -un)" 2>/dev/null || true
		local i
		for ((i = 0; i < 50; i++)); do
			[[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
			sleep 0.2
		done
	fi
	stop_one slurmd "$RUN/slurmd.pid"
	stop_one slurmctld "$RUN/slurmctld.pid"
	stop_one slurmdbd "$RUN/slurmdbd.pid"
	stop_one mariadbd "$RUN/mariadbd.pid"
	stop_one munged "$MUNGE_PID"
	if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; then
		rm -f "$SYSTEM_CONF"
	fi
}

cmd_status() {
	local name bad=0 pid pidfile
	for name in munged mariadbd slurmdbd slurmctld slurmd; do
		pidfile=$RUN/$name.pid
		[[ $name == munged ]] && pidfile=$MUNGE_PID
		if pid=$(ours "$name" "$pidfile"); then
			say "$name running ($pid)"
		else
			say "$name not running"
			bad=1
		fi
	done
	if [[ ! -L $SYSTEM_CONF || $(readlink "$SYSTEM_CONF") != "$CONF" ]]; then
		say "$SYSTEM_CONF does not point to $CONF"
		bad=1
	fi
	if [[ $bad -eq 0 ]] && node_ready; then
		say "node $NODE $(node_state); SLURM_CONF=$CONF"
		return 0
	fi
	[[ $bad -eq 0 ]] && say "node $NODE not ready: '$(node_state)'"
	return 1
}

cmd_env() { printf 'export SLURM_CONF=%q\n' "$CONF"; }

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
	echo "usage: $0 start|stop|status|env" >&2
	exit 2
	;;
esac
