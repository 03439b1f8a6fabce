#!/usr/bin/env bash
# `switch train` over several ranks on GPUs against one process on the same GPU: dp=2,
# ep=2, mp=2 and ep=2,mp=2 (4 ranks) with device tensors staged through host memory
# (--comm staged, the ranks sharing GPU 0 when there is one), the losses within 1e-5, the
# ep run continued in one process; then a table of step time and traffic per layout. Exit
# 77 (skipped) without a CUDA device.
#
#   tests/dist/gpu_cli_layouts.sh SWITCH MPIRUN [CORPUS]
set -uo pipefail
switch=$1
mpirun=$2
corpus=${3:-/usr/share/common-licenses/GPL-3}
here=$(cd "$(dirname "$0")" && pwd)
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
small=(--set "corpus=$corpus" --set tokenizer_vocab_size=400 --set batch_size=8 --set input_length=64
       --set target_length=16 --set eval_batches=1 --set log_interval=1)
launch=("$mpirun" --allow-run-as-root --oversubscribe -x LD_LIBRARY_PATH)

out=$("$switch" train --device cuda:0 --out "$d/one" "${small[@]}" --set micro_batches=2 --set steps=5 2>&1)
status=$?
if echo "$out" | grep -qE 'device cuda:0: (no CUDA device is visible|libswitch was built without CUDA)'; then
  echo "skipped: no CUDA device"
  exit 77
fi
[ $status -eq 0 ] || { echo "$out"; echo "FAIL: one process on cuda:0"; exit 1; }

fail=0
check() {  # name, command...: runs it and records a failure
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fail=1; fi
}
run_layout() {  # layout, ranks: trains 3 steps on the GPU, staged
  "${launch[@]}" -np "$2" "$switch" train --device cuda --comm staged --parallel "$1" --out "$d/$1" \
    "${small[@]}" --set steps=3 > "$d/$1.log" 2>&1 || { cat "$d/$1.log"; return 1; }
}
for layout in dp=2:2 ep=2:2 mp=2:2 ep=2,mp=2:4; do
  ranks=${layout#*:}
  layout=${layout%:*}
  check "$layout runs" run_layout "$layout" "$ranks"
  check "$layout losses within 1e-5 of one process" \
    python3 "$here/compare_losses.py" "$d/$layout/metrics.jsonl" "$d/one/metrics.jsonl" 1e-5
done
# Step time and traffic per layout, from each run's summary and rank 0's report (the
# one-process run took 5 steps, the others 3; each includes its first, slower step).
echo
echo "| layout | ranks | train tokens/s | rank 0 sent per step |"
echo "|---|---|---|---|"
python3 - "$d" <<'EOF' || fail=1
import json, os, re, sys
d = sys.argv[1]
for name, ranks in (("one", 1), ("dp=2", 2), ("ep=2", 2), ("mp=2", 2), ("ep=2,mp=2", 4)):
    summary = json.load(open(os.path.join(d, name, "summary.json")))
    log = os.path.join(d, name + ".log")
    sent = re.search(r"sent ([0-9.]+) MiB per step", open(log).read()) if os.path.exists(log) else None
    print(f"| {name} | {ranks} | {summary['tokens_per_s']:.0f} | {sent.group(1) + ' MiB' if sent else '-'} |")
EOF

# The ep run's checkpoint holds the whole model: one process on the GPU continues it.
continue_ep() {
  "$switch" train --device cuda:0 --out "$d/ep=2" "${small[@]}" --set micro_batches=2 --set steps=5 \
    --resume > "$d/resume.log" 2>&1 && grep -q 'resumed from .*step-00000003' "$d/resume.log"
}
check "ep=2 continued in one process" continue_ep
check "continued losses within 1e-5" \
  python3 "$here/compare_losses.py" "$d/ep=2/metrics.jsonl" "$d/one/metrics.jsonl" 1e-5

exit $fail
