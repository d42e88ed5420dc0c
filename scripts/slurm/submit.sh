#!/bin/bash
# Submits a whole sharded evaluation as four dependent SLURM jobs:
#   stats array (N_STATS tasks) → stats merge → eval array (N_EVAL tasks) → eval merge
#
#   scripts/slurm/submit.sh RUN_DIR N_EVAL N_STATS --hparams Y --model M --data F [keg eval flags…]
#
# N_STATS = 0 skips the statistics jobs (C given with --stats, cached already, or mom2_adjustment off).
# --hparams, --model, --corpus and --precision are passed to the statistics jobs too, so that the eval
# finds the merged C in the cache. Extra sbatch options (partition, account, GPUs, time) go in
# KEG_SBATCH_ARGS, e.g. KEG_SBATCH_ARGS="--partition=gpu --gres=gpu:1 --time=04:00:00".
# Prints the four job ids; RUN_DIR/merged holds the result.
set -euo pipefail
usage="usage: scripts/slurm/submit.sh RUN_DIR N_EVAL N_STATS keg-eval-flags…"
run="${1:?$usage}"
n_eval="${2:?$usage}"
n_stats="${3:?$usage}"
shift 3
case "$n_eval$n_stats" in *[!0-9]*) echo "submit.sh: N_EVAL and N_STATS must be whole numbers; $usage" >&2; exit 2 ;; esac
if [ "$n_eval" -lt 1 ]; then echo "submit.sh: N_EVAL must be at least 1" >&2; exit 2; fi
here="$(cd "$(dirname "$0")" && pwd)"
read -r -a extra <<< "${KEG_SBATCH_ARGS:-}"
stats_flags=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --hparams | --model | --corpus | --precision) stats_flags+=("${args[i]}" "${args[i + 1]:-}"); i=$((i + 1)) ;;
  esac
done
mkdir -p "$run"
dep=()
if [ "$n_stats" -gt 0 ]; then
  s=$(sbatch --parsable "${extra[@]}" --array=0-$((n_stats - 1)) -o "$run/stats-%A_%a.log" \
    "$here/stats.sbatch" "$run/stats-shards" "${stats_flags[@]}")
  sm=$(sbatch --parsable "${extra[@]}" --dependency=afterok:"$s" -o "$run/stats-merge-%j.log" \
    "$here/stats_merge.sbatch" "$run/stats-shards")
  echo "stats array $s, stats merge $sm"
  dep=(--dependency=afterok:"$sm")
fi
e=$(sbatch --parsable "${extra[@]}" "${dep[@]}" --array=0-$((n_eval - 1)) -o "$run/eval-%A_%a.log" \
  "$here/eval.sbatch" "$run" "$@")
em=$(sbatch --parsable "${extra[@]}" --dependency=afterok:"$e" -o "$run/eval-merge-%j.log" \
  "$here/eval_merge.sbatch" "$run")
echo "eval array $e, eval merge $em → $run/merged"
