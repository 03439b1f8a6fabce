#!/usr/bin/env bash
# `switch train` launched by Slurm's srun instead of mpirun: a private one-node Slurm
# (munge, slurmctld and slurmd on ports of its own, state in a temporary folder) runs
#   - dp=2 under `srun -n 2 --mpi=pmix`, against the same run under mpirun: the same
#     losses and the same checkpoint bytes (each rank takes its rank from Slurm's PMIx);
#   - ep=2,mp=2 under `srun -n 4`: losses within 1e-5 of one process with 2 micro-batches;
#   - a rank killed mid-run: srun ends the job with an error instead of hanging.
# Exit 77 (skipped) where Slurm or munge is not installed or this is not root (slurmd
# runs jobs as their user).
#
#   tests/dist/srun_layouts.sh SWITCH MPIRUN
set -uo pipefail
switch=$1
mpirun=$2
here=$(cd "$(dirname "$0")" && pwd)
for tool in srun slurmctld slurmd munged; do
  command -v "$tool" >/dev/null || { echo "skipped: no $tool (scripts/setup installs Slurm)"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "skipped: slurmd needs root"; exit 77; }

d=$(mktemp -d)
export SLURM_CONF=$d/slurm.conf
cleanup() {
  [ -f "$d/slurmd.pid" ] && kill "$(cat "$d/slurmd.pid")" 2>/dev/null
  [ -f "$d/slurmctld.pid" ] && kill "$(cat "$d/slurmctld.pid")" 2>/dev/null
  sleep 1
  rm -rf "$d"
}
trap cleanup EXIT

# munge authenticates Slurm's messages: start it unless it runs.
if ! munge -n >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null
  munged --force 2>/dev/null
  sleep 1
  munge -n >/dev/null 2>&1 || { echo "FAIL: munged does not start"; exit 1; }
fi

# Free ports for this cluster's two daemons.
ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
read -r ctld_port d_port <<<"$ports"
node=$(hostname -s)
hardware=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/ RealMemory=.*//')
mkdir -p "$d/state" "$d/spool"
cat > "$SLURM_CONF" <<EOF
ClusterName=swtest
SlurmctldHost=$node
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
ReturnToService=2
KillWait=5
NodeName=$node $hardware State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
slurmctld -f "$SLURM_CONF" && slurmd -f "$SLURM_CONF" || { echo "FAIL: Slurm's daemons do not start"; exit 1; }
for _ in $(seq 30); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 1
done
sinfo -h -o %t | grep -q idle || { sinfo; tail "$d"/*.log; echo "FAIL: the node is not idle"; exit 1; }

small=(--set corpus=/usr/share/common-licenses/GPL-3 --set tokenizer_vocab_size=400 --set batch_size=4
       --set input_length=32 --set target_length=12 --set eval_batches=1 --set log_interval=1)
export OMP_NUM_THREADS=1
launch_srun() { timeout 300 srun --overcommit --mpi=pmix --kill-on-bad-exit=1 "$@"; }
fail=0
check() {  # name, command...: runs it and records a failure
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fail=1; fi
}
train() {  # out, extra...: quiet, logged
  local out=$1; shift
  "$@" "$switch" train --out "$d/$out" "${small[@]}" --set steps=3 > "$d/$out.log" 2>&1 ||
    { tail -20 "$d/$out.log"; return 1; }
}
runs_dp() {
  train srun_dp2 launch_srun -n 2 && grep -q '^2 ranks: data parallel 2' "$d/srun_dp2.log" &&
    train mpirun_dp2 "$mpirun" --allow-run-as-root --oversubscribe -np 2
}
check "srun -n 2 dp=2 runs (and mpirun)" runs_dp
# The rank-ordered sums make dp=2 the same bits under any launcher.
check "srun dp=2 losses equal mpirun's" \
  python3 "$here/compare_losses.py" "$d/srun_dp2/metrics.jsonl" "$d/mpirun_dp2/metrics.jsonl" 0
same_shards() {
  local f
  for f in "$d"/mpirun_dp2/checkpoints/step-00000003/shard-*; do
    cmp "$f" "$d/srun_dp2/checkpoints/step-00000003/$(basename "$f")" || return 1
  done
}
check "srun dp=2 checkpoint bytes equal mpirun's" same_shards
layout_run() {  # ranks, layout
  timeout 300 srun --overcommit --mpi=pmix --kill-on-bad-exit=1 -n "$1" "$switch" train \
    --out "$d/srun_$2" "${small[@]}" --set steps=3 --parallel "$2" > "$d/srun_$2.log" 2>&1 ||
    { tail -20 "$d/srun_$2.log"; return 1; }
}
check "srun -n 4 ep=2,mp=2 runs" layout_run 4 ep=2,mp=2
one_process() {
  "$switch" train --out "$d/one" "${small[@]}" --set steps=3 --set micro_batches=2 \
    > "$d/one.log" 2>&1 || { tail -20 "$d/one.log"; return 1; }
}
check "one process with 2 micro-batches" one_process
check "srun ep=2,mp=2 losses within 1e-5 of one process" \
  python3 "$here/compare_losses.py" "$d/srun_ep=2,mp=2/metrics.jsonl" "$d/one/metrics.jsonl" 1e-5
# A rank killed mid-run: the job ends with an error (srun's non-zero status), not a hang.
dead_rank() {
  timeout 120 srun --overcommit --mpi=pmix --kill-on-bad-exit=1 -n 2 bash -c \
    'if [ "$SLURM_PROCID" = 1 ]; then (sleep 3; kill -9 $$) & fi; exec "$0" "$@"' \
    "$switch" train --out "$d/dead" "${small[@]}" --set steps=100000 --parallel dp=2 \
    > "$d/dead.log" 2>&1
  local rc=$?
  tail -3 "$d/dead.log"
  [ $rc -ne 0 ] && [ $rc -ne 124 ]
}
check "a killed rank ends the srun job" dead_rank
exit $fail
