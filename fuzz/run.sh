#!/usr/bin/env bash
# Runs one fuzz target (or all) for SECONDS each, with the flags each target needs.
#   fuzz/run.sh [TARGET|all] [SECONDS]      e.g. fuzz/run.sh all 60     fuzz/run.sh checkpoint_load 1800
# New inputs go to fuzz/corpus-run/TARGET (not committed); fuzz/corpus/TARGET holds the seeds.
# Crashes are written to fuzz/artifacts/TARGET and make the script fail.
# A fuzzer runs on one core: FUZZ_JOBS targets (default: every core) run side by side, each
# writing fuzz/logs/TARGET.log, printed when it ends.
set -euo pipefail
cd "$(dirname "$0")"
target="${1:-all}"
seconds="${2:-60}"
targets=(update_differential config checkpoint_load safetensors_model tokenizer_input glue_tsv)
[ "$target" = all ] || targets=("$target")
# tokenizer_input reads the real model's tokenizer: fetch it unless RECADAM_MINILM_DIR names one.
case " ${targets[*]} " in
  *" tokenizer_input "*) [ -n "${RECADAM_MINILM_DIR:-}" ] || ../scripts/fetch-minilm.sh ;;
esac
fuzz_one() {
  local t="$1"
  local flags=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
  case "$t" in
    # Checkpoint inputs are small: a single allocation above 32 MB is a loader bug.
    checkpoint_load) flags+=(-dict=dict/checkpoint_load.dict -malloc_limit_mb=32) ;;
    # Model files are small in the corpus: the tiny model is a few kB.
    safetensors_model) flags+=(-dict=dict/safetensors_model.dict -malloc_limit_mb=32) ;;
    # GLUE files: tabs, line breaks, a BOM and quotes are what matters.
    glue_tsv) flags+=(-dict=dict/glue_tsv.dict -malloc_limit_mb=64) ;;
  esac
  mkdir -p "corpus-run/$t"
  cargo +nightly fuzz run -O "$t" "corpus-run/$t" "corpus/$t" -- "${flags[@]}" > "logs/$t.log" 2>&1
}
# Built once, before any runs (the runs then only start their programs).
if [ "$target" = all ]; then cargo +nightly fuzz build -O; else cargo +nightly fuzz build -O "$target"; fi
mkdir -p logs
jobs="${FUZZ_JOBS:-$(nproc)}"
failed=()
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  batch=("${targets[@]:i:jobs}")
  pids=()
  for t in "${batch[@]}"; do
    echo "=== fuzz $t for ${seconds}s"
    fuzz_one "$t" &
    pids+=($!)
  done
  for j in "${!batch[@]}"; do
    status=0
    wait "${pids[$j]}" || status=$?
    echo "=== ${batch[$j]}: exit status $status"
    tail -n 40 "logs/${batch[$j]}.log"
    [ "$status" = 0 ] || failed+=("${batch[$j]}")
  done
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]} (logs in fuzz/logs, inputs in fuzz/artifacts)" >&2
  exit 1
fi
