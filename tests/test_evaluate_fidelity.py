"""Teacher-forced and self-conditioned regimes on models small enough to build here, prompts
against the tokenizer's layout, cross-entropy against a direct computation, and the file-system
probe scoring."""
import dataclasses
import functools
import random

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from twjax import episode as episode_lib
from twjax import model as model_lib
from twjax import tokenizer as tokenizer_lib
from twjax.episode import Episode, Turn
from twjax.evaluate import baselines, fidelity, metrics

WORDS = ("alpha", "beta", "gamma", "delta", "notes", "main", "data")


def _episode(rng: random.Random, index: int) -> Episode:
    turns, cwd = [], "/root/task"
    for t in range(rng.randint(2, 4)):
        name = f"{rng.choice(WORDS)}{index}_{t}.txt"
        choice = rng.random()
        if choice < 0.35:
            turns.append(Turn(f"echo {rng.choice(WORDS)} > {name}", "", 0, cwd))
        elif choice < 0.7:
            word = rng.choice(WORDS)
            turns.append(Turn(f"echo {word} {index}", f"{word} {index}\n", 0, cwd))
        elif choice < 0.85:
            turns.append(Turn(f"cat missing{index}_{t}", f"cat: missing{index}_{t}: No such file or directory\n", 1, cwd))
        else:
            cwd = f"/root/task/d{index}"
            turns.append(Turn(f"mkdir -p d{index} && cd d{index}", "", 0, cwd))
    return Episode(f"ep{index}", f"do task {index}", turns)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    episodes = [_episode(rng, i) for i in range(120)]
    root = tmp_path_factory.mktemp("fid")
    episode_lib.write_jsonl(root / "train.jsonl", episodes)
    tok = tokenizer_lib.train([str(root / "train.jsonl")], str(root / "tok.model"), vocab_size=320)
    return tok, episodes


def _model(tok, max_len=128, seed=0):
    vocab = -(-tok.vocab_size // 64) * 64
    config = model_lib.ModelConfig(vocab_size=vocab, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                   d_ff=128, max_len=max_len)
    return model_lib.Transformer(config, rngs=nnx.Rngs(seed))


def _command_of(tok, prompt):
    """The command in a prompt's tail `<cmd> COMMAND </cmd> <out>`."""
    ids = list(prompt)
    start = len(ids) - 1 - ids[::-1].index(tok.id_of("<cmd>"))
    return tok.decode(ids[start + 1:len(ids) - 2])


def _scripted(tok, episodes, answer):
    """A generator that answers each prompt with answer(turn) for the turn whose command it ends with."""
    by_command = {turn.command: turn for e in episodes for turn in e.turns}

    def generate(graphdef, state, tok_, prompts, max_new_tokens, **_):
        return [np.asarray(answer(by_command[_command_of(tok, p)]), np.int32) for p in prompts]
    return generate


def test_prompts_follow_the_tokenizer_layout_and_truncation(corpus):
    tok, episodes = corpus
    episode = max(episodes, key=lambda e: len(e.turns))
    task = tok.encode_task(episode.task)
    segments = [tok.encode_turn(t)[0] for t in episode.turns]
    tail = np.concatenate([tok.encode_command("ls -la"), [tok.id_of("<out>")]])
    full = sum(map(len, segments)) + len(task) + len(tail)
    for max_len in (full + 5, full, full - 3, len(task) + len(tail) + len(segments[-1]) + 2):
        expected, _ = tok.encode_episode(Episode(episode.id, episode.task, episode.turns), max_len - len(tail),
                                         finished=False)
        got = fidelity.assemble(task, segments, tail, max_len, functools.partial(tok.pinned_prefix, episode))
        np.testing.assert_array_equal(got, np.concatenate([expected, tail]))
        assert len(got) <= max_len


def test_prompts_keep_the_given_observation_pinned(corpus):
    tok, episodes = corpus
    episode = max(episodes, key=lambda e: len(e.turns))
    listing = "".join(f"-rw-r--r-- 1 root root {i} file{i}.txt\n" for i in range(40))
    observed = Episode(episode.id, episode.task, [Turn("ls -la", listing, 0, "/root/task", label="setup"), *episode.turns])
    given = tok.encode_turn(observed.turns[0])[0]
    head = np.concatenate([tok.encode_task(observed.task), given])
    segments = [tok.encode_turn(t)[0] for t in observed.turns[1:]]
    tail = np.concatenate([tok.encode_command("ls -la"), [tok.id_of("<out>")]])
    pinned = functools.partial(tok.pinned_prefix, observed)
    for max_len in (2 * len(head) + len(tail) + 4, len(head) + len(tail) + len(segments[-1]), len(tail) + 128):
        expected, _ = tok.encode_episode(observed, max_len - len(tail), finished=False)
        got = fidelity.assemble(head, segments, tail, max_len, pinned)
        np.testing.assert_array_equal(got, np.concatenate([expected, tail]))
        text = tok.decode(got)
        assert text.startswith(tok.decode(tok.encode_task(observed.task)[:(max_len - len(tail)) // 4]))
        assert "file0.txt" in text and "<exit>0<cwd>/root/task</out>" in text  # the observation's head, whole


def test_oracle_scores_perfectly_and_self_conditioning_equals_teacher_forcing(corpus):
    tok, episodes = corpus
    eval_eps = episodes[:6]
    oracle = _scripted(tok, eval_eps, lambda turn: tok.encode_terminal(turn.output, turn.exit_code, turn.cwd))
    model = _model(tok)
    settings = fidelity.EvalSettings(batch_size=4, n_boot=50, max_new_tokens=32)
    teacher = fidelity.run_regime(model, tok, eval_eps, "teacher_forced", settings, generate=oracle)
    self_ = fidelity.run_regime(model, tok, eval_eps, "self_conditioned", settings, generate=oracle)
    n_turns = sum(len(e.turns) for e in eval_eps)
    assert len(teacher.records) == len(self_.records) == n_turns
    assert all(r.metrics["correct"] == 1.0 and r.metrics["exact"] == 1.0 for r in teacher.records + self_.records)
    assert all(r.prediction.pass_probability is None for r in teacher.records)  # no verifier probe among them
    room = model.config.max_len - settings.max_new_tokens
    for key, prompt in teacher.prompts.items():
        np.testing.assert_array_equal(prompt, self_.prompts[key])
        episode = next(e for e in eval_eps if e.id == key[0])
        tail = np.concatenate([tok.encode_command(episode.turns[key[1]].command), [tok.id_of("<out>")]])
        history, _ = tok.encode_episode(Episode(episode.id, episode.task, episode.turns[:key[1]]),
                                        max_len=room - len(tail), finished=False)
        np.testing.assert_array_equal(prompt, np.concatenate([history, tail]))


def test_self_conditioned_history_holds_the_model_outputs(corpus):
    tok, episodes = corpus
    eval_eps = episodes[10:14]
    wrong = _scripted(tok, eval_eps, lambda turn: tok.encode_terminal("WRONG\n", 7, "/no"))
    model = _model(tok, max_len=192)  # the latest turn always fits whole
    settings = fidelity.EvalSettings(batch_size=3, n_boot=50, max_new_tokens=32)
    teacher = fidelity.run_regime(model, tok, eval_eps, "teacher_forced", settings, generate=wrong)
    self_ = fidelity.run_regime(model, tok, eval_eps, "self_conditioned", settings, generate=wrong)
    assert all(r.metrics["exit_acc"] == 0.0 and r.metrics["cwd_acc"] == 0.0 for r in self_.records)
    deepest = 0
    for episode in eval_eps:
        for t in range(1, len(episode.turns)):
            sc_text = tok.decode(self_.prompts[(episode.id, t)])
            tf_text = tok.decode(teacher.prompts[(episode.id, t)])
            # every earlier turn still in the (possibly truncated) prompt carries the model's answer
            in_prompt = sc_text.count("<cmd>") - 1
            assert in_prompt >= 1 and sc_text.count("WRONG\n<exit>7<cwd>/no</out>") == in_prompt
            assert "WRONG" not in tf_text and episode.turns[t - 1].output in tf_text
            deepest = max(deepest, in_prompt)
            # exactly the generated tokens, not a re-encoding of a parse of them
            span = self_.spans[(episode.id, t - 1)]
            prompt = list(self_.prompts[(episode.id, t)])
            assert any(prompt[i:i + len(span)] == list(span) for i in range(len(prompt)))
    assert deepest >= 2


def test_given_setup_turns_stay_in_the_history_unscored(corpus):
    tok, episodes = corpus
    observed = [Episode(e.id, e.task, [Turn("ls -la", f"state{i}.txt\n", 0, "/root/task", label="setup"),
                                       *e.turns]) for i, e in enumerate(episodes[20:23])]
    wrong = _scripted(tok, observed, lambda turn: tok.encode_terminal("WRONG\n", 7, "/no"))
    settings = fidelity.EvalSettings(batch_size=2, n_boot=50, max_new_tokens=32)
    run = fidelity.run_regime(_model(tok), tok, observed, "self_conditioned", settings, generate=wrong)
    assert sorted((r.episode_id, r.turn) for r in run.records) == sorted(
        (e.id, t) for e in observed for t in range(1, len(e.turns)))
    for i, episode in enumerate(observed):
        prompt = tok.decode(run.prompts[(episode.id, 1)])
        assert f"state{i}.txt\n<exit>0<cwd>/root/task</out>" in prompt  # as recorded, not generated
    trivial = baselines.baseline_records(baselines.TrivialBaseline(), observed)
    assert len(trivial) == len(run.records) and all(r.turn > 0 for r in trivial)


def test_imagined_turns_stay_in_the_history_unscored(corpus):
    """A learned terminal's session closed by the real verdict: only the verdict is scored, on the
    imagined outputs as recorded, in every regime."""
    tok, episodes = corpus
    judged = [Episode(e.id, e.task, [dataclasses.replace(t, output=f"dream{i}\n", label="imagined") for t in e.turns]
                      + [Turn("cd /root/task || exit 1\nexit 0\n", "", 1, "/root/task", label="verify")])
              for i, e in enumerate(episodes[24:27])]
    wrong = _scripted(tok, judged, lambda turn: tok.encode_terminal("WRONG\n", 7, "/no"))
    settings = fidelity.EvalSettings(batch_size=2, n_boot=50, max_new_tokens=32)
    for regime in fidelity.REGIMES:
        run = fidelity.run_regime(_model(tok, max_len=192), tok, judged, regime, settings, generate=wrong)
        assert sorted((r.episode_id, r.turn) for r in run.records) == sorted((e.id, len(e.turns) - 1) for e in judged)
        for i, episode in enumerate(judged):
            prompt = tok.decode(run.prompts[(episode.id, len(episode.turns) - 1)])
            assert "WRONG" not in prompt and f"dream{i}\n<exit>" in prompt
        model = _model(tok, max_len=192)
        for record in run.records:  # the model's P(exit 0) after its own output, up to <exit>
            key = (record.episode_id, record.turn)
            span = run.spans[key]
            context = np.concatenate([run.prompts[key], span[:list(span).index(tok.exit_id) + 1]])
            (zero,) = tok.encode_text("0")
            direct = jax.nn.softmax(model(jnp.asarray(context[None]))[0, -1])[zero]
            assert record.prediction.pass_probability == pytest.approx(float(direct), rel=1e-4)
    trivial = baselines.baseline_records(baselines.TrivialBaseline(), judged)
    assert [r.command_word for r in trivial] == [metrics.VERIFY_WORD] * len(judged)


def test_cross_entropy_matches_a_direct_computation(corpus):
    tok, episodes = corpus
    model = _model(tok, seed=3)
    graphdef, state = nnx.split(model)
    prompts = [tok.encode_task("x"), np.concatenate([tok.encode_task("yy"), tok.encode_command("ls"), [tok.id_of("<out>")]])]
    spans = [tok.encode_terminal("a\n", 0, "/"), tok.encode_terminal("bb b\n", 2, "/root")]
    got = fidelity.span_cross_entropy(graphdef, state, prompts, spans, max_len=128, batch=4)
    assert len(got) == 2
    # Direct: the unpadded sequence alone, no masks.
    prompt, span, (xent, count) = prompts[1], spans[1], got[1]
    sequence = np.concatenate([prompt, span])[None]
    logits = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, sequence)[0]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits[:-1], sequence[0, 1:])
    assert count == len(span)
    assert xent == pytest.approx(float(nll[len(prompt) - 1:].mean()), rel=1e-4)
    # a span longer than the room left is scored on the tokens that fit
    (_, count), = fidelity.span_cross_entropy(graphdef, state, prompts[:1], spans[:1], max_len=len(prompts[0]) + 2)
    assert count == 2


def test_closed_loop_pairs_are_scored_and_checked():
    real = Episode("r", "t", [Turn("ls", "a\n", 0, "/"), Turn("pwd", "/\n", 0, "/")])
    imagined = Episode("r", "t", [Turn("ls", "a\n", 0, "/"), Turn("pwd", "/tmp\n", 0, "/")])
    records = fidelity.closed_loop_records([(imagined, real)])
    assert [r.metrics["correct"] for r in records] == [1.0, 0.0]
    with pytest.raises(ValueError, match="commands differ"):
        fidelity.closed_loop_records([(Episode("r", "t", [Turn("cd", "", 0, "/")]), real)])


PROBE_REAL = """d 4096 /root
d 4096 /root/task
f 6 /root/task/a.txt
f 3 /root/task/b.txt
0cc175b9c0f1b6a831c399e269772661  /root/task/a.txt
92eb5ffee6ae2fec3ad71c777531578f  /root/task/b.txt
"""


def test_probe_entries_and_fs_scores():
    entries = fidelity.probe_entries(PROBE_REAL + "garbage line\n")
    assert ("/root/task/a.txt", "f", 6, "0cc175b9c0f1b6a831c399e269772661") in entries
    assert ("/root/task", "d", 4096, None) in entries and len(entries) == 4
    later_real = PROBE_REAL + "f 2 /root/task/c.txt\n"
    learned_first = PROBE_REAL.replace("f 3 /root/task/b.txt\n", "")   # misses b.txt
    learned_later = learned_first + "f 9 /root/task/c.txt\n"            # c.txt with a wrong size
    scores = fidelity.fs_scores({("e", 1): learned_first, ("e", 3): learned_later, ("e", 5): learned_first,
                                 ("x", 0): "junk"},
                                {("e", 1): PROBE_REAL, ("e", 3): later_real, ("e", 5): later_real})
    # entries: 3 of 4 right (F1 6/7), then 3 of 5 real with 4 predicted (F1 2/3), then 3 of 5 with 3 (F1 3/4)
    assert scores["entries_f1"] == pytest.approx((6 / 7 + 2 / 3 + 3 / 4) / 3)
    # changes 1->3: real adds c.txt size 2; learned adds c.txt size 9 -> disjoint
    assert scores["delta_f1"] == 0.0 and scores["probes"] == 3 and scores["deltas"] == 1
    # 3->5: nothing changed for real, the learned side removed c.txt: a spurious change
    assert scores["spurious_change_rate"] == 1.0 and scores["unchanged_intervals"] == 1
    assert fidelity.probe_turns(10, 4) == [3, 7, 9] and fidelity.probe_turns(10, 0) == []


def _naive_greedy(model, prompt, steps, stop):
    """Reference: full forward pass over the whole sequence for every new token."""
    forward = jax.jit(lambda s, x: nnx.merge(*graph_and_state[:1], s)(x))
    graph_and_state = nnx.split(model)
    sequence = list(prompt)
    for _ in range(steps):
        padded = np.zeros((1, model.config.max_len), np.int32)
        padded[0, :len(sequence)] = sequence
        logits = forward(graph_and_state[1], padded)[0, len(sequence) - 1]
        sequence.append(int(np.argmax(logits)))
        if sequence[-1] == stop:
            break
    return sequence[len(prompt):]


def test_batched_generation_matches_naive_greedy(corpus):
    tok, episodes = corpus
    model = _model(tok, seed=5)
    graphdef, state = nnx.split(model)
    prompts = [np.concatenate([tok.encode_task(e.task), tok.encode_command(e.turns[0].command), [tok.id_of("<out>")]])
               for e in episodes[:3]]
    spans = fidelity.generate_spans(graphdef, state, tok, prompts, 6, config=model.config, batch=4)
    assert len({len(p) for p in prompts}) > 1  # rows of different lengths share the batch
    for prompt, span in zip(prompts, spans):
        assert list(span) == _naive_greedy(model, prompt, 6, tok.id_of("</out>"))


def _memorize(tok, episodes, steps=150):
    model = _model(tok, seed=1)
    rows = [tok.encode_episode(e)[0] for e in episodes]
    ids = np.zeros((len(rows), 96), np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    mask = (ids[:, 1:] != 0).astype(np.float32)
    graphdef, params = nnx.split(model)
    optimizer = optax.adam(1e-2)

    def loss_fn(params):
        logits = nnx.merge(graphdef, params)(ids[:, :-1])
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:])
        return (nll * mask).sum() / mask.sum()

    @jax.jit
    def train(params):
        def step(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss
        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
        return params, losses[-1]

    params, loss = train(params)
    return nnx.merge(graphdef, params), float(loss)


def test_model_that_knows_the_answers_scores_perfectly(corpus):
    """A model trained to memorise three episodes reproduces them when teacher-forced, and (its
    outputs being right) when self-conditioned; the default generator and the KV cache are used."""
    tok, episodes = corpus
    chosen = [e for e in episodes if len(e.turns) >= 3 and sum(len(t.output) for t in e.turns) > 10
              and len(tok.encode_episode(e)[0]) <= 96][:3]
    assert len(chosen) == 3
    model, loss = _memorize(tok, chosen)
    assert loss < 0.05
    settings = fidelity.EvalSettings(batch_size=4, n_boot=50, max_new_tokens=32)
    report, runs = fidelity.evaluate_model(model, tok, chosen, settings)
    assert report["teacher_forced"]["exact"] == 1.0 and report["teacher_forced"]["correct"] == 1.0
    assert report["self_conditioned"]["correct"] == 1.0
    assert report["teacher_forced"]["xent"] < 0.1
    assert report["exposure_bias"]["area_between"]["correct"]["area"] == 0.0
    # an untrained model on the same turns is far from it
    untrained, _ = fidelity.evaluate_model(_model(tok, seed=2), tok, chosen, settings)
    assert untrained["teacher_forced"]["correct"] < 0.5 and untrained["teacher_forced"]["xent"] > 1.0


def test_ids_past_the_vocabulary_parse_as_replacement_characters(corpus):
    tok, _ = corpus
    span = np.concatenate([tok.encode_text("ok"), [tok.vocab_size + 5], tok.encode_terminal("", 0, "/r")])
    assert fidelity.parse_span(tok, span) == ("ok\ufffd", 0, "/r")
