"""Learned-terminal training configs: `twjax train --config configs/terminal.py:PRESET --workdir W`.

Presets, smallest first: tiny (the CPU quickstart), small (~25M), base100m (~100M, one H100),
pod1b (~1B, a TPU v5e-64 / v4-32 slice). Override any field with `--config.a.b=value`.

Batch semantics: `data.batch_size` sequences of `data.seq_len` tokens go through one forward pass
(global, summed over processes); one optimizer step sees `data.batch_size * optim.grad_accum`
sequences. `model.vocab_size = 0` takes the tokenizer's vocabulary size, rounded up to a
multiple of 128 (a TPU/GPU-friendly embedding width); a non-zero value must be at least that.
Mesh axes: -1 means "all remaining devices" (at most one axis may be -1).
"""
import ml_collections

# name: (vocab_size, d_model, n_layers, n_heads, n_kv_heads, d_ff, seq_len, batch_size, grad_accum, lr,
#        warmup, steps, dtype, mesh (data, fsdp, tensor))
PRESETS = {
    # 4.1M parameters (2k vocabulary; 4 query heads sharing one 64-dim KV head), 2.3e7 FLOPs/token.
    # Shaped for the 2-core CPU (README "Measured results"): d_model 256 keeps the matmuls near the
    # measured peak (MFU 0.59-0.67 in `twjax bench train` on 2026-12-05, median 0.61; 3,900-5,600
    # tokens/s by the day; d_model 128 reached 0.37), 64-dim heads keep the T x T score tensors few,
    # and the single KV head keeps the cache that rollout decoding streams as small as the 1.3M
    # model's it replaced.
    # The 250 steps take ~5 min; on configs/data/tiny.py the valid loss is lowest near step 100 and
    # rises after (overfit).
    "tiny": (0, 256, 4, 4, 1, 768, 256, 16, 1, 3e-3, 30, 250, "float32", (-1, 1, 1)),
    # 26M parameters, 1.4e8 FLOPs/token. ESTIMATED from tiny's measured ~90 GFLOP/s on the CPU host:
    # ~650 tokens/s there (a thousand steps take hours); meant for one GPU ("auto": bf16 there).
    "small": (8192, 512, 6, 8, 4, 1408, 512, 32, 1, 1e-3, 200, 20_000, "auto", (-1, 1, 1)),
    # 100M parameters, 6.4e8 FLOPs/token (twjax.flops), one H100-class GPU in bf16. MEASURED on an
    # H200 (tools/gpu_bench.sh, 2026-12-04): 517k tokens/s, MFU 0.435 with cuDNN attention ("auto").
    "base100m": (16384, 768, 12, 12, 4, 2048, 2048, 64, 1, 6e-4, 1000, 50_000, "bfloat16", (1, -1, 1)),
    # 1.1B parameters (Llama-3.2-1B shape), 6.6e9 FLOPs/token, FSDP over a TPU v5e-64 slice
    # (data=4 x fsdp=16). ESTIMATED, not measured: 40% of 64 x 197 TFLOP/s -> ~7.6e5 tokens/s
    # (a v4-32, 16 chips x 275 TFLOP/s: ~2.7e5 tokens/s; use --config.mesh.data=1 there).
    "pod1b": (32768, 2048, 16, 32, 8, 8192, 2048, 256, 1, 3e-4, 2000, 100_000, "bfloat16", (4, -1, 1)),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = arg or "tiny"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    (vocab_size, d_model, n_layers, n_heads, n_kv_heads, d_ff, seq_len, batch_size, grad_accum, lr,
     warmup, steps, dtype, (mesh_data, mesh_fsdp, mesh_tensor)) = PRESETS[preset]
    config = ml_collections.ConfigDict()
    config.preset = preset

    config.model = ml_collections.ConfigDict(dict(
        vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
        d_ff=d_ff, max_len=seq_len, rope_theta=10_000.0, attention_chunk=128, attention="auto", dtype=dtype,
        smeared_keys=False, line_embeddings=0, copy_head=False, copy_follow=False,
        copy_follow_init_confidence=0.0, copy_follow_init_bias=0.0))

    config.data = ml_collections.ConfigDict(dict(
        # `twjax collect --config configs/data/tiny.py --out data/tiny` and `twjax tokenizer train` write these.
        train="data/tiny/train-*.jsonl",     # episode JSONL: a file, a directory or a glob
        valid="data/tiny/valid-*.jsonl",
        tokenizer="data/tiny/tokenizer.model",
        seq_len=seq_len,
        batch_size=batch_size,
        regime="terminal",                   # terminal | agent | full
        lambda_obs=1.0,                      # weight of terminal targets in the "full" regime
        copy_fraction=0.0,                   # records that are synthetic copy examples (twjax/data.py)
        copy_lines_fraction=0.0,             # copy examples that are listings (data.line_listing)
        copy_select_fraction=0.0,            # listings repeated as a selection (data.line_selection)
        copy_names_fraction=0.5,             # selections that are the listing's names column
        copy_prefix_max=8,                   # longest prefix of a listing's lines (0: none; up to 32)
        copy_name_max=3,                     # longest name of a listing's lines, in tokens (1-8)
        copy_sessions=False,                 # listings opened by <out>, names columns from their first line
        copy_session_header_max=0,           # with copy_sessions: header lines (as ls -la's . and ..) 0-3
        copy_recall_fraction=0.0,            # copy examples that recall one file's lines by its name (data.RecallExample)
        seed=0,
    ))

    config.mesh = ml_collections.ConfigDict(dict(data=mesh_data, fsdp=mesh_fsdp, tensor=mesh_tensor))

    config.optim = ml_collections.ConfigDict(dict(
        lr=lr,
        warmup_steps=warmup,
        min_lr_ratio=0.1,                    # cosine decays to lr * min_lr_ratio at train.steps
        weight_decay=0.1,
        clip_norm=1.0,
        grad_accum=grad_accum,
        b1=0.9,
        b2=0.95,
    ))

    config.train = ml_collections.ConfigDict(dict(
        steps=steps,
        log_every=10,
        eval_every=100,
        eval_batches=8,                      # valid-split batches per evaluation (0 = all)
        ckpt_every=200,
        keep_ckpts=3,
        seed=0,
        stop_at=0,                           # checkpoint and exit after this step (0 = train.steps): time slices
        init_from="",                        # a workdir or checkpoint step dir to start the weights from
        init_state=False,                    # with init_from: its optimizer state and step too (its schedule
                                             # continues, on this run's data, from the start of its order)
        distributed=False,                   # call jax.distributed.initialize() (multi-host)
        progress=True,                       # tqdm progress bar with ETA
        compilation_cache="~/.cache/twjax/xla",  # jax persistent compilation cache ("" = off)
    ))
    return config
