#!/usr/bin/env bash
# The GPU measurements of the README in one call (about 6 min on one H200): tests/test_gpu.py (the
# fused attention against the chunked one in bfloat16), `twjax bench train` on the base100m preset with
# each attention, and `twjax bench rollout --sim-only` on the tiny preset in bfloat16 at growing
# batches. Each result is a JSON file in OUTDIR; a table of them is printed last.
#   bash tools/gpu_bench.sh OUTDIR
# On a machine without twjax's packages, put their wheels in .whl/ (README "Benchmarks on a GPU").
set -uo pipefail
out=${1:?usage: tools/gpu_bench.sh OUTDIR}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/twjax-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/twjax-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" | tee -a "$out/gpu.txt"

# One benchmark: NAME, a time limit in seconds, then twjax's arguments. A failure (an
# out-of-memory, say) is logged and the rest still runs.
bench() {
  local name=$1 limit=$2; shift 2
  echo "== $name: twjax $*"
  timeout "$limit" python3 -m twjax "$@" --json > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 1 "$out/$name.log" > "$out/$name.json"
  [ $rc -eq 0 ] || { echo "   failed (rc $rc):"; tail -n 5 "$out/$name.log"; }
}

TWJAX_TEST_ACCELERATOR=1 JAX_PLATFORMS=cuda timeout 150 python3 -m pytest -q -s -p no:cacheprovider tests/test_gpu.py 2>&1 \
  | tee "$out/test_gpu.txt"

train=(bench train --config configs/terminal.py:base100m --steps 10 --warmup 2 --peak-size 8192)
bench train_chunked_b16 240 "${train[@]}" --config.data.batch_size=16
bench train_cudnn_b16 180 "${train[@]}" --config.data.batch_size=16 --config.model.attention=cudnn
bench train_cudnn_b64 180 "${train[@]}" --config.model.attention=cudnn

for batch in 4096 16384 65536; do
  bench "rollout_b$batch" 150 bench rollout --config configs/terminal.py:tiny --config.model.dtype=bfloat16 \
    --sim-only --repeats 3 --batch "$batch"
done

python3 - "$out" <<'EOF'
import json, pathlib, sys
keys = ("config", "batch", "dtype", "params", "tokens_per_s", "mfu", "step_s", "peak_flops_per_s",
        "sim_turns_per_s", "sim_tokens_per_s", "decode_fraction_of_peak")
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    try:
        result = json.loads(path.read_text())
    except ValueError:
        print(f"{path.stem}: no result"); continue
    print(path.stem, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k in keys})
EOF
