#!/usr/bin/env bash
# NB201 / CIFAR-10 at the paper's scale on one GPU (issue 7): one stage per device call.
#
#   bash benchmarks/device/nb201_gpu.sh --stage supernets    # train 3 supernets, score, analyze
#   bash benchmarks/device/nb201_gpu.sh --stage standalone   # FBN-NAS Figs. 2-3 (its own call)
#
# Data: the device machine cannot see ../shared. Before the call, fill the git-ignored .data/
# folder of the repo and name it in the device tool's `carry`:
#   mkdir -p .data && cp ../shared/data/cifar10/cifar10-jpeg.tar.gz \
#                        ../shared/data/nasbench201/nb201_cifar10_accuracy.csv .data/
#   device tool: command "bash benchmarks/device/nb201_gpu.sh --stage supernets",
#                carry [".data"], timeout_s 600
# By hand on any GPU machine: the same command from the repo root (results land in ./device_out).
#
# Needs only what the device machine has (Python 3.12, jax with CUDA, flax, optax, orbax, numpy,
# scipy, matplotlib/pillow, tqdm, PyYAML); runs from the repo with PYTHONPATH=. (no install) and
# never imports tensorflow, tensorflow-datasets or neural-tangents (the benchmark checks).
#
# Environment (all optional):
#   FBNAS_PRESET          gpu (default) | cpu | smoke   (smoke: the CPU end-to-end test of this script)
#   FBNAS_DATA_DIR        folder with the two files above (default ./.data)
#   OUT                   where the packed results go (the device tool sets it; default ./device_out)
#   FBNAS_STAGE_BUDGET_S  wall-clock limit of the stage's Python run (default 540 s, inside the
#                         tool's 600 s); what finished before it is packed all the same
#   FBNAS_WORK_DIR        scratch: results, checkpoints (default ./.device_work, git-ignored;
#                         reused by a rerun on a warm machine)
#   FBNAS_CACHE_DIR       decoded images and the XLA compilation cache (default $FBNAS_WORK_DIR/cache)
#
# Output: $OUT/nb201_<stage>_<preset>.tar.gz (split into 15 MiB parts .part0, .part1, ... if larger;
# at most 8 files) holding results/<preset>/: scores CSV, JSON sidecars, markdown tables, figures and
# the stage's log (device name, JAX version, per-stage times). Unpack with
#   cat nb201_<stage>_<preset>.tar.gz* | tar -xz -C benchmarks/results   (-> benchmarks/results/<preset>/)
#
# Adding a stage (NB101, TEG, BaLeNAS...): define a function stage_<name> below that writes into
# "$RESULTS"; it is then selectable with --stage <name>. Nothing else changes.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2

stage_supernets() {
  "$PY" benchmarks/nb201_cifar10.py --preset "$PRESET" --stages train,score,analyze --out "$RESULTS" \
    --workdirs "$WORK/runs/$PRESET" --no-progress
}

stage_standalone() {
  "$PY" benchmarks/nb201_cifar10.py --preset "$PRESET" --stages standalone --out "$RESULTS" --no-progress
}

# ---------------------------------------------------------------------------- no edits needed below
STAGE=supernets
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) STAGE=${2:-}; shift 2 ;;
    --stage=*) STAGE=${1#*=}; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
STAGES=$(declare -F | sed -n 's/^declare -f stage_//p' | tr '\n' ' ')
if ! declare -F "stage_$STAGE" > /dev/null; then
  echo "error: unknown stage '$STAGE'; stages: $STAGES" >&2; exit 2
fi

export PRESET=${FBNAS_PRESET:-gpu}
DATA=${FBNAS_DATA_DIR:-$PWD/.data}
OUT=${OUT:-$PWD/device_out}
BUDGET=${FBNAS_STAGE_BUDGET_S:-540}
export WORK=${FBNAS_WORK_DIR:-$PWD/.device_work}
export RESULTS=$WORK/results/$PRESET
export PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export FBNAS_CIFAR10_ARCHIVE=$DATA/cifar10-jpeg.tar.gz
export FBNAS_NB201_CSV=$DATA/nb201_cifar10_accuracy.csv
export FBNAS_CACHE_DIR=${FBNAS_CACHE_DIR:-$WORK/cache}  # decoded images (.npz), XLA compilation cache (xla/)
export MPLBACKEND=Agg TQDM_DISABLE=1  # progress bars would flood the log that comes back
for f in "$FBNAS_CIFAR10_ARCHIVE" "$FBNAS_NB201_CSV"; do
  if [ ! -f "$f" ]; then echo "error: $f is missing: fill $DATA first (see --help)" >&2; exit 2; fi
done
mkdir -p "$RESULTS" "$OUT" "$FBNAS_CACHE_DIR"
LOG=$RESULTS/device_$STAGE.log
{
  echo "stage=$STAGE preset=$PRESET budget=${BUDGET}s start=$(date -u +%Y-%m-%dT%H:%M:%SZ) host=$(hostname)"
  nvidia-smi -L 2> /dev/null || echo "nvidia-smi: not available"
  "$PY" -c "import sys, jax; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())"
} > "$LOG" 2>&1

t0=$(date +%s)
export -f "stage_$STAGE"
timeout --signal=TERM --kill-after=20 "$BUDGET" bash -c "stage_$STAGE" >> "$LOG" 2>&1
rc=$?
[ "$rc" = 124 ] && echo "stage stopped by the ${BUDGET}s budget; finished outputs are kept" >> "$LOG"
echo "rc=$rc seconds=$(( $(date +%s) - t0 ))" >> "$LOG"

name=nb201_${STAGE}_${PRESET}.tar.gz
rm -f "$OUT/$name" "$OUT/$name".part*
tar -czf "$OUT/$name" -C "$WORK/results" "$PRESET"
if [ "$(stat -c %s "$OUT/$name")" -gt $(( 15 * 1024 * 1024 )) ]; then
  split -b 15M -d -a 1 "$OUT/$name" "$OUT/$name.part" && rm "$OUT/$name"
  parts=$(ls "$OUT/$name".part* | wc -l)
  [ "$parts" -le 8 ] || echo "warning: $parts parts; only 8 files come back from the device" >&2
fi
tail -n 40 "$LOG"
ls -l "$OUT"
exit "$rc"
