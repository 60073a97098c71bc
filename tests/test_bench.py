"""The training and rollout benchmarks run end to end at toy sizes and report what they promise."""
import json

import pytest

from twjax import cli

TOY_MODEL = ["--config.model.d_model=32", "--config.model.n_layers=1", "--config.model.n_heads=2",
             "--config.model.n_kv_heads=1", "--config.model.d_ff=64", "--config.data.seq_len=32",
             "--config.model.max_len=32", "--config.data.batch_size=2"]


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bench_train_reports_mfu_against_a_measured_peak(capsys):
    assert cli.main(["bench", "train", "--json", "--steps", "2", "--warmup", "1", "--peak-size", "256",
                     "--vocab-size", "128", *TOY_MODEL]) == 0
    result = last_json(capsys)
    assert result["tokens_per_s"] == pytest.approx(2 * 32 / result["step_s"])
    assert result["model_flops_per_s"] == pytest.approx(result["model_flops_per_token"] * result["tokens_per_s"])
    assert 0 < result["mfu"] == pytest.approx(result["model_flops_per_s"] / result["peak_flops_per_s"])


def test_bench_rollout_compares_the_compiled_loop_with_python_and_real_terminals(capsys):
    from harness_fixtures import available_backend
    assert cli.main(["bench", "rollout", "--json", "--batch", "4", "--turns", "2", "--command-tokens", "3",
                     "--output-tokens", "4", "--repeats", "1", "--python-sessions", "1", "--vocab-size", "128",
                     "--real-backend", available_backend(), "--real-workers", "2", "--real-sessions", "2",
                     *TOY_MODEL]) == 0
    result = last_json(capsys)
    assert result["sim_turns"] == 4 * 2  # every session takes exactly --turns turns
    assert result["ratio_vs_real"] == pytest.approx(result["sim_turns_per_s"] / result["real_turns_per_s"], rel=0.02)
    assert result["ratio_vs_python"] == pytest.approx(
        result["sim_turns_per_s"] / result["python_loop_turns_per_s"], rel=0.02)
    assert 0 < result["decode_fraction_of_peak"]


def test_bench_rollout_sim_only_times_the_compiled_loop_alone(capsys):
    assert cli.main(["bench", "rollout", "--json", "--sim-only", "--batch", "4", "--turns", "2", "--command-tokens",
                     "3", "--output-tokens", "4", "--repeats", "1", "--vocab-size", "128", *TOY_MODEL]) == 0
    result = last_json(capsys)
    assert result["sim_turns"] == 4 * 2 and result["sim_turns_per_s"] > 0
    assert "real_turns_per_s" not in result and "python_loop_turns_per_s" not in result


def test_bench_rollout_without_a_real_terminal_still_compares_with_python(capsys):
    assert cli.main(["bench", "rollout", "--json", "--no-real", "--batch", "4", "--turns", "2", "--command-tokens",
                     "3", "--output-tokens", "4", "--repeats", "1", "--python-sessions", "1", "--vocab-size", "128",
                     *TOY_MODEL]) == 0
    result = last_json(capsys)
    assert "real_turns_per_s" not in result and "ratio_vs_real" not in result
    assert result["ratio_vs_python"] == pytest.approx(
        result["sim_turns_per_s"] / result["python_loop_turns_per_s"], rel=0.02)


@pytest.mark.parametrize("step", ["train", "rollout"])
def test_bench_ops_attributes_step_time_to_compiled_operations(step, capsys):
    assert cli.main(["bench", "ops", "--step", step, "--json", "--steps", "2", "--batch", "4", "--turns", "2",
                     "--command-tokens", "3", "--output-tokens", "4", "--vocab-size", "128", *TOY_MODEL]) == 0
    result = last_json(capsys)
    assert result["steps"] >= 2 and result["op_ms_per_step"] > 0
    assert result["timed_on"] == "host"  # a CPU has no device plane in the trace
    assert "dot_general" in result["by_primitive"]  # every step multiplies matrices
    assert sum(result["by_primitive"].values()) == pytest.approx(result["op_ms_per_step"], rel=0.01, abs=0.01)
    assert result["top"] and all(op["ms"] > 0 and op["shape"] for op in result["top"])


def test_bench_ops_times_a_gpu_trace_on_the_device_by_each_kernels_instruction():
    from types import SimpleNamespace as Fake
    from twjax import bench_ops

    def plane(name, *events):
        events = [Fake(name=n, duration_ns=ns, stats=stats) for n, ns, stats in events]
        return Fake(name=name, lines=[Fake(events=events)])
    known = {"fusion.3": ("f32[8]", "jit(f)/mul"), "gemm.1": ("f32[8,8]", "jit(f)/dot_general")}
    host = plane("/host:CPU", ("fusion.3", 50, []), ("gemm.1", 70, []), ("PjRt::Execute", 900, []))
    device = plane("/device:GPU:0", ("loop_multiply_fusion", 400, [("hlo_op", "fusion.3")]),
                   ("cutlass_gemm_kernel", 1000, [("hlo_op", "gemm.1")]), ("gemm_again", 500, [("hlo_op", "gemm.1")]),
                   ("MemcpyD2D", 30, [("hlo_op", "copy.9")]))
    # With a device plane, the kernels' run times (launches on the host are left out); without, the host's.
    assert bench_ops.op_totals([host, device], known) == ({"fusion.3": 400, "gemm.1": 1500}, "device")
    assert bench_ops.op_totals([host], known) == ({"fusion.3": 50, "gemm.1": 70}, "host")


def test_bench_ops_keeps_tuple_shapes_whole_and_sub_microsecond_times_above_zero():
    import collections
    from twjax import bench_ops
    hlo = ('  %fusion.1 = (s32[4,44]{1,0}, (f32[4]{0}, s32[])) fusion(%p), kind=kLoop, metadata={op_name="jit(f)/while/body/reduce"}\n'
           '  ROOT %add.2 = f32[4]{0} add(%a, %b), metadata={op_name="jit(f)/add"}')
    known = bench_ops.instruction_info(hlo)
    assert known == {"fusion.1": ("(s32[4,44]{1,0}, (f32[4]{0}, s32[]))", "jit(f)/while/body/reduce"),
                     "add.2": ("f32[4]{0}", "jit(f)/add")}
    # 0.3 µs a step: three decimals of a millisecond would print it as 0.
    result = bench_ops.summarize((collections.Counter({"fusion.1": 600, "add.2": 2_468_000}), "host"), known,
                                 steps=2, wall_s=0.01, top=2)
    assert [op["ms"] for op in result["top"]] == [1.234, 0.0003]
    assert result["by_primitive"] == {"add": 1.234, "reduce": 0.0003}
