# A one-node Slurm for the tests under tests/slurm, sourced by .ci/run: slurm_start brings up munged, slurmctld
# and slurmd (Debian's packages, no systemd) in a fresh folder and exports SLURM_CONF and GANBENCH_SLURM=1 when the
# node is idle; slurm_stop stops exactly the daemons slurm_start started, by their pid files. Nothing is written
# outside that folder except what apt-get installs; a daemon already running on the machine is left alone.

SLURM_CI_DIR=""

_slurm_say() { echo "slurm: $*" >&2; }

# slurm_start: 0 when the cluster is up (GANBENCH_SLURM=1 exported), 1 with a reason on stderr otherwise.
slurm_start() {
    local started=$SECONDS
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v munged >/dev/null; then
        apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                slurmctld slurmd slurm-client munge >/dev/null \
            || { _slurm_say "apt-get could not install slurmctld, slurmd, slurm-client and munge"; return 1; }
    fi
    SLURM_CI_DIR="$(mktemp -d /tmp/ganbench-slurm.XXXXXX)"
    local dir=$SLURM_CI_DIR
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    chmod 700 "$dir/munge"
    # Our own munge key and socket: a munged the machine may run already is neither used nor disturbed.
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none && chmod 400 "$dir/munge/munge.key"
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" \
        || { _slurm_say "munged did not start: $(tail -n 3 "$dir/munge/munged.log" 2>/dev/null)"; return 1; }
    # Slurm's usual ports, unless something listens there already (another Slurm): then the next free pair
    local port=6817
    while (: </dev/tcp/127.0.0.1/$port) 2>/dev/null || (: </dev/tcp/127.0.0.1/$((port + 1))) 2>/dev/null; do
        port=$((port + 10))
    done
    local cpus  # the cores this machine gives us (nproc alone would follow OMP_NUM_THREADS)
    cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
    cat >"$dir/slurm.conf" <<EOF
ClusterName=ganbench-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SchedulerParameters=sched_interval=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    if ! slurmctld -f "$SLURM_CONF"; then
        _slurm_say "slurmctld did not start: $(tail -n 3 "$dir/slurmctld.log" 2>/dev/null)"
        return 1
    fi
    if ! slurmd -f "$SLURM_CONF" -N localhost; then
        _slurm_say "slurmd did not start: $(tail -n 3 "$dir/slurmd.log" 2>/dev/null)"
        return 1
    fi
    local waited=0
    until sinfo -h -N -o %T 2>/dev/null | grep -qx idle; do
        if [ "$waited" -ge 60 ]; then
            _slurm_say "the node is not idle after 60 s: $(sinfo -h -N -o '%T %E' 2>&1 | head -n 1)"
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    export GANBENCH_SLURM=1
    _slurm_say "one-node cluster up in $((SECONDS - started)) s (SLURM_CONF=$SLURM_CONF)"
}

# slurm_stop: stop the daemons slurm_start started (by pid file, in reverse order) and remove its folder.
slurm_stop() {
    [ -n "$SLURM_CI_DIR" ] || return 0
    local dir=$SLURM_CI_DIR name pid
    # Jobs first (ours: the cluster is private), so that no job step outlives its slurmd.
    if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
        scancel --full $(squeue -h -o %i) 2>/dev/null || true
        for _ in $(seq 30); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    for name in slurmd slurmctld munge/munged; do
        if [ -s "$dir/$name.pid" ]; then
            pid="$(cat "$dir/$name.pid")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$dir"
    SLURM_CI_DIR=""
}
