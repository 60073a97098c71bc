#!/usr/bin/env bash
# The GPU measurements of the README (about 10 min on one H200; where a call may not last that long,
# make two by naming the checks): tests/test_gpu.py (the fused attention against the chunked one in
# bfloat16, decoding in both key layouts), `twjax bench train` on the base100m preset with
# each attention, and `twjax bench rollout --sim-only` on the tiny preset in bfloat16 at batches of
# 4k to 128k sessions. OUTDIR gets results.jsonl (one line a benchmark), failures.txt, the GPU and the test
# output; a table of the results is printed last. Names after OUTDIR run only those (test_gpu, and the
# benchmarks' names below), for a short call that measures what changed.
#   bash tools/gpu_bench.sh OUTDIR [NAME...]
# On a machine without twjax's packages, put their wheels in .whl/ (README "Benchmarks on a GPU").
set -uo pipefail
out=${1:?usage: tools/gpu_bench.sh OUTDIR [NAME...]}
only=" ${*:2} "
wanted() { [ "$only" = "  " ] || [[ "$only" == *" $1 "* ]]; }
mkdir -p "$out"
if [ -d .whl ]; then
  rm -rf /tmp/twjax-site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/twjax-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/twjax-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" | tee -a "$out/gpu.txt"

# One benchmark: NAME, a time limit in seconds, then twjax's arguments. Its JSON line goes to
# results.jsonl; a failure (an out-of-memory, say) goes to failures.txt and the rest still runs.
logs=$(mktemp -d)
bench() {
  local name=$1 limit=$2; shift 2
  wanted "$name" || return 0
  echo "== $name: twjax $*"
  timeout "$limit" python3 -m twjax "$@" --json > "$logs/$name.out" 2> "$logs/$name.err"
  local rc=$?
  if [ $rc -eq 0 ]; then
    python3 -c "import json, sys; print(json.dumps({'name': sys.argv[1], **json.loads(sys.argv[2])}))" \
      "$name" "$(tail -n 1 "$logs/$name.out")" >> "$out/results.jsonl"
  else
    { echo "== $name (rc $rc): twjax $*"; tail -n 20 "$logs/$name.out" "$logs/$name.err"; } | tee -a "$out/failures.txt"
  fi
}

wanted test_gpu && TWJAX_TEST_ACCELERATOR=1 JAX_PLATFORMS=cuda timeout 240 \
  python3 -m pytest -q -s -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/test_gpu.txt"

# Most wanted first, in case the call runs out of time.
train=(bench train --config configs/terminal.py:base100m --steps 10 --warmup 2 --peak-size 8192)
tiny_bf16=(--config configs/terminal.py:tiny --config.model.dtype=bfloat16)
rollout=(bench rollout "${tiny_bf16[@]}" --sim-only --repeats 3)
bench train_cudnn_b64 200 "${train[@]}" --config.model.attention=cudnn
bench rollout_b16384 120 "${rollout[@]}" --batch 16384
bench train_chunked_b16 200 "${train[@]}" --config.data.batch_size=16 --config.model.attention=chunked
bench train_cudnn_b16 150 "${train[@]}" --config.data.batch_size=16 --config.model.attention=cudnn
bench rollout_b65536 120 "${rollout[@]}" --batch 65536
bench rollout_b4096 120 "${rollout[@]}" --batch 4096
# The largest batch with the per-token Python loop beside it (no sandbox backend on such a machine),
# then where a loop step's time goes.
bench rollout_b131072 200 bench rollout "${tiny_bf16[@]}" --repeats 3 --no-real --python-sessions 2 --batch 131072
# The same loop with the keys stored [head_dim, slots] (twjax.model's docstring).
bench rollout_b131072_head_dim_major 200 "${rollout[@]}" --batch 131072 --key-layout head_dim_major
# Without command buffers (CUDA graphs), which the profiler sees as one launch, not as its kernels.
XLA_FLAGS=--xla_gpu_enable_command_buffer= bench ops_rollout_b65536 200 bench ops --step rollout "${tiny_bf16[@]}" --batch 65536

[ -f "$out/results.jsonl" ] && python3 - "$out/results.jsonl" <<'EOF'
import json, sys
keys = ("batch", "dtype", "params", "tokens_per_s", "mfu", "step_s", "peak_flops_per_s", "sim_turns_per_s",
        "sim_tokens_per_s", "decode_fraction_of_peak", "ratio_vs_python", "timed_on", "wall_ms_per_step", "by_primitive")
for line in open(sys.argv[1]):
    result = json.loads(line)
    print(result["name"], {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k in keys})
EOF
