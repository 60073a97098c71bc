"""The agent loop against real sandboxes: what the agent reads back is what the shell printed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sample_episodes import make_episodes
from twjax import agent_train, grounded, rollout, rollout_episodes
from twjax import model as model_lib
from twjax import tokenizer as tokenizer_lib
from twjax.episode import Episode, write_jsonl
from twjax.evaluate import metrics
from twjax.harness.session import open_session, resolve_backend
from twjax.tasks import episodes as task_episodes
from twjax.tasks import registry


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok")
    write_jsonl(directory / "episodes.jsonl", make_episodes(60, seed=1))
    return tokenizer_lib.train([str(directory / "episodes.jsonl")], str(directory / "tok.model"), vocab_size=400)


@pytest.fixture(scope="module")
def backend():
    try:
        return resolve_backend("auto")
    except Exception as error:  # noqa: BLE001 - the reason goes into the skip message
        if __import__("os").environ.get("TWJAX_REQUIRE_BACKENDS") == "1":
            raise
        pytest.skip(f"no sandbox backend: {error}")


def test_grounded_rollout_records_real_outputs(tok, backend):
    config = model_lib.ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                   d_ff=64, max_len=256)
    agent_graph, agent_params = nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(0)))
    tasks = [registry.generate(name, seed=3) for name in sorted(registry.FAMILIES)[:3]]
    prompts_BxP, lengths_B = rollout_episodes.build_prompts(tok, [t.instruction for t in tasks], 48)
    rollout_config = rollout.RolloutConfig(max_turns=2, min_turns=2, max_command_tokens=6, max_output_tokens=32,
                                           cache_len=160)
    state, rewards = grounded.grounded_rollout(agent_graph, agent_params, tok, tasks, prompts_BxP, lengths_B,
                                               jax.random.key(0), config=rollout_config, backend=backend,
                                               workers=3)
    assert np.all(np.asarray(state.stop_B) == rollout.TURN_LIMIT)
    assert rewards.tolist() == [0.0, 0.0, 0.0]  # a random agent does not solve tasks; doing nothing fails
    episodes = rollout_episodes.state_to_episodes(tok, state, [t.id for t in tasks], [t.instruction for t in tasks])
    for task, episode in zip(tasks, episodes):
        assert len(episode.turns) == 2
        with open_session(backend=backend) as session:
            task_episodes.prepare(session, task)
            for turn in episode.turns:
                real = session.run(turn.command, timeout=10)
                assert (turn.exit_code, turn.cwd) == (real.exit_code, real.cwd)
                expected = tok.decode(tok.encode_text(real.output)[:rollout_config.max_output_tokens])
                assert turn.output == expected


class ScriptedTerminal(nnx.Module):
    """A terminal whose next-token logits are a fixed function of the previous token (a row of
    logits_VxV), cached and teacher-forced alike."""

    def __init__(self, inner, logits_VxV):
        self.inner = inner
        self.config = inner.config
        self.logits_VxV = nnx.Variable(logits_VxV)

    def forward_cached(self, tokens_BxT, valid_BxT, cache):
        _, cache = self.inner.forward_cached(tokens_BxT, valid_BxT, cache)
        return self.logits_VxV[...][tokens_BxT], cache

    def __call__(self, tokens_BxT, positions_BxT=None, segment_ids_BxT=None):
        return self.logits_VxV[...][tokens_BxT]


def verdict_models(tok, code: str, code_probability: float = 1.0, other: str = "2"):
    """(agent, terminal) of max_len 256; after <out> the terminal answers `<exit> CODE <cwd> /
    </out>`, CODE being `code` with code_probability and `other` with the rest (greedy: the more
    likely), so its verdict on any verifier and its probability are known."""
    config = model_lib.ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                   d_ff=64, max_len=256)
    successor_V = np.full((tok.vocab_size,), tok.end_out_id, np.int32)
    successor_V[tok.out_id] = tok.exit_id
    (code_id,), (other_id,) = tok.encode_text(code), tok.encode_text(other)
    (slash_id,) = tok.encode_text("/")
    successor_V[code_id], successor_V[other_id], successor_V[tok.cwd_id], successor_V[slash_id] = (
        tok.cwd_id, tok.cwd_id, slash_id, tok.end_out_id)
    logits_VxV = np.where(np.arange(tok.vocab_size) == successor_V[:, None], 0.0, -100.0).astype(np.float32)
    logits_VxV[tok.exit_id] = -100.0
    if code_probability < 1:
        logits_VxV[tok.exit_id, other_id] = np.log1p(-code_probability)
    logits_VxV[tok.exit_id, code_id] = np.log(code_probability)
    agent = nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(0)))
    terminal = nnx.split(ScriptedTerminal(model_lib.Transformer(config, rngs=nnx.Rngs(1)), logits_VxV))
    return agent, terminal


@pytest.mark.parametrize("code", ["0", "2"])
def test_learned_verdicts_read_the_terminals_exit_code(tok, code):
    agent, terminal = verdict_models(tok, code)
    rollout_config = rollout.RolloutConfig(max_turns=2, max_command_tokens=6, max_output_tokens=12, cache_len=96,
                                           reserve=40)
    prompts_BxP, lengths_B = rollout_episodes.build_prompts(tok, ["sort the file", "count words"], 16)
    state = rollout.rollout(*agent, *terminal, prompts_BxP, lengths_B, jax.random.key(0),
                            markers=rollout.Markers.from_tokenizer(tok), config=rollout_config)
    episodes = rollout_episodes.state_to_episodes(tok, state, ["a", "b"], ["sort the file", "count words"])
    assert all(turn.output == "" and turn.exit_code == int(code) and turn.cwd == "/"
               for episode in episodes for turn in episode.turns)
    codes, rewards, pass_probability = grounded.learned_verdicts(*agent, *terminal, tok, state,
                                                                 ["test -s out.txt", "true"], config=rollout_config)
    assert codes == [int(code), int(code)]
    assert rewards.tolist() == ([1.0, 1.0] if code == "0" else [0.0, 0.0])
    np.testing.assert_allclose(np.array(pass_probability, float), [1.0, 1.0] if code == "0" else [0.0, 0.0],
                               atol=1e-6)


@pytest.mark.parametrize("probability", [0.3, 0.6, 0.9])
def test_pass_probability_is_the_terminals_belief_in_exit_0(tok, probability):
    """A terminal that answers exit 0 with `probability` and exit 2 otherwise: greedy passes where
    it is over one half, and the pass probability is its belief, which C's filter thresholds."""
    agent, terminal = verdict_models(tok, "0", code_probability=probability)
    rollout_config = rollout.RolloutConfig(max_turns=2, max_command_tokens=6, max_output_tokens=12, cache_len=96,
                                           reserve=40)
    prompts_BxP, lengths_B = rollout_episodes.build_prompts(tok, ["sort the file", "count words"], 16)
    state = rollout.rollout(*agent, *terminal, prompts_BxP, lengths_B, jax.random.key(0),
                            markers=rollout.Markers.from_tokenizer(tok), config=rollout_config)
    verdicts = grounded.learned_verdicts(*agent, *terminal, tok, state, ["test -s out.txt", "true"],
                                         config=rollout_config)
    assert verdicts.exit_codes == ([0, 0] if probability > 0.5 else [2, 2])
    np.testing.assert_allclose(verdicts.pass_probabilities, [probability] * 2, rtol=1e-4)
    for bar in (0.0, 0.5, 0.8):
        expected = float(probability > 0.5 and probability >= bar)
        assert agent_train.learned_passes(verdicts, bar).tolist() == [expected] * 2


def test_a_verifier_longer_than_the_agents_context_is_judged_in_the_terminals(tok):
    """The sessions' context is 96 tokens (the agent's); a verifier of 100-200 tokens is fed in
    chunks into a context grown to the terminal's 256 and judged; one past 256 has no verdict."""
    agent, terminal = verdict_models(tok, "0")
    rollout_config = rollout.RolloutConfig(max_turns=1, max_command_tokens=6, max_output_tokens=12, cache_len=96,
                                           reserve=40)
    long = " && ".join(f"test -s part{i}.txt" for i in range(12))
    too_long = " && ".join(f"test -s part{i}.txt" for i in range(40))
    assert 100 < len(tok.encode_command(long)) < 200 and len(tok.encode_command(too_long)) > 256
    assert grounded.VERDICT_CHUNK < len(tok.encode_command(long))
    prompts_BxP, lengths_B = rollout_episodes.build_prompts(tok, ["a", "b", "c"], 16)
    state = rollout.rollout(*agent, *terminal, prompts_BxP, lengths_B, jax.random.key(0),
                            markers=rollout.Markers.from_tokenizer(tok), config=rollout_config)
    codes, rewards, pass_probability = grounded.learned_verdicts(*agent, *terminal, tok, state,
                                                                 [long, "true", too_long], config=rollout_config)
    assert codes == [0, 0, None] and rewards.tolist() == [1.0, 1.0, 0.0]
    assert pass_probability[2] is None
    np.testing.assert_allclose(pass_probability[:2], [1.0, 1.0], atol=1e-6)


def test_mixed_batch_grounds_a_fraction_and_reports_reward_agreement(tok, backend):
    from twjax import interleave
    config = model_lib.ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                   d_ff=64, max_len=256)
    agent = nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(0)))
    terminal = nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(1)))
    tasks = [registry.generate(name, seed=5) for name in sorted(registry.FAMILIES)[:4]]
    rollout_config = rollout.RolloutConfig(max_turns=2, max_command_tokens=6, max_output_tokens=16, cache_len=160,
                                           reserve=64)
    batch = interleave.mixed_batch(agent, terminal, tok, tasks, jax.random.key(1), config=rollout_config,
                                   real_fraction=0.25, backend=backend, workers=2)
    kinds = [episode.extra["terminal"] for episode in batch.episodes]
    assert sorted(kinds) == ["learned", "learned", "learned", "real"]
    assert batch.summary["real_sessions"] == 1 and batch.summary["learned_sessions"] == 3
    for episode in batch.episodes:
        assert episode.extra["real_reward"] == 0.0  # random agents solve nothing; doing nothing fails
        if episode.extra["terminal"] == "learned":
            assert episode.extra["learned_reward"] == float(episode.extra["predicted_verifier_exit"] == 0)
    learned_episodes = [e for e in batch.episodes if e.extra["terminal"] == "learned"]
    assert [r.id for r in batch.replays] == [e.id for e in learned_episodes]
    for imagined, real, task in zip(learned_episodes, batch.replays, tasks[1:]):
        assert [t.command for t in real.turns[:-1]] == [t.command for t in imagined.turns]
        verdict = real.turns[-1]  # the real verifier closes the replay: a transcript to train on
        assert (verdict.label, verdict.command) == ("verify", task.verifier)
        assert real.extra["real_reward"] == float(verdict.exit_code == 0)
        judged = interleave.judged_by_replay(imagined, real)  # what the agent saw, the real verdict
        assert [t.label for t in judged.turns] == ["imagined"] * len(imagined.turns) + ["verify"]
        assert [t.output for t in judged.turns[:-1]] == [t.output for t in imagined.turns]
        assert judged.turns[-1] == verdict and judged.extra["real_reward"] == real.extra["real_reward"]
    with pytest.raises(ValueError, match="not a learned session and its replay"):
        interleave.judged_by_replay(learned_episodes[0], batch.replays[1])
    from twjax.evaluate import fidelity
    scored = fidelity.closed_loop_records(list(zip(learned_episodes, batch.replays)))
    assert len(scored) == sum(len(e.turns) for e in learned_episodes)
    learned = np.array([e.extra["learned_reward"] for e in learned_episodes])
    assert batch.summary["reward_agreement"] == pytest.approx(float(np.mean(learned == 0.0)))
    assert batch.summary["learned_passes"] == int(learned.sum())  # every real reward is 0: no pass is right
    assert batch.summary["learned_pass_precision"] == (0.0 if learned.any() else None)
    for episode in learned_episodes:  # a parsed verdict has an <exit> to score the pass probability at
        if episode.extra["predicted_verifier_exit"] is not None:
            assert 0.0 <= episode.extra["learned_pass_probability"] <= 1.0
    probability = np.array([e.extra["learned_pass_probability"] for e in learned_episodes], float)  # None -> nan
    by_bar = batch.summary["learned_passes_by_probability"]
    assert list(by_bar) == [str(bar) for bar in metrics.PASS_PROBABILITY_BARS]
    for bar, row in by_bar.items():
        assert row == {"passes": int(((probability >= float(bar)) & (learned == 1.0)).sum()), "real": 0,
                       "precision": 0.0 if row["passes"] else None}


def test_observed_sessions_open_with_the_tasks_real_state_in_every_mode(tok, backend):
    """With observe, each session (learned and grounded) opens with its task's observation, pinned
    in the prompt as training pins it and recorded whole; replays open with the real one."""
    import re
    from twjax import interleave
    from twjax.evaluate import fidelity
    config = model_lib.ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                   d_ff=64, max_len=640)
    agent = nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(0)))
    terminal = nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(1)))
    tasks = [registry.generate(name, seed=5) for name in sorted(registry.FAMILIES)[:4]]
    by_task = task_episodes.observe_tasks(tasks + tasks[:1], backend, workers=2)  # a repeated task: once
    assert sorted(by_task) == sorted(t.id for t in tasks)
    observations = [by_task[t.id] for t in tasks]
    assert all(o.label == "setup" and o.command == task_episodes.OBSERVE_COMMAND and o.exit_code == 0
               and o.output for o in observations)
    rollout_config = rollout.RolloutConfig(max_turns=2, min_turns=2, max_command_tokens=6, max_output_tokens=16,
                                           cache_len=640, reserve=64)
    # the prompts: the tokenizer's pinned head of [task, observation] for the context, half of it at most
    prompts_BxP, lengths_B = rollout_episodes.build_prompts(tok, [t.instruction for t in tasks], 320,
                                                            [[o] for o in observations])
    for task, observation, prompt, length in zip(tasks, observations, prompts_BxP, lengths_B):
        pinned = tok.pinned_prefix(Episode(id="", task=task.instruction, turns=[observation]), 640)
        assert length == len(pinned) <= 320 and prompt[:length].tolist() == pinned.tolist()
        assert tok.out_id in pinned.tolist()  # the observation's output, not only the task

    def timeless(text):  # the listing's times are the minute each sandbox was made
        return re.sub(r"\d\d:\d\d", "HH:MM", text)

    batch = interleave.mixed_batch(agent, terminal, tok, tasks, jax.random.key(1), config=rollout_config,
                                   real_fraction=0.25, backend=backend, workers=2, observe=True)
    assert sorted(e.extra["terminal"] for e in batch.episodes) == ["learned", "learned", "learned", "real"]
    for episode in batch.episodes:
        assert episode.n_given == 1 and len(episode.turns) == 3, episode  # the observation, two agent turns
        assert timeless(episode.turns[0].output) == timeless(by_task[episode.extra["task_id"]].output)
    learned_episodes = [e for e in batch.episodes if e.extra["terminal"] == "learned"]
    for imagined, real in zip(learned_episodes, batch.replays):
        assert real.n_given == 1 and timeless(real.turns[0].output) == timeless(imagined.turns[0].output)
        assert [t.command for t in real.turns[1:-1]] == [t.command for t in imagined.turns[1:]]
        judged = interleave.judged_by_replay(imagined, real)
        assert [t.label for t in judged.turns] == ["setup", "imagined", "imagined", "verify"]
    scored = fidelity.closed_loop_records(list(zip(learned_episodes, batch.replays)))
    assert len(scored) == 2 * len(learned_episodes)  # the observation is given, not scored

    # Only the terminal observes: its prompts are the observed ones above, the agent's the tasks'.
    # The learned sessions and their replays are recorded as the terminal saw them; the grounded
    # one, which no learned terminal read, holds no observation.
    agent_BxP, agent_lengths_B, given, terminal_prompts = rollout_episodes.session_prompts(
        tok, tasks, 640, by_task, 320, terminal_only=True)
    assert given is None
    np.testing.assert_array_equal(terminal_prompts.prompts_BxQ, prompts_BxP)
    np.testing.assert_array_equal(terminal_prompts.lengths_B, lengths_B)
    np.testing.assert_array_equal(agent_lengths_B, [len(tok.encode_task(t.instruction)) for t in tasks])
    batch = interleave.mixed_batch(agent, terminal, tok, tasks, jax.random.key(1), config=rollout_config,
                                   real_fraction=0.25, backend=backend, workers=2, observe=True,
                                   observe_terminal_only=True)
    for episode in batch.episodes:
        observed = episode.extra["terminal"] == "learned"
        assert episode.n_given == observed and len(episode.turns) == 2 + observed, episode
        if observed:
            assert timeless(episode.turns[0].output) == timeless(by_task[episode.extra["task_id"]].output)
    assert all(r.n_given == 1 and len(r.turns) == 4 for r in batch.replays)  # observation, 2 turns, verdict
    for imagined, real in zip([e for e in batch.episodes if e.extra["terminal"] == "learned"], batch.replays):
        assert [t.label for t in interleave.judged_by_replay(imagined, real).turns] == [
            "setup", "imagined", "imagined", "verify"]


def test_the_terminals_view_swaps_the_agents_prompt_for_its_own():
    tokens_BxS = np.array([[1, 2, 30, 31, 32, 0], [4, 40, 41, 42, 43, 0]])
    prompts = rollout.TerminalPrompts(np.array([[1, 2, 9, 9, 9], [4, 8, 0, 0, 0]]), np.array([5, 2]))
    views = grounded.terminal_views(tokens_BxS, [5, 4], np.array([3, 1]), prompts)
    assert [v.tolist() for v in views] == [[1, 2, 9, 9, 9, 30, 31, 32], [4, 8, 40, 41, 42]]
    assert [v.tolist() for v in grounded.terminal_views(tokens_BxS, [2, 3], np.zeros(2, int), None)] == \
        [[1, 2], [4, 40, 41]]


class ScriptedAgent(nnx.Module):
    """Types a fixed command per row, by position: the token after position p is script[row, p - P + 1]."""

    def __init__(self, inner, script_BxL, prompt_len: int):
        self.inner = inner
        self.config = inner.config
        self.script_BxL = nnx.Variable(script_BxL)
        self.prompt_len = prompt_len

    def forward_cached(self, tokens_BxT, valid_BxT, cache):
        positions_BxT = cache.end_B[:, None] + jnp.arange(tokens_BxT.shape[1])[None, :]
        logits, cache = self.inner.forward_cached(tokens_BxT, valid_BxT, cache)
        script_BxL = self.script_BxL[...]
        index_BxT = jnp.clip(positions_BxT - self.prompt_len + 1, 0, script_BxL.shape[1] - 1)
        next_BxT = jnp.take_along_axis(script_BxL, index_BxT, axis=1)
        return jax.nn.one_hot(next_BxT, logits.shape[-1]) * 100.0, cache


def test_a_sandbox_the_agent_kills_stops_only_its_row(tok, backend):
    config = model_lib.ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                   d_ff=64, max_len=256)
    commands = [tok.encode_command("kill -9 -1; kill -9 $$").tolist(), tok.encode_command("echo hi").tolist()]
    width = max(map(len, commands))
    script_BxL = np.array([c + [c[-1]] * (width - len(c)) for c in commands], np.int32)
    tasks = [registry.generate("text_sed", seed=1), registry.generate("text_sed", seed=2)]
    prompts_BxP, lengths_B = rollout_episodes.build_prompts(tok, ["x", "x"], 8)
    agent = nnx.split(ScriptedAgent(model_lib.Transformer(config, rngs=nnx.Rngs(0)), script_BxL,
                                    int(lengths_B[0])))
    rollout_config = rollout.RolloutConfig(max_turns=1, max_command_tokens=32, max_output_tokens=16, cache_len=96)
    state, rewards = grounded.grounded_rollout(*agent, tok, tasks, prompts_BxP, lengths_B, jax.random.key(0),
                                               config=rollout_config, backend=backend, workers=2)
    assert np.asarray(state.stop_B).tolist() == [rollout.SANDBOX_LOST, rollout.TURN_LIMIT]
    assert rewards.tolist() == [0.0, 0.0]
    episodes = rollout_episodes.state_to_episodes(tok, state, ["killer", "echo"], ["x", "x"])
    assert episodes[0].extra["stop"] == "sandbox_lost"
    assert [t.command for t in episodes[0].turns] == ["kill -9 -1; kill -9 $$"]
    assert [(t.command, t.output) for t in episodes[1].turns] == [("echo hi", "hi\n")]


def test_commands_in_cache_stages_equal_commands_over_the_whole_cache():
    """Cut to the stage its running sessions fill through their next command (command_slots), the
    grounded agent writes the same commands, turn after turn through several stages, as with its
    whole cache (a copy head's per-slot keys and tokens included)."""
    markers = rollout.Markers(cmd_open=3, cmd_end=4, out_open=5, out_end=6, eoe=7, task=8, exit=9, cwd=10, vocab=40)
    config = model_lib.ModelConfig(vocab_size=48, d_model=32, n_layers=2, n_heads=4, n_kv_heads=1, d_ff=64,
                                   max_len=128, copy_head=True)
    agent = nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(1)))
    rng = np.random.default_rng(0)
    lengths_B = np.array([2, 8, 5, 3, 7, 4], np.int32)
    prompts_BxP = np.zeros((6, 8), np.int32)
    for row, n in enumerate(lengths_B):
        prompts_BxP[row, :n] = rng.integers(11, markers.vocab, size=n)
    runs = {}
    for stages in (1, 8):
        rollout_config = rollout.RolloutConfig(max_turns=4, max_command_tokens=5, max_output_tokens=7, cache_len=64,
                                               cache_stages=stages, agent_sampling=rollout.Sampling(temperature=1.0))
        state = grounded.agent_prefill(*agent, jnp.asarray(prompts_BxP), jnp.asarray(lengths_B), config=rollout_config)
        slots = []
        for turn in range(4):
            slots.append(grounded.command_slots(state, rollout_config))
            state = grounded.agent_commands(*agent, state, jax.random.fold_in(jax.random.key(0), turn),
                                            markers=markers, config=rollout_config, slots=slots[-1])
            paused = np.flatnonzero(np.asarray(state.stop_B) == rollout.PAUSED)
            spans = {row: [markers.out_open, 20 + row, 21, markers.exit, 12, markers.cwd, 13, markers.out_end]
                     for row in paused}
            state = grounded.append_spans(*agent, state, spans, rollout_config)
        runs[stages] = state, slots
    (whole, whole_slots), (staged, staged_slots) = runs[1], runs[8]
    np.testing.assert_array_equal(staged.tokens_BxS, whole.tokens_BxS)
    np.testing.assert_array_equal(staged.stop_B, whole.stop_B)
    assert whole_slots == [64] * 4
    assert staged_slots[0] == 16 and len(set(staged_slots)) >= 3  # the longest prompt (8) + a command (5)
    assert int(np.max(whole.length_B)) > 32
    assert staged.agent_cache.max_len == 64
