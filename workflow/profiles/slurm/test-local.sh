#!/usr/bin/env bash
# Prove the SLURM profiles on this machine: start a one-node SLURM cluster (munge, slurmctld,
# slurmd; no cgroups, no accounting), run the tiny pipeline (configs/ci-tiny.yaml) through
# workflow/profiles/slurm-cpu, check that its jobs went through sbatch and that the .gnerv
# layers equal those of a local run, then stop what it started and remove its files.
#
#   workflow/profiles/slurm/test-local.sh        # from the repository root, as root (Debian)
#   KEEP=1 workflow/profiles/slurm/test-local.sh # keep the work folder (logs) afterwards
#
# Installs Debian's slurm-wlm and munge with apt-get when slurmctld is missing. Uses ports
# 16817/16818, and a munged of its own unless one is already running. About 4-6 minutes on
# 2 cores. tests/test_workflow.py runs it when CI is set or GNERV_TEST_SLURM=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
WORK=$(mktemp -d /tmp/gnerv-slurm.XXXXXX)
CONFIG=configs/ci-tiny.yaml
PROFILE=workflow/profiles/slurm-cpu
# What a run of the workflow needs (tests/test_workflow.py copies the same files).
FILES=(Snakefile params.yaml workflow configs data/raw)
STARTED_MUNGE=0
LINKED_CONF=0
# snakemake and gnerv: from the active environment, else the repository's .venv (the SLURM
# jobs inherit this PATH: sbatch exports the environment).
if ! command -v snakemake >/dev/null && [[ -x $ROOT/.venv/bin/snakemake ]]; then
    export PATH=$ROOT/.venv/bin:$PATH
fi

say() { echo "test-local: $*"; }

cleanup() {
    local status=$?
    for daemon in slurmd slurmctld; do
        if [[ -f $WORK/$daemon.pid ]]; then
            kill "$(cat "$WORK/$daemon.pid")" 2>/dev/null || true
        fi
    done
    if [[ $STARTED_MUNGE == 1 && -f $WORK/munged.pid ]]; then
        kill "$(cat "$WORK/munged.pid")" 2>/dev/null || true
    fi
    if [[ $LINKED_CONF == 1 ]]; then
        rm -f /etc/slurm/slurm.conf
    fi
    sleep 1
    if [[ ${KEEP:-0} == 1 || $status != 0 ]]; then
        say "work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $status
}
trap cleanup EXIT

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null
fi

# munge: the key the package made, a daemon of our own unless one runs already.
if ! pgrep -x munged >/dev/null; then
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    sleep 1
    cp /run/munge/munged.pid "$WORK/munged.pid" 2>/dev/null || pgrep -xn munged >"$WORK/munged.pid"
    STARTED_MUNGE=1
fi

# slurm.conf for this host: its real CPUs and memory (slurmd -C), one partition.
HOST=$(hostname -s)
NODE=$(slurmd -C | head -n 1)
mkdir -p "$WORK/state" "$WORK/spool"
cat >"$WORK/slurm.conf" <<EOF
ClusterName=gnerv-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=600
MailProg=/bin/true
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$WORK/slurm.conf
# The jobs' own srun calls do not see SLURM_CONF (the plugin clears SLURM_* variables in the
# job): they read /etc/slurm/slurm.conf, which this script provides while it runs.
if [[ -e /etc/slurm/slurm.conf ]]; then
    say "/etc/slurm/slurm.conf exists: this script only runs where no cluster is configured"
    exit 1
fi
mkdir -p /etc/slurm
ln -s "$SLURM_CONF" /etc/slurm/slurm.conf
LINKED_CONF=1
say "starting slurmctld and slurmd ($WORK)"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then break; fi
    sleep 1
done
sinfo -h -o %t | grep -qx idle || { say "the node never became idle"; sinfo; exit 1; }

copy() {
    mkdir -p "$1"
    (cd "$ROOT" && cp -r --parents "${FILES[@]}" "$1")
}

# The same pipeline twice: through SLURM, and locally as the reference.
copy "$WORK/slurm"
copy "$WORK/local"
export GNERV_DVC_COMMIT=0
# A job bigger than the node stops the run before anything is submitted, naming the limit.
say "asking for more CPUs than the node has"
if (cd "$WORK/slurm" && snakemake --profile "$PROFILE" --configfile "$CONFIG" \
    --set-resources fit:cpus_per_task=4096 >"$WORK/oversized.out" 2>&1); then
    say "a job asking for 4096 CPUs was not refused"
    exit 1
fi
if ! grep -q "rule fit asks for 4096 CPUs (cpus_per_task) but the largest node" \
    "$WORK/oversized.out" || grep -q "submitted with SLURM jobid" "$WORK/oversized.out"; then
    tail -n 20 "$WORK/oversized.out"
    say "the oversized job was not stopped before submission with its limit named"
    exit 1
fi
rm -rf "$WORK/slurm/.snakemake"
say "running the tiny pipeline through $PROFILE"
(cd "$WORK/slurm" && MLFLOW_TRACKING_URI=sqlite:///$WORK/slurm/mlflow.db \
    snakemake --profile "$PROFILE" --configfile "$CONFIG" >"$WORK/slurm.out" 2>&1) || {
    tail -n 40 "$WORK/slurm.out"
    exit 1
}
say "running it locally"
(cd "$WORK/local" && MLFLOW_TRACKING_URI=sqlite:///$WORK/local/mlflow.db \
    snakemake --cores 2 --configfile "$CONFIG" >"$WORK/local.out" 2>&1) || {
    tail -n 40 "$WORK/local.out"
    exit 1
}

# Every job but the local rules (track, all) went through sbatch.
submitted=$(grep -c "submitted with SLURM jobid" "$WORK/slurm.out" || true)
accepted=$(grep -c "_slurm_rpc_submit_batch_job: JobId=" "$WORK/slurmctld.log" || true)
expected=$(grep -c "^Job .* has been submitted" "$WORK/slurm.out" || true)
say "$submitted jobs submitted with sbatch, $accepted accepted by slurmctld"
if [[ $submitted -lt 10 || $accepted -ne $submitted ]]; then
    say "expected every non-local job to go through SLURM ($expected)"
    exit 1
fi
if grep -q -- "--gpus" "$WORK/slurm.out"; then
    say "a job asked for a GPU"
    exit 1
fi
for layer in results/cockatoo/stage1/stage1.gnerv results/cockatoo/stage2/stage2.gnerv; do
    a=$(md5sum <"$WORK/slurm/$layer")
    b=$(md5sum <"$WORK/local/$layer")
    if [[ $a != "$b" ]]; then
        say "$layer differs between the SLURM and the local run"
        exit 1
    fi
done
# A segmented encode: one job per segment, spread by SLURM, gathered into the same index as a
# local run of it.
cat >"$WORK/segments.yaml" <<'EOF'
extract: {frames: "0:12"}
stages:
  - {size: 15k, epochs: 2, alpha: 0.7}
segments: {segment_frames: 4}
EOF
say "running a segmented encode through $PROFILE"
for where in slurm local; do
    if [[ $where == slurm ]]; then run=(snakemake --profile "$PROFILE"); else
        run=(snakemake --cores 2); fi
    (cd "$WORK/$where" && MLFLOW_TRACKING_URI=sqlite:///$WORK/$where/mlflow.db \
        "${run[@]}" --configfile "$CONFIG" "$WORK/segments.yaml" \
        >"$WORK/$where-segments.out" 2>&1) || {
        tail -n 40 "$WORK/$where-segments.out"
        exit 1
    }
done
segment_jobs=$(grep -c "submitted with SLURM jobid" "$WORK/slurm-segments.out" || true)
if [[ $segment_jobs -lt 3 ]]; then
    say "expected the three segments' jobs to go through SLURM ($segment_jobs did)"
    exit 1
fi
index=results/cockatoo/segments/segments.json
if ! cmp -s "$WORK/slurm/$index" "$WORK/local/$index"; then
    say "$index differs between the SLURM and the local run"
    exit 1
fi
say "OK: the SLURM run's layers equal the local run's"
