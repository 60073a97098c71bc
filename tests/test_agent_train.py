"""Agent regimes: which tokens each SFT regime trains, C's filter, the update budget, pass@k and its CI."""
import itertools

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from twjax import agent_eval, agent_train, configlib, data, metrics_log, train
from twjax import model as model_lib
from twjax.episode import Episode, Turn
from twjax.tokenizer import ROLE_AGENT, ROLE_CONTROL, ROLE_TASK, ROLE_TERMINAL

VOCAB = 32


def jitted_init(config, seed):
    """(graphdef, params) of a fresh model, initialised in one compiled call (eager init costs
    one dispatch per op: tens of seconds on a busy 2-core host)."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: model_lib.Transformer(config, rngs=nnx.Rngs(seed))))
    return graphdef, jax.jit(lambda: nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(seed)))[1])()


@pytest.fixture(scope="module")
def tiny():
    config = model_lib.ModelConfig(vocab_size=VOCAB, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64,
                                   max_len=32)
    graphdef, params = jitted_init(config, 0)
    grad = jax.jit(jax.grad(lambda p, batch: train.forward_sums(p, graphdef, batch)["weighted_ce"]))
    return params, grad


def sft_batch(regime, lambda_obs=1.0, bump_terminal_targets=False):
    """One transcript-shaped row with the trainer's batch fields, weights as data.py's regime sets them."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, size=17).astype(np.int32)
    roles = np.array([ROLE_TASK] * 3 + [ROLE_AGENT] * 4 + [ROLE_CONTROL] + [ROLE_TERMINAL] * 5 + [ROLE_AGENT] * 4,
                     np.int32)
    targets, target_roles = ids[1:].copy(), roles[1:]
    if bump_terminal_targets:
        targets = np.where(target_roles == ROLE_TERMINAL, (targets + 1) % VOCAB, targets)
    return {"inputs": ids[None, :-1], "targets": targets[None], "segment_ids": np.ones((1, 16), np.int32),
            "positions": np.arange(16, dtype=np.int32)[None], "roles": target_roles[None],
            "weights": data.regime_weights(target_roles, regime, lambda_obs)[None]}


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_regime_a_gradient_ignores_terminal_tokens(tiny):
    params, grad = tiny
    assert same(grad(params, sft_batch("agent")), grad(params, sft_batch("agent", bump_terminal_targets=True)))


def test_regime_b_trains_terminal_tokens_weighted_by_lambda_obs(tiny):
    params, grad = tiny
    assert not same(grad(params, sft_batch("full", 0.5)), grad(params, sft_batch("full", 0.5, True)))
    # full = agent-and-control part + lambda_obs x terminal part, gradients add linearly
    full = grad(params, sft_batch("full", 0.5))
    terminal = grad(params, sft_batch("terminal"))
    rest = sft_batch("full", 0.5)
    rest["weights"] = np.where(rest["roles"] == ROLE_TERMINAL, 0.0, rest["weights"]).astype(np.float32)
    expected = jax.tree.map(lambda r, t: r + 0.5 * t, grad(params, rest), terminal)
    for got, want in zip(jax.tree.leaves(full), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def episode(complete=True):
    extra = {} if complete else {"complete": False}
    return Episode(id="e", task="t", turns=[Turn(command="ls", output="a\n", exit_code=0, cwd="/root/task",
                                                 extra=extra)])


def test_regime_c_filter_keeps_only_verified_sessions():
    episodes = [episode(), episode(), episode(), episode(), episode(complete=False), Episode(id="x", task="t", turns=[])]
    learned = [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    real = {2: 0.0, 3: 1.0}  # the re-checked ones: 2 refuted by the real verifier, 3 confirmed
    kept = agent_train.select_verified(episodes, learned, real)
    assert [episodes.index(e) for e in kept] == [0, 3]
    assert episodes[2].extra == {"learned_reward": 1.0, "real_reward": 0.0}
    assert episodes[0].extra["real_reward"] is None
    # When the re-check says the learned verifier is not to be trusted, only confirmed sessions stay.
    assert [episodes.index(e) for e in agent_train.select_verified(episodes, learned, real, False)] == [3]


def test_every_regime_has_the_same_update_budget_and_experiment_configs_load():
    config = agent_train.with_agent_defaults(configlib.load("experiments/three_way_ablation.py:cpu",
                                                            ["agent.regime=RL", "agent.lambda_env=0.1"]))
    assert config.agent.regime == "RL" and config.agent.lambda_env == 0.1
    partial = configlib.load("configs/agent.py:tiny")
    partial.agent = ml_collections.ConfigDict({"regime": "c"})  # a config naming only some agent fields
    filled = agent_train.with_agent_defaults(partial).agent
    assert filled.regime == "C" and filled.group_size == agent_train.AGENT_DEFAULTS["group_size"]
    steps = config.train.steps
    assert agent_train.base_steps(config, config.agent.rl_steps) + config.agent.rl_steps == steps
    rounds = config.agent.rounds * config.agent.round_steps
    assert agent_train.base_steps(config, rounds) + rounds == steps
    with pytest.raises(ValueError):
        agent_train.base_steps(config, steps)
    with pytest.raises(ValueError):
        agent_train.with_agent_defaults(configlib.load("configs/agent.py:tiny", ["agent.regime=D"]))
    with pytest.raises(ValueError, match="observe_setup"):
        agent_train.with_agent_defaults(configlib.load("configs/agent.py:tiny", ["agent.observe_terminal_only=True"]))


def brute_force_pass_at_k(n, c, k):
    outcomes = [1] * c + [0] * (n - c)
    draws = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in draw) for draw in draws) / len(draws)


def test_pass_at_k_is_the_unbiased_estimator():
    assert agent_eval.pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert agent_eval.pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2)
    for n, c, k in [(5, 0, 3), (5, 5, 1), (8, 3, 4), (6, 1, 6), (4, 2, 3)]:
        assert agent_eval.pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k))
    with pytest.raises(ValueError):
        agent_eval.pass_at_k(2, 1, 3)


def test_bootstrap_ci_known_cases():
    assert agent_eval.bootstrap_ci([1.0] * 10) == (1.0, 1.0, 1.0)
    mean, low, high = agent_eval.bootstrap_ci([0.0, 1.0] * 50, resamples=4000)
    assert mean == 0.5 and 0.38 < low < 0.45 and 0.55 < high < 0.62  # ±1.96·sqrt(0.25/100) ≈ ±0.098


def test_summary_per_family():
    results = [{"family": "a", "n": 4, "c": 4}, {"family": "a", "n": 4, "c": 0}, {"family": "b", "n": 4, "c": 1}]
    summary = agent_eval.summarize(results, ks=(1, 4))
    assert summary["a"]["pass@1"] == 0.5 and summary["a"]["pass@4"] == 0.5 and summary["a"]["tasks"] == 2
    assert summary["b"]["pass@1"] == 0.25 and summary["b"]["pass@4"] == 1.0
    assert summary["all"]["pass@1"] == pytest.approx(1.25 / 3)
    assert summary["all"]["pass@1_low"] <= summary["all"]["pass@1"] <= summary["all"]["pass@1_high"]


def test_names_from_context_counts_names_the_agent_had_seen():
    """A name counts as copied when the task text or an earlier turn of the session holds it; the
    verifier's own turn is not the agent's."""
    turns = [Turn("ls", "notes.txt\nrun.sh\n", 0, "/root/task"),
             Turn("grep -v '^#' juniper.conf > active.conf", "", 0, "/root/task"),  # both in the task
             Turn("cat notes.txt olive.log src/*.py", "", 1, "/root/task"),  # notes.txt from ls; olive.log from nowhere
             Turn("test -s hidden.txt", "", 1, "/root/task", label="verify")]
    episode = Episode("e", "Write the lines of juniper.conf that are not comments to active.conf.", turns)
    assert agent_eval.names_from_context([episode]) == {"names": 4, "from_context": 0.75}
    assert agent_eval.FILE_NAME.findall("echo 3.5 ./run.sh a.tar.gz x.1 *.py") == ["run.sh", "a.tar.gz"]
    assert agent_eval.names_from_context([Episode("f", "t", [Turn("ls", "", 0, "/")])])["from_context"] is None


def test_rl_checkpoint_loads_for_inference(tmp_path):
    """The RL agent is saved where rollout, eval and C's rounds load any trained model from."""
    from sample_episodes import make_episodes
    from twjax import checkpoint_io, tokenizer
    from twjax.episode import write_jsonl
    write_jsonl(tmp_path / "e.jsonl", make_episodes(60, seed=1))
    tokenizer.train([str(tmp_path / "e.jsonl")], str(tmp_path / "tok.model"), vocab_size=400)
    config = configlib.load("configs/agent.py:tiny", [f"data.tokenizer={tmp_path / 'tok.model'}", "model.vocab_size=512",
                                                      "model.d_model=32", "model.n_layers=1", "model.n_heads=2",
                                                      "model.n_kv_heads=1", "model.d_ff=64"])
    _, params = jitted_init(checkpoint_io.model_config(config), 3)
    agent_train.save_params(tmp_path / "rl", config, params, step=5)
    _, tok, loaded = checkpoint_io.load_for_inference(tmp_path / "rl")
    assert same(nnx.split(loaded)[1], params)
    # Loaded as the terminal of an agent: only with the tokenizer it was trained with.
    _, (_, terminal_params) = checkpoint_io.load_terminal(tmp_path / "rl", tok)
    assert same(terminal_params, params)
    write_jsonl(tmp_path / "other.jsonl", make_episodes(60, seed=2))
    tokenizer.train([str(tmp_path / "other.jsonl")], str(tmp_path / "other.model"), vocab_size=420)
    with pytest.raises(SystemExit, match="different tokenizers"):
        checkpoint_io.load_terminal(tmp_path / "rl", tokenizer.Tokenizer.load(str(tmp_path / "other.model")))



def test_references_are_regimes_the_grid_can_hold(tmp_path):
    """UNTRAINED saves the fresh agent where every agent is loaded from; EXPERT needs no agent and
    its real pass rate is the ceiling (every expert solution passes its verifier)."""
    from harness_fixtures import available_backend
    from sample_episodes import make_episodes
    from twjax import checkpoint_io, tokenizer
    from twjax.episode import write_jsonl
    write_jsonl(tmp_path / "e.jsonl", make_episodes(60, seed=1))
    tokenizer.train([str(tmp_path / "e.jsonl")], str(tmp_path / "tok.model"), vocab_size=400)
    small = [f"data.tokenizer={tmp_path / 'tok.model'}", "model.d_model=32", "model.n_layers=1", "model.n_heads=2",
             "model.n_kv_heads=1", "model.d_ff=64", "agent.eval_tasks=0"]
    config = configlib.load("configs/agent.py:tiny", small + ["agent.regime=untrained", "train.seed=4"])
    result = agent_train.agent_train(config, tmp_path / "floor")
    assert result == {"regime": "UNTRAINED", "final": str(tmp_path / "floor" / "untrained")}
    loaded_config, _, loaded = checkpoint_io.load_for_inference(result["final"])
    assert loaded_config.model.vocab_size == 512  # resolved from the tokenizer, as the trainer does
    assert same(nnx.split(loaded)[1], agent_eval.untrained_like(loaded_config)[1])

    config = configlib.load("configs/agent.py:tiny", small + [
        "agent.regime=EXPERT", "agent.eval_tasks=3", f"agent.backend={available_backend()}", "agent.workers=2"])
    result = agent_train.agent_train(config, tmp_path / "ceiling")
    assert result["final"] is None and set(result["eval"]) == {"real/in_distribution", "real/held_out_families"}
    assert result["eval"]["real/in_distribution"]["all"] == {"tasks": 3, "pass@1": 1.0, "pass@1_low": 1.0,
                                                             "pass@1_high": 1.0, "greedy": 1.0, "greedy_low": 1.0,
                                                             "greedy_high": 1.0}
    assert result["eval"]["real/held_out_families"]["text_grep"]["tasks"] == 3


def tiny_eval_setup(tmp_path, max_len: int, max_turns: int):
    """(agent config, tokenizer) of a tiny agent whose tokenizer knows the sample episodes."""
    from sample_episodes import make_episodes
    from twjax import tokenizer
    from twjax.episode import write_jsonl
    write_jsonl(tmp_path / "e.jsonl", make_episodes(60, seed=1))
    tokenizer.train([str(tmp_path / "e.jsonl")], str(tmp_path / "tok.model"), vocab_size=400)
    config = agent_train.with_agent_defaults(configlib.load("configs/agent.py:tiny", [
        f"data.tokenizer={tmp_path / 'tok.model'}", "model.vocab_size=512", "model.d_model=32", "model.n_layers=1",
        "model.n_heads=2", "model.n_kv_heads=1", "model.d_ff=64", f"model.max_len={max_len}",
        f"agent.max_turns={max_turns}", "agent.max_command_tokens=8", "agent.max_output_tokens=16"]))
    return config, tokenizer.Tokenizer.load(str(tmp_path / "tok.model"))


def test_report_has_sampled_and_greedy_rates_and_writes_every_attempt(tmp_path):
    """pass@k from `samples` sampled attempts, `greedy` from one greedy attempt per task, each
    attempt written as an episode whose verdict matches the counts; greedy attempts repeat exactly."""
    from harness_fixtures import available_backend
    from twjax import checkpoint_io
    from twjax.episode import read_jsonl
    config, tok = tiny_eval_setup(tmp_path, max_len=192, max_turns=2)
    agent = jitted_init(checkpoint_io.model_config(config), 0)
    common = dict(tasks_per_split=2, samples=2, ks=(1, 2), config=agent_eval.rollout_config_of(config, 192),
                  key=jax.random.key(0), backend=available_backend(), workers=2)
    terminal = jitted_init(checkpoint_io.model_config(config), 1)  # any model of the tokenizer can stand in
    # The learned judge runs under its own, shorter context; the real one keeps the agent's.
    out = agent_eval.report(agent, tok, ["files_dirs"], [], terminal=terminal, episodes_dir=tmp_path / "eval",
                            learned_config=agent_eval.rollout_config_of(config, 160), **common)
    for judge in ("real", "learned"):
        row = out[f"{judge}/in_distribution"]["all"]
        assert set(row) == {"tasks", *(f"{m}{s}" for m in ("pass@1", "pass@2", "greedy")
                                       for s in ("", "_low", "_high"))}
        sampled = list(read_jsonl(tmp_path / "eval" / f"{judge}-in_distribution-sampled.jsonl"))
        greedy = list(read_jsonl(tmp_path / "eval" / f"{judge}-in_distribution-greedy.jsonl"))
        assert len(sampled) == 4 and len(greedy) == 2
        assert row["pass@1"] == np.mean([e.extra["passed"] for e in sampled])
        assert row["greedy"] == np.mean([e.extra["passed"] for e in greedy])
        assert all(e.extra["judge"] == judge and e.extra["family"] == "files_dirs" for e in sampled + greedy)
        assert all(e.extra["tokens"] <= (160 if judge == "learned" else 192) for e in sampled + greedy)
        for attempts, key in ((sampled, "names_from_context"), (greedy, "names_from_context_greedy")):
            expected = agent_eval.names_from_context(attempts)["from_context"]
            assert out[f"{key}/{judge}/in_distribution"] == expected
    assert out["sim_to_real_gap_greedy/in_distribution"] == pytest.approx(
        out["learned/in_distribution"]["all"]["greedy"] - out["real/in_distribution"]["all"]["greedy"])
    agent_eval.report(agent, tok, ["files_dirs"], [], episodes_dir=tmp_path / "again", **common)
    again = list(read_jsonl(tmp_path / "again" / "real-in_distribution-greedy.jsonl"))
    assert [[t.command for t in e.turns] for e in again] == [[t.command for t in e.turns] for e in greedy]


def test_report_with_observe_opens_every_attempt_with_its_tasks_observation(tmp_path):
    from harness_fixtures import available_backend
    from twjax import checkpoint_io
    from twjax.episode import read_jsonl
    from twjax.tasks import episodes as task_episodes
    config, tok = tiny_eval_setup(tmp_path, max_len=640, max_turns=1)  # room for the observation's command
    config.agent.update(observe_setup=True, observe_layout="listing_first")
    assert agent_train.observation(config) == task_episodes.OBSERVE_LISTING_FIRST
    agent, terminal = (jitted_init(checkpoint_io.model_config(config), seed) for seed in (0, 1))
    agent_eval.report(agent, tok, ["files_dirs"], [], terminal=terminal, episodes_dir=tmp_path / "eval",
                      tasks_per_split=2, samples=2, ks=(1,), config=agent_eval.rollout_config_of(config, 640),
                      key=jax.random.key(0), backend=available_backend(), workers=2, greedy=False,
                      observe=agent_train.observation(config))
    for judge in ("real", "learned"):
        attempts = list(read_jsonl(tmp_path / "eval" / f"{judge}-in_distribution-sampled.jsonl"))
        assert len(attempts) == 4 and all(e.n_given == 1 and len(e.turns) >= 2 for e in attempts)
        observations = [e.turns[0] for e in attempts]
        assert all(o.command == task_episodes.OBSERVE_LISTING_FIRST and o.output.startswith("total ")
                   for o in observations)
        # two attempts at a task share its one observation; two tasks have their own
        assert observations[0] == observations[1] and observations[2] == observations[3]
        assert observations[0].output != observations[2].output


def test_real_judge_keeps_the_agents_context_and_the_learned_judge_the_shorter_one():
    def with_len(n):
        return agent_train.with_agent_defaults(configlib.load("configs/agent.py:tiny", [f"model.max_len={n}"]))
    real, learned = agent_eval.judge_configs(with_len(512), with_len(256))
    assert (real.cache_len, learned.cache_len) == (512, 256)
    assert real == agent_eval.rollout_config_of(with_len(512), 512)
    assert [c.cache_len for c in agent_eval.judge_configs(with_len(256), with_len(512))] == [256, 256]
    assert [c.cache_len for c in agent_eval.judge_configs(with_len(384))] == [384, 384]


def small_agent_config(tmp_path):
    """-> config(*overrides): a 6-update agent run on 40 sample episodes (C: 1 round of 2 updates
    from update 4; RL: 1 step from update 5)."""
    from sample_episodes import make_episodes
    from twjax import tokenizer
    from twjax.episode import write_jsonl
    write_jsonl(tmp_path / "train.jsonl", make_episodes(40, seed=1))
    write_jsonl(tmp_path / "valid.jsonl", make_episodes(8, seed=2))
    tokenizer.train([str(tmp_path / "train.jsonl")], str(tmp_path / "tok.model"), vocab_size=400)
    small = [f"data.train={tmp_path / 'train.jsonl'}", f"data.valid={tmp_path / 'valid.jsonl'}",
             f"data.tokenizer={tmp_path / 'tok.model'}", "model.d_model=32", "model.n_layers=1", "model.n_heads=2",
             "model.n_kv_heads=1", "model.d_ff=64", "model.max_len=64", "data.seq_len=64", "data.batch_size=4",
             "train.steps=6", "train.log_every=1", "optim.warmup_steps=2", "train.eval_batches=1",
             f"train.compilation_cache={tmp_path / 'xla'}", "agent.rounds=1", "agent.round_steps=2", "agent.rl_steps=1"]

    def config(*extra):
        return agent_train.with_agent_defaults(configlib.load("configs/agent.py:tiny", small + list(extra)))
    return config


def test_regime_c_rounds_continue_a_run_on_the_imagined_data(tmp_path, monkeypatch):
    """A round is A's run continued (its optimizer state and learning rate at each update), on the
    original data plus the sessions the round kept (as equals, or drawn at agent.imagined_fraction)."""
    import json
    from sample_episodes import make_episodes
    config = small_agent_config(tmp_path)
    kept = make_episodes(3, seed=9)
    monkeypatch.setattr(agent_train, "imagine_round", lambda config, agent_dir, k: (kept, {"kept": len(kept)}))
    private_a = agent_train.a_phase(config(), tmp_path / "a", 6)
    log = metrics_log.MetricsLog(tmp_path / "c" / "agent", 6, 0, progress=False)
    final = agent_train.regime_c(config("agent.regime=C"), tmp_path / "c", log)
    assert final == tmp_path / "c" / "round-1" and agent_train.has_checkpoint(final, 6)
    imagined = tmp_path / "c" / "imagined" / "round-1.jsonl"
    assert len(imagined.read_text().splitlines()) == 3
    run = json.loads((final / "config.json").read_text())
    assert run["data"]["train"] == f"{tmp_path / 'train.jsonl'},{imagined}" and run["train"]["init_state"]

    def rates(workdir):
        rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["train/learning_rate"] for r in rows if "train/learning_rate" in r}
    assert sorted(rates(final)) == [5, 6]
    assert rates(final) == {step: rates(private_a)[step] for step in (5, 6)}
    assert rates(final)[5] > 0  # mid-schedule, not a fresh warmup's first step
    # With agent.imagined_fraction the kept sessions are drawn at that share, beside A's data.
    final = agent_train.regime_c(config("agent.regime=C", "agent.imagined_fraction=0.5"), tmp_path / "c-up", log)
    run = json.loads((final / "config.json").read_text())
    assert run["data"]["train"] == str(tmp_path / "train.jsonl")
    assert (run["data"]["upweighted"], run["data"]["upweighted_fraction"]) == (
        str(tmp_path / "c-up" / "imagined" / "round-1.jsonl"), 0.5)


@pytest.mark.parametrize("bar, passes", [(0.0, [0.95, 0.6, None]), (0.9, [0.95])])
def test_regime_c_counts_only_the_learned_passes_it_is_sure_of(tmp_path, monkeypatch, bar, passes):
    """With agent.min_pass_probability a greedy learned pass below it is no pass: neither re-checked
    nor kept. Every imagined session records its pass probability."""
    from twjax import grounded, interleave
    small = small_agent_config(tmp_path)

    def config(*extra):  # room for the tasks' prompts
        return small("model.max_len=256", "data.seq_len=256", *extra)
    agent_dir = agent_train.a_phase(config(), tmp_path / "a", 4)
    verdicts = grounded.Verdicts([0, 0, 0, 1], np.array([1, 1, 1, 0], np.float32), [0.95, 0.6, None, 0.2])
    monkeypatch.setattr(grounded, "learned_verdicts", lambda *args, **kwargs: verdicts)
    rechecked = []

    def replay(episodes, tasks, backend, workers):  # what the real verifier says of the re-checked: all pass
        rechecked.extend(episodes)
        return [1.0] * len(episodes)
    monkeypatch.setattr(interleave, "real_rewards_by_replay", replay)
    run = config("agent.regime=C", f"agent.terminal={agent_dir}", "agent.tasks_per_round=4",
                 "agent.real_check_fraction=0.5", f"agent.min_pass_probability={bar}")
    sessions, summary = agent_train.imagine_round(run, agent_dir, 1)
    # The first half of the passes (rounded up) are re-checked.
    assert [e.extra["learned_pass_probability"] for e in rechecked] == passes[:-(-len(passes) // 2)]
    assert summary == {"sessions": 4, "greedy_passed": 3, "learned_passed": len(passes), "rechecked": len(rechecked),
                       "recheck_confirmed": len(rechecked), "kept": len(sessions)}
    # Kept: the passes whose turns are complete (an untrained agent's may run out of context).
    assert len(sessions) <= len(passes) and all(e.extra["learned_pass_probability"] in passes for e in sessions)


def test_shared_a_run_gives_each_regime_the_checkpoint_it_would_train_alone(tmp_path, monkeypatch):
    """C and RL start from A's run at their base step; trials sharing A's run (agent.shared_sft)
    train it once and get exactly the parameters a private run reaches, and a shared run that went
    past a step it did not keep makes the trial train privately."""
    from twjax import checkpoint_io
    config = small_agent_config(tmp_path)

    def params(workdir):
        return nnx.split(checkpoint_io.load_for_inference(workdir)[2])[1]

    assert agent_train.branch_steps(config()) == [4, 5, 6]
    private_c = agent_train.a_phase(config(), tmp_path / "private_c" / "sft", 4)
    private_a = agent_train.a_phase(config(), tmp_path / "private_a", 6)
    shared = config(f"agent.shared_sft={tmp_path / 'shared'}")
    trial_c = agent_train.a_phase(config(f"agent.shared_sft={tmp_path / 'shared'}", "agent.regime=C"),
                                  tmp_path / "c" / "sft", 4)
    # A trial of another regime continues the run that C's trial started (its agent block differs).
    trial_a = agent_train.a_phase(shared, tmp_path / "a", 6)
    assert same(params(trial_c), params(private_c)) and same(params(trial_a), params(private_a))
    (run,) = (tmp_path / "shared").iterdir()
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir()) == [4, 5, 6]

    def no_training(*_):
        raise AssertionError("the shared run already holds step 5")
    monkeypatch.setattr(agent_train.train, "train", no_training)
    trial_rl = agent_train.a_phase(shared, tmp_path / "rl" / "sft", 5)
    assert (trial_rl / "checkpoints" / "5").is_symlink()
    assert checkpoint_io.read_config(trial_rl).to_dict() == checkpoint_io.read_config(run).to_dict()
    monkeypatch.undo()

    other = config(f"agent.shared_sft={tmp_path / 'shared'}", "agent.rl_steps=3")  # base step 3: not kept
    assert agent_train.a_run_key(other) == agent_train.a_run_key(shared)
    lone = agent_train.a_phase(other, tmp_path / "rl3" / "sft", 3)
    assert not (lone / "checkpoints" / "3").is_symlink() and agent_train.has_checkpoint(lone, 3)


def test_a_run_key_ignores_the_follow_prior_of_a_model_that_does_not_follow(tmp_path):
    """A runs keyed before model.copy_follow_init_* existed are found again; with copy_follow on,
    the prior changes the initial weights, so it changes the key."""
    config = small_agent_config(tmp_path)
    plain, with_prior = config(), config("model.copy_follow_init_confidence=1.0", "model.copy_follow_init_bias=2.0")
    before = plain.to_dict()
    for name in ("copy_follow_init_confidence", "copy_follow_init_bias"):
        del before["model"][name]
    assert agent_train.a_run_key(plain) == agent_train.a_run_key(with_prior) == agent_train.a_run_key(
        ml_collections.ConfigDict(before))
    following = ("model.copy_head=True", "model.copy_follow=True")
    assert agent_train.a_run_key(config(*following)) != agent_train.a_run_key(
        config(*following, "model.copy_follow_init_bias=2.0"))
