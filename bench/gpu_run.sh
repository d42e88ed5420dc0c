#!/usr/bin/env bash
# Every GPU check keg has, in one run of at most ~8 minutes, for a lent GPU machine (H100/H200, no
# internet, 15 minutes of device time in all). It writes ONE report file, $OUT/gpu_report.md (OUT defaults
# to out/gpu), with each step's output, and keeps going when a step fails or times out.
#
#   here:        bash ../shared/tools/gpu-carry.sh      # .gpu/: deno, the Vulkan loader, prelude.sh
#   GPU machine: source .gpu/prelude.sh; bash bench/gpu_run.sh
#   dry run:     bash bench/gpu_run.sh --dry-run         # tiny sizes, on lavapipe, to prove the script
#
# Steps: adapter facts; selfcheck (kernels vs TS references, a forward); the dispatch micro-bench; kernel
# and linalg benches at GPU sizes; a HF-transformers forward comparison on a random-weight Llama written
# here by bench/gpu/hf_reference.py (logits and time; skipped without torch + transformers); the
# Llama-2-7B-shaped R-ROME edit bench (per-edit time, peak memory).
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0; [ "${1:-}" = "--dry-run" ] && dry=1
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
report="$OUT/gpu_report.md"
deno_bin=$(command -v deno || echo .tools/node_modules/.bin/deno)
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} NO_COLOR=1
py=$(command -v python3 || true)
start=$(date +%s)

{
  echo "# keg GPU run $(date -u +%FT%TZ)$([ $dry = 1 ] && echo " (dry run: tiny sizes)")"
  echo
  echo "host: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; deno: $("$deno_bin" --version | head -1)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} > "$report"

# step NAME SECONDS CMD… — runs with a time limit, appends its output (last 200 lines) to the report
step() {
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  echo "== $name (limit ${limit}s)" >&2
  local log; log=$(mktemp)
  timeout --kill-after=5 "$limit" "$@" > "$log" 2>&1
  local rc=$?
  {
    echo; echo "## $name"; echo
    echo "rc $rc$([ $rc = 124 ] && echo ' (timed out)'), $(( $(date +%s) - t0 )) s"; echo
    echo '```'; tail -n 200 "$log"; echo '```'
  } >> "$report"
  rm -f "$log"
}

if [ $dry = 1 ]; then
  sizes=(KEG_BENCH_MATMUL=256 KEG_BENCH_GEMV=512,512 KEG_BENCH_OUTER=512 KEG_BENCH_COV=256,256
    KEG_BENCH_CHOL=256 KEG_BENCH_DISPATCHES=200)
  b7=(KEG_BENCH_7B=1 KEG_BENCH_7B_DIMS=64,172,2,300 KEG_BENCH_7B_EDITS=1 KEG_BENCH_STEPS=2)
  hf=(--hidden 64 --inter 172 --layers 2 --heads 4 --kv_heads 4 --vocab 300 --batch 2 --seq 8 --reps 1)
else
  sizes=(KEG_BENCH_MATMUL=4096 KEG_BENCH_GEMV=4096,4096 KEG_BENCH_OUTER=4096 KEG_BENCH_COV=4096,4096
    KEG_BENCH_CHOL=4096,11008 KEG_BENCH_DISPATCHES=2000)
  b7=(KEG_BENCH_7B_EDITS=2)
  hf=(--hidden 2048 --inter 5504 --layers 16 --heads 16 --kv_heads 16 --vocab 32000 --batch 4 --seq 64)
fi

step "adapter" 30 "$deno_bin" eval 'const a = await navigator.gpu.requestAdapter();
  console.log(JSON.stringify({ info: a?.info, features: [...(a?.features ?? [])],
    maxStorageBufferBindingSize: a?.limits.maxStorageBufferBindingSize, maxBufferSize: a?.limits.maxBufferSize }))'
step "selfcheck" 60 "$deno_bin" run -A lib/cli/main.ts selfcheck
step "dispatch bench" 60 env "${sizes[@]}" "$deno_bin" bench -A bench/dispatch_bench.ts
step "kernels bench" 150 env "${sizes[@]}" "$deno_bin" bench -A bench/kernels_bench.ts
step "linalg bench" 75 env "${sizes[@]}" "$deno_bin" bench -A bench/linalg_bench.ts
if [ -n "$py" ] && "$py" -c "import torch, transformers" 2>/dev/null; then
  hfdir=$(mktemp -d)
  step "HF reference (transformers)" 90 "$py" bench/gpu/hf_reference.py "$hfdir" "${hf[@]}"
  step "keg vs HF forward" 90 "$deno_bin" run -A bench/gpu/hf_compare.ts "$hfdir" "$([ $dry = 1 ] && echo 1 || echo 5)"
  rm -rf "$hfdir"
else
  echo -e "\n## keg vs HF forward\n\nskipped: no python3 with torch + transformers" >> "$report"
fi
step "Llama-2-7B-shaped R-ROME edit bench" 180 env "${b7[@]}" "$deno_bin" bench -A bench/edit_7b_bench.ts

echo -e "\ntotal $(( $(date +%s) - start )) s" >> "$report"
echo "wrote $report ($(( $(date +%s) - start )) s)" >&2
