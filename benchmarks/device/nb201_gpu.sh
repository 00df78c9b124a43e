#!/usr/bin/env bash
# NB201 / CIFAR-10 at the paper's scale on one GPU (issue 7): one stage per device call.
#
#   bash benchmarks/device/nb201_gpu.sh --prepare            # here: copy the data into ./.data (git-ignored)
#   bash benchmarks/device/nb201_gpu.sh --stage supernets    # call 1: train 3 supernets, score, analyze
#   bash benchmarks/device/nb201_gpu.sh --stage standalone   # call 2: FBN-NAS Figs. 2-3 (stand-alone nets)
#   bash benchmarks/device/nb201_gpu.sh --stage teg_searches # TE-NAS/TEG pruning + TEG evolution (issue 11)
#   bash benchmarks/device/nb201_gpu.sh --stage perf         # the scoring engine vs PyTorch, CPI time (issue 14; no data)
#   bash benchmarks/device/nb201_gpu.sh --stage perf_big     # the same side by side at C=16, N=5 (issue 14; no data)
#   bash benchmarks/device/nb201_gpu.sh --stage perf_route   # CPI at C=16, N=5 with the routed execution, fp32 and bf16 (issue 14; no data)
#   bash benchmarks/device/nb201_gpu.sh --stage perf_ab      # A/B of the gradient proxies' GPU candidates (issue 14)
#   bash benchmarks/device/nb201_gpu.sh --stage perf_next    # the next session's plan: CPI route bf16/fp32, the four
#                                                            # lagging proxies' candidates, the cost model (2 calls)
#
# Data: the device machine cannot see ../shared. `--prepare` copies the CIFAR-10 archive and the
# NB201 truth CSV from $FBNAS_SHARED_DATA (default ../shared/data) into ./.data; name it in the
# device tool's `carry`:
#   device tool: command "bash benchmarks/device/nb201_gpu.sh --stage supernets",
#                carry [".data"], timeout_s 600          (then --stage standalone on the warm machine)
# By hand on any GPU machine: the same commands from the repo root (results land in ./device_out).
#
# TIME BUDGET (an ESTIMATE, not a measurement: no GPU has run this yet). A session has 15 min of
# device time, a machine start (~3-4 min) included, so ~11 usable minutes and no room for a rerun:
#   call 1 supernets  : budget 500 s (FBNAS_STAGE_BUDGET_S); estimate ~475 s =
#                       decode the 60k JPEGs once                                            ~45 s
#                       + 3 supernets x (~30 s compile + <= 60 s of steps: train_budget_s)  ~270 s
#                       + score: gamma/trainability x 15,625 (~1 s), then on a 1,000-arch pool
#                         expressivity, uncertainty, cpi @fair, synflow (naswot, snip, ... if
#                         the GPU beats the estimate)                                       ~130 s
#                       + analyze (correlations, Tables 1-2, EA 10 seeds; CPU)              ~30 s
#                       Columns that would start after the deadline (budget - 60 s) are skipped and
#                       listed in the sidecar; the analysis runs on what was scored.
#   call 2 standalone : budget 150 s; standalone_budget_s 100 s -> ~34 networks per BN placement.
#   Together ~650 s of command time (~10.8 min) + transfers.
# Derivation: benchmarks/device/estimate_gpu_time.py (FLOP counts of the NB201 cost model, the
# supernet computing every candidate op, 3 forward-equivalents per training image, an assumed
# 12 TFLOP/s effective on one H100 because C=16-64 convolutions are memory-bound, 30 s of XLA
# compilation per program). Calibrate it with the per-stage times this script logs.
#
# Needs only what the device machine has (Python 3.12, jax with CUDA, flax, optax, orbax, numpy,
# scipy, matplotlib/pillow, tqdm, PyYAML); runs from the repo with PYTHONPATH=. (no install) and
# never imports tensorflow, tensorflow-datasets or neural-tangents (the benchmark checks and fails).
#
# Environment (all optional):
#   FBNAS_PRESET          gpu (default) | cpu | smoke   (smoke: the CPU end-to-end test of this script)
#   FBNAS_DATA_DIR        folder with the two files above (default ./.data)
#   OUT                   where the packed results go (the device tool sets it; default ./device_out)
#   FBNAS_STAGE_BUDGET_S  wall-clock limit of the stage's Python run (default: supernets 500 s,
#                         standalone 150 s); what finished before it is packed all the same
#   FBNAS_OVERRIDES       extra config overrides for every network, space-separated, e.g.
#                         "train.learning_rate=1" if the adopted rate 2 diverges at C=16, N=5
#   FBNAS_WORK_DIR        scratch: results, checkpoints (default ./.device_work, git-ignored;
#                         reused by a rerun on a warm machine: finished supernets are not retrained)
#   FBNAS_CACHE_DIR       decoded images and the XLA compilation cache (default $FBNAS_WORK_DIR/cache)
#   FBNAS_PERF_FROM       perf_next: start at this step (the ones before it are skipped)
#   FBNAS_PERF_KERNEL_GRAD perf_next: lax (default) | patches, the kernel gradients of its routed proxies step
#
# Output: $OUT/nb201_<stage>_<preset>.tar.gz (split into 15 MiB parts .part0, .part1, ... if larger;
# at most 8 files) holding results/<preset>/: scores CSV, JSON sidecars, markdown tables, figures and
# the stage's log (device name, JAX version, per-stage times). Unpack with
#   cat nb201_<stage>_<preset>.tar.gz* | tar -xz -C benchmarks/results   (-> benchmarks/results/<preset>/)
# If call 1 is cut before its analysis, run it here on the returned CSV:
#   python benchmarks/nb201_cifar10.py --preset gpu --stages analyze --out benchmarks/results/gpu
#
# Adding a stage (NB101, TEG, BaLeNAS...): define a function stage_<name> below that writes into
# "$RESULTS"; it is then selectable with --stage <name>. Nothing else changes.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2

stage_supernets() {  # default budget 500 s; no score column starts after budget - 60 s
  # shellcheck disable=SC2086  # FBNAS_OVERRIDES is a space-separated list on purpose
  "$PY" benchmarks/nb201_cifar10.py --preset "$PRESET" --stages train,score,analyze --out "$RESULTS" \
    --workdirs "$WORK/runs/$PRESET" --deadline-s $(( BUDGET - 60 )) --no-progress --override $OVERRIDES
}
BUDGET_supernets=500

stage_standalone() {  # default budget 150 s (the preset's standalone_budget_s: 100 s of training)
  # shellcheck disable=SC2086
  "$PY" benchmarks/nb201_cifar10.py --preset "$PRESET" --stages standalone --out "$RESULTS" --no-progress \
    --override $OVERRIDES
}
BUDGET_standalone=150

stage_teg_searches() {  # default budget 480 s: TE-NAS / TEG pruning, TEG evolution, NASWOT evolution (issue 11)
  # C=16, N=5, 32x32, NTK batch 72, 1,000 inputs for linear regions, 3 repeats, 5 seeds (seeds outer loop):
  # an ESTIMATE (never run on a GPU); the runs that would start after budget - 120 s are skipped and listed.
  "$PY" benchmarks/teg_searches.py --preset "$PRESET" --out "$RESULTS/teg_searches" --deadline-s $(( BUDGET - 120 )) \
    --data "$FBNAS_CIFAR10_ARCHIVE" --truth "$FBNAS_NB201_CSV" --no-progress
}
BUDGET_teg_searches=480

stage_teg_indicators() {  # default budget 540 s: Kendall tau of the TEG indicators over the space (issue 11)
  # gpu preset: all 15,625 archs, C=3, N=1 as TE-NAS, NTK batch 64+64; stops scoring after budget - 90 s
  # and analyses what it has; a rerun of the stage resumes from the CSV in $RESULTS.
  "$PY" benchmarks/teg_nb201.py --preset "$PRESET" --max-minutes $(( (BUDGET - 90) / 60 )) --no-progress \
    --out "$RESULTS/teg_nb201_$PRESET"
}
BUDGET_teg_indicators=540

# The scoring engine on the GPU (issue 14): two stages, one per session (each fills a session's device time;
# neither needs data: synthetic images). First run, H200, 2026-11-27 (benchmarks/results/gpu/perf_h200/):
# compiling took 3-30 s per program at C=8, N=1, 10-15 s for the forward programs at C=16, N=5 and 55 s
# for uncertainty there (one recompile for memory: ~1.04 GB per architecture in a vmapped chunk); the
# gradient programs at C=16, N=5 did not finish compiling + running within 110-190 s. Hence the sizes below.
perf_step() {  # perf_step LIMIT_S NAME CMD...: CMD for at most LIMIT_S, never past $deadline
  local limit=$1 name=$2; shift 2
  local left=$(( deadline - $(date +%s) ))
  if [ "$left" -lt 30 ]; then echo "== $name: skipped, ${left}s left"; return; fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "== $name (limit ${limit}s) $(date -u +%T)"
  local t0; t0=$(date +%s)
  timeout --signal=INT --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "== $name: rc=$rc in $(( $(date +%s) - t0 ))s"
  # results come back even if the whole call is cut (one file: the device returns at most 8)
  tar -czf "$OUT/perf_partial.tar.gz" -C "$RESULTS" perf "device_$STAGE.log" 2> /dev/null
  return $rc
}
perf_setup() {  # sets the sizes (gpu | smoke: CPU, tiny, the test of these stages) and ours_only; each stage runs
  # in its own `bash -c`, so these plain variables end with it
  deadline=$(( $(date +%s) + BUDGET - 20 )) dir=$RESULTS/perf vp=benchmarks/vs_pytorch.py ours_only=""
  big=16:5 small=8:1 n_big=200 n_small=400 ref_big=10 ref_small=20 cpi=1000 cpi_map=300 bf=64 dev=cuda
  ch_big=100 ch_small=200 ch_cpi=32 ch_map=32 ch_bf=32 extra=""
  chunks_big=uncertainty=40,ntk_cond=4,grasp=10,snip=25,grad_norm=25,fisher=25,jacob_cov=50
  chunks_small=ntk_cond=20,grasp=50,snip=100,grad_norm=100,fisher=100,jacob_cov=100
  if [ "$PRESET" = smoke ]; then
    big=4:1 small=4:1 n_big=4 n_small=4 ref_big=2 ref_small=2 cpi=8 cpi_map=4 bf=4 dev=cpu
    ch_big=4 ch_small=4 ch_cpi=4 ch_map=2 ch_bf=2 chunks_big=ntk_cond=2 chunks_small=ntk_cond=2
    extra="--batch-size 8 --ntk-batch-size 8 --mc-samples 2 --mc-batch-size 8 --image-size 16"
  fi
  mkdir -p "$dir"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
  if ! "$PY" -c "import sys, torch; sys.exit(0 if '$dev' == 'cpu' or torch.cuda.is_available() else 1)" 2> /dev/null; then
    ours_only=--ours-only; echo "no PyTorch for $dev: the side by side runs ours only"
  fi
}
export -f perf_step perf_setup

stage_perf() {  # default budget 540 s: CPI timings, the side by side at C=8, N=1, bf16 ranks
  #   1. CPI (uncertainty + trainability + expressivity) over 1,000 archs at C=16, N=5, vmap, chunk 32
  #   2. the same with the lax.map execution (only the chosen ops), 300 archs: never measured on a GPU
  #   3. side by side with the PyTorch loop (CUDA), every proxy, C=8, N=1: ours on 400 archs, the loop on the
  #      first 20 (its archs/s does not depend on the count), 2 interleaved repeats; ntk_cond and grasp first
  #      (the first run measured the other nine)
  #   4. fp32 vs bf16 rank agreement of 64 archs at C=8, N=1
  perf_setup
  # shellcheck disable=SC2086  # $extra is a list of flags on purpose
  {
  perf_step 120 cpi_vmap "$PY" $vp --ours-only --sizes $big:1 --proxies "" --cpi-archs $cpi --chunk-size $ch_cpi \
    --execution vmap --out "$dir" --tag cpi_vmap $extra
  perf_step 100 cpi_map "$PY" $vp --ours-only --sizes $big:1 --proxies "" --cpi-archs $cpi_map --chunk-size $ch_map \
    --execution map --out "$dir" --tag cpi_map $extra
  perf_step 220 side_by_side_small "$PY" $vp $ours_only --device $dev --sizes $small:$n_small --ref-archs $ref_small \
    --repeats 2 --proxies ntk_cond,grasp,snip,grad_norm,naswot,expressivity,uncertainty,linear_regions,jacob_cov,fisher,synflow \
    --chunk-size $ch_small --proxy-chunks $chunks_small --out "$dir" --tag side_by_side_small $extra
  perf_step 90 bf16 "$PY" benchmarks/bf16_ranks.py --sizes $small:$bf --chunk-size $ch_bf --out "$dir" --tag bf16 \
    --indicators naswot,synflow,expressivity,supernet_accuracy,uncertainty,snip,grad_norm ${extra:+--setup "$extra"}
  }
}
BUDGET_perf=540
NEEDS_DATA_perf=0

stage_perf_big() {  # default budget 540 s: the side by side at C=16, N=5, gradient proxies first
  perf_setup
  # shellcheck disable=SC2086
  perf_step 520 side_by_side_big "$PY" $vp $ours_only --device $dev --sizes $big:$n_big --ref-archs $ref_big \
    --repeats 2 --proxies jacob_cov,snip,grad_norm,fisher,synflow,grasp,ntk_cond,naswot,expressivity,uncertainty,linear_regions \
    --chunk-size $ch_big --proxy-chunks $chunks_big --out "$dir" --tag side_by_side_big $extra
}
BUDGET_perf_big=540
NEEDS_DATA_perf_big=0

stage_perf_ab() {  # default budget 480 s: benchmarks/gpu_ab.py, the A/B of the candidates for the gradient proxies
  # that missed 10x the PyTorch loop (ntk_cond cotangent blocks, im2col kernel gradients, exact float32 vs TF32),
  # C=8, N=1. ESTIMATE from the first GPU run (compile 5-25 s per program): ~330 s, worst ~375 s (see its --help).
  # gpu_ab.py starts no compilation that its estimate ends past --deadline-s (its own clock, which starts after
  # perf_setup) and writes JSON + markdown after every measurement; perf_step's timeout is the backstop.
  perf_setup
  local smoke=""
  [ "$PRESET" = smoke ] && smoke=--smoke
  # shellcheck disable=SC2086  # $smoke and $ours_only are flags or nothing
  perf_step $(( BUDGET - 20 )) gpu_ab "$PY" benchmarks/gpu_ab.py $smoke $ours_only --device $dev \
    --deadline-s $(( BUDGET - 60 )) --out "$dir"
}
BUDGET_perf_ab=480
NEEDS_DATA_perf_ab=0

stage_perf_route() {  # default budget 540 s: CPI at C=16, N=5 with the routed execution (issue 14; no data)
  #   1. route, float32: 1,000 architectures in chunks of 125 (cap 32 on a random list); all 15,625 measured
  #      (balanced cosets, cap 25) if the extrapolation is under 150 s
  #   2. route, bfloat16 (uncertainty and expressivity are in BF16_SAFE): the same, all 15,625 if under 150 s
  #   3. fp32 vs bf16 Kendall tau of uncertainty and expressivity, 64 architectures at C=16, N=5 (route)
  #   4. vmap, map and route side by side on one coset of 125, FLOPs per architecture (route_cpi.py)
  # ESTIMATE: compile ~35 s per routed CPI (CPU: 34 s), run unknown (the point of the stage); steps 1-2 at most
  # 150 + 220 s, step 3 90 s, step 4 what is left.
  perf_setup
  local sizes=16:5:1 tau=16:5:64 rc=16:5 ch=125 ch_tau=32 chunks=vmap=32,map=32,route=125 full=150 rc_extra=""
  if [ "$PRESET" = smoke ]; then
    sizes=4:1:1 tau=4:1:8 rc=4:1 ch=25 ch_tau=8 chunks=vmap=5,map=5,route=25 full=0
    rc_extra="--batch-size 8 --mc-samples 2 --mc-batch-size 8 --image-size 16"
  fi
  # shellcheck disable=SC2086  # $extra and $rc_extra are lists of flags on purpose
  {
  perf_step 150 cpi_route "$PY" $vp --ours-only --sizes $sizes --proxies "" --cpi-archs $cpi --chunk-size $ch \
    --execution route --cpi-full-under $full --out "$dir" --tag cpi_route $extra
  perf_step 220 cpi_route_bf16 "$PY" $vp --ours-only --sizes $sizes --proxies "" --cpi-archs $cpi --chunk-size $ch \
    --execution route --precision bfloat16 --cpi-full-under $full --out "$dir" --tag cpi_route_bf16 $extra
  perf_step 90 bf16_c16 "$PY" benchmarks/bf16_ranks.py --sizes $tau --chunk-size $ch_tau --execution route \
    --indicators uncertainty,expressivity --out "$dir" --tag bf16_c16_route ${extra:+--setup "$extra"}
  perf_step 200 route_cpi "$PY" benchmarks/route_cpi.py --sizes $rc --chunks $chunks --repeats 2 --out "$dir" \
    --tag gpu $rc_extra
  }
}
BUDGET_perf_route=540
NEEDS_DATA_perf_route=0

stage_perf_next() {  # default budget 540 s: the next GPU session's plan for issue 14, in TWO device calls
  # The device tool's commands (a session has 15 min of device time, machine start ~30-90 s included):
  #   call 1: run(command="bash benchmarks/device/nb201_gpu.sh --stage perf_next", timeout_s=560)
  #   call 2: run(command="FBNAS_STAGE_BUDGET_S=235 FBNAS_PERF_FROM=lagging_route bash benchmarks/device/nb201_gpu.sh
  #                        --stage perf_next", timeout_s=250)   (at once: a warm machine keeps ./.device_work)
  #   (call 2: if status says less than 250 s are left, FBNAS_STAGE_BUDGET_S = budget_left_s - 15, timeout_s =
  #   budget_left_s; then give_back.) No data, no carry. Results: $OUT/nb201_perf_next_gpu.tar.gz (+ perf_partial
  #   .tar.gz after every step) -> benchmarks/results/gpu/<run>/ (cat ... | tar -xz; the JSON/md are in gpu/perf/).
  # Steps in priority order; each runs in its own process (a failing step logs its rc and the next runs), writes its
  # JSON + markdown as it goes, and is marked done in $WORK/perf_next_done on rc 0: a rerun of the stage on the warm
  # machine goes on with the first step not done. FBNAS_PERF_FROM=<step> skips the steps before it (call 2 on a
  # machine that is not warm any more). A step starts only with at least its MIN seconds left before the deadline
  # (budget - 20 s) and runs at most LIMIT seconds.
  # ESTIMATES (not measurements) from GPU run 2 (H200, benchmarks/results/gpu/perf_h200_2): a vs_pytorch CPI process
  # spent ~57 s besides compiling and scoring (cpi_vmap: 107 s = 30 s compile + 21 s run + 56 s; cpi_map 87 = 24 + 5
  # + 58); CPI compiled in 24-30 s at C=16, N=5 (routed CPI on this CPU: 34 s); proxies at C=8, N=1 compiled in
  # 5-25 s (snip 10, grad_norm 5, grasp 25, ntk_cond 17) and ran at 684/696/146/9.1 archs/s (vmap); the PyTorch loop
  # takes 0.26 s (ntk_cond), 0.036 s (grasp), 0.008 s (snip, grad_norm) per architecture.
  #                         MIN/LIMIT s  ESTIMATE
  #   (a) cpi_route_bf16    120/270      90-270 s: 57 + compile ~30 + 250 random archs (~5 s) + if the extrapolation
  #                                      is under 150 s, all 15,625 (balanced cosets: one more compile ~30 + <= 150)
  #       cpi_route_fp32    120/250      the same in float32 (compile and run times reported apart in the JSON)
  #   (b) lagging_route     90/200       100-140 s: snip, grad_norm, grasp, ntk_cond ours (--execution route, chunk
  #                                      125) vs the PyTorch loop (10 archs), 2 repeats: setup ~20, 4 compiles ~60,
  #                                      runs <= 45 (ntk_cond at >= 9 archs/s), the loop ~9
  #       gpu_candidates    60/200       150-170 s: gpu_ab.py kernel_grad (snip/grad_norm, kernel_grad="patches" vs
  #                                      lax, ~40 s) then ntk_blocks (cotangent_block 1, 8, 72: ~90-110 s) + setup ~20;
  #                                      its --deadline-s starts no compilation that would end past the step's limit
  #       bf16_c16_route    60/90        60-120 s: fp32 vs bf16 Kendall tau of uncertainty and expressivity at C=16,
  #                                      N=5, 64 archs, route (is the bf16 CPI of (a) a valid ranking?): 4 compiles
  #   (c) cost_model_gpu    45/rest      XLA cost analysis of the GPU-compiled programs (benchmarks/cost_model.py,
  #                                      no PyTorch): CPI indicators at C=16, N=5 and the four proxies at C=8, N=1,
  #                                      vmap and route; one row per 5-60 s of compilation, written as it goes
  # Expected: call 1 = (a) (180-520 s; what is left starts (b)); call 2 = (b) lagging_route + gpu_candidates as far
  # as they get; bf16_c16_route and (c) only if (a) is fast (all ~900 s of device time are spent by then).
  # lagging_route takes the kernel gradients with lax (grouped per slot). On the CPU, patches made routed snip and
  # grad_norm 2.1x and ntk_cond >= 2.1x faster (benchmarks/results/route/README.md); if gpu_candidates finds
  # patches faster on the GPU too, a session with time left reruns the step as lagging_route_patches:
  #   FBNAS_PERF_KERNEL_GRAD=patches FBNAS_PERF_FROM=lagging_route_patches (its own tag and done marker).
  local kg=${FBNAS_PERF_KERNEL_GRAD:-lax} lag_step=lagging_route
  case "$kg" in
    lax) ;;
    patches) lag_step=lagging_route_patches ;;
    *) echo "error: FBNAS_PERF_KERNEL_GRAD=$kg: lax or patches" >&2; return 2 ;;
  esac
  perf_setup
  local done_dir=$WORK/perf_next_done from=${FBNAS_PERF_FROM:-} skipping=""
  [ -n "$from" ] && skipping=1
  local cpi_sizes=16:5:1 cpi_n=250 ch_route=125 full=150 lag_sizes=8:1:125 ref=10 reps=2 tau=16:5:64 ch_tau=32
  local lag=snip,grad_norm,grasp,ntk_cond
  local ab="--blocks 1,8,72" cm="--sizes 16:5,8:1" cm_proxies=snip,grad_norm,grasp,ntk_cond,uncertainty,expressivity
  local cm_extra="" smoke="" ab_deadline ab_exps=kernel_grad,ntk_blocks tau_ind=uncertainty,expressivity slow=1
  if [ "$PRESET" = smoke ]; then
    cpi_sizes=4:1:1 cpi_n=8 ch_route=25 full=0 lag_sizes=4:1:25 ref=2 reps=1 tau=4:1:8 ch_tau=8 ab="--blocks 2"
    cm="--sizes 4:1" cm_proxies=expressivity smoke=--smoke ab_exps=ntk_blocks tau_ind=expressivity slow=3
    lag=snip,ntk_cond  # smoke (CI): both routed job kinds (snip: the cross-entropy gradient job, ntk_cond: the
    # NTK job), one compile each; routed grad_norm (snip's job kind) and grasp (its second-order compile) are
    # checked against vmap by tests/test_routing_grads.py
    cm_extra="--image-size 16 --batch-size 8 --ntk-batch-size 8 --mc-samples 2 --mc-batch-size 8 --vmap-chunk 4 --route-chunk 25"
  fi
  mkdir -p "$done_dir"
  next_step() {  # next_step NAME MIN LIMIT CMD...: perf_step with the done markers, FBNAS_PERF_FROM and MIN
    local name=$1 min=$2 limit=$3; shift 3
    [ "$name" = "$from" ] && skipping=""
    if [ -n "$skipping" ]; then echo "== $name: skipped (FBNAS_PERF_FROM=$from)"; return; fi
    if [ -f "$done_dir/$name" ]; then echo "== $name: done in an earlier call, skipped"; return; fi
    local left=$(( deadline - $(date +%s) ))
    if [ "$left" -lt "$min" ]; then echo "== $name: skipped, ${left}s left < ${min}s"; return; fi
    perf_step $(( limit * slow )) "$name" "$@" && touch "$done_dir/$name"  # smoke: a loaded CPU, 3x
  }
  # shellcheck disable=SC2086  # $extra, $ab, $cm, $cm_extra, $smoke and $ours_only are lists of flags on purpose
  {
  next_step cpi_route_bf16 120 270 "$PY" $vp --ours-only --sizes $cpi_sizes --proxies "" --cpi-archs $cpi_n \
    --chunk-size $ch_route --execution route --precision bfloat16 --cpi-full-under $full --out "$dir" \
    --tag next_cpi_route_bf16 $extra
  next_step cpi_route_fp32 120 250 "$PY" $vp --ours-only --sizes $cpi_sizes --proxies "" --cpi-archs $cpi_n \
    --chunk-size $ch_route --execution route --cpi-full-under $full --out "$dir" --tag next_cpi_route_fp32 $extra
  next_step $lag_step 90 200 "$PY" $vp $ours_only --device $dev --sizes $lag_sizes --ref-archs $ref \
    --repeats $reps --proxies $lag --execution route --chunk-size $ch_route --kernel-grad "$kg" --out "$dir" \
    --tag next_$lag_step $extra
  ab_deadline=$(( deadline - $(date +%s) - 30 ))  # gpu_ab's own clock: no compilation it cannot finish
  [ "$ab_deadline" -gt 170 ] && ab_deadline=170
  next_step gpu_candidates 60 200 "$PY" benchmarks/gpu_ab.py $smoke $ours_only --device $dev \
    --experiments $ab_exps $ab --deadline-s $ab_deadline --out "$dir" --tag next
  next_step bf16_c16_route 60 90 "$PY" benchmarks/bf16_ranks.py --sizes $tau --chunk-size $ch_tau --execution route \
    --indicators $tau_ind --out "$dir" --tag next_bf16_c16_route ${extra:+--setup "$extra"}
  next_step cost_model_gpu 45 600 "$PY" benchmarks/cost_model.py $cm \
    --proxies $cm_proxies --executions vmap,route --no-torch \
    --out "$dir" --tag gpu $cm_extra
  }
}
BUDGET_perf_next=540
NEEDS_DATA_perf_next=0

# ---------------------------------------------------------------------------- no edits needed below
STAGE=supernets
prepare() {  # copy the two data files into ./.data (git-ignored), the folder `carry` names
  local src=${FBNAS_SHARED_DATA:-../shared/data}
  mkdir -p .data || exit 2
  cp -v "$src/cifar10/cifar10-jpeg.tar.gz" "$src/nasbench201/nb201_cifar10_accuracy.csv" .data/ || {
    echo "error: could not copy from $src (set FBNAS_SHARED_DATA)" >&2; exit 2; }
  exit 0
}
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) prepare ;;
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
export OUT=${OUT:-$PWD/device_out}
default_budget=BUDGET_$STAGE
export BUDGET=${FBNAS_STAGE_BUDGET_S:-${!default_budget:-540}}
export OVERRIDES=${FBNAS_OVERRIDES:-}
export WORK=${FBNAS_WORK_DIR:-$PWD/.device_work}
export RESULTS=$WORK/results/$PRESET
export PY=${PYTHON:-python3} PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export FBNAS_CIFAR10_ARCHIVE=$DATA/cifar10-jpeg.tar.gz
export FBNAS_NB201_CSV=$DATA/nb201_cifar10_accuracy.csv
export FBNAS_CACHE_DIR=${FBNAS_CACHE_DIR:-$WORK/cache}  # decoded images (.npz), XLA compilation cache (xla/)
export MPLBACKEND=Agg TQDM_DISABLE=1  # progress bars would flood the log that comes back
needs_data=NEEDS_DATA_$STAGE
for f in "$FBNAS_CIFAR10_ARCHIVE" "$FBNAS_NB201_CSV"; do
  if [ "${!needs_data:-1}" = 1 ] && [ ! -f "$f" ]; then
    echo "error: $f is missing: fill $DATA first (see --help)" >&2; exit 2
  fi
done
mkdir -p "$RESULTS" "$OUT" "$FBNAS_CACHE_DIR"
LOG=$RESULTS/device_$STAGE.log
{
  echo "stage=$STAGE preset=$PRESET budget=${BUDGET}s start=$(date -u +%Y-%m-%dT%H:%M:%SZ) host=$(hostname)"
  nvidia-smi -L 2> /dev/null || echo "nvidia-smi: not available"
  "$PY" -c "import sys, jax; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())"
} > "$LOG" 2>&1

t0=$(date +%s)
export -f "stage_$STAGE"; export STAGE
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
