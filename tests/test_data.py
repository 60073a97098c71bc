"""Input pipeline: regime masks, packing, determinism, resumable state, corrupt records, shards."""
import json

import ml_collections
import numpy as np
import pytest

from sample_episodes import make_episodes
import jax.numpy as jnp

from twjax import data, episode as episode_lib, model as model_lib, tokenizer as T
from twjax.episode import Episode, Turn

SEQ_LEN = 256


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    episodes = make_episodes(120, seed=2, max_turns=12)
    episode_lib.write_jsonl(root / "train-a.jsonl", episodes[:50])
    episode_lib.write_jsonl(root / "train-b.jsonl", episodes[50:100])
    episode_lib.write_jsonl(root / "valid.jsonl", episodes[100:])
    T.train([str(root / "train-a.jsonl")], str(root / "tok.model"), vocab_size=600)
    return root, episodes, T.Tokenizer.load(str(root / "tok.model"))


def make_config(root, **overrides):
    fields = dict(train=str(root / "train-*.jsonl"), valid=str(root / "valid.jsonl"),
                  tokenizer=str(root / "tok.model"), seq_len=SEQ_LEN, batch_size=4, regime="terminal",
                  lambda_obs=0.25, seed=7)
    fields.update(overrides)
    return ml_collections.ConfigDict({"data": fields})


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def assert_resumes_exactly(config, skip, compare):
    """After `skip` batches, a fresh iterator given the JSON round trip of the state makes the
    next `compare` batches exactly."""
    iterator = data.make_train_iterator(config, shard=(0, 1))
    take(iterator, skip)
    state = json.loads(json.dumps(iterator.get_state()))
    expected = take(iterator, compare)
    resumed = data.make_train_iterator(config, shard=(0, 1))
    resumed.set_state(state)
    assert_same_batches(take(resumed, compare), expected)


def test_batch_matches_contract(setup):
    root, _, _ = setup
    batch = next(data.make_train_iterator(make_config(root), shard=(0, 1)))
    assert set(batch) == set(data.BATCH_KEYS)
    for key, value in batch.items():
        assert value.shape == (4, SEQ_LEN)
        assert value.dtype == (np.float32 if key == "weights" else np.int32)


def test_masks_select_the_tokens_of_each_regime_by_hand(setup):
    root, _, tok = setup
    ep = Episode("tiny", "go", [Turn("ls", "a\n", 0, "/")])
    # Layout: <task> go | <cmd> ls </cmd> | <out> | a \n <exit> 0 <cwd> / </out> | <eoe>
    ids, roles = tok.encode_episode(ep)
    n_task = 1 + len(tok.encode_text("go"))
    n_cmd = 2 + len(tok.encode_text("ls"))
    n_term = len(tok.encode_text("a\n")) + 1 + len(tok.encode_text("0")) + 1 + len(tok.encode_text("/")) + 1
    assert len(ids) == n_task + n_cmd + 1 + n_term + 1
    target_kinds = (["task"] * (n_task - 1) + ["agent"] * n_cmd + ["control"] + ["terminal"] * n_term + ["agent"])
    expected = {
        "terminal": [1.0 if k == "terminal" else 0.0 for k in target_kinds],
        "agent": [1.0 if k == "agent" else 0.0 for k in target_kinds],
        "full": [0.25 if k == "terminal" else 1.0 for k in target_kinds],
    }
    for regime, weights in expected.items():
        [example] = data.EncodeEpisode(str(root / "tok.model"), SEQ_LEN, regime, 0.25).map(ep)
        assert example["inputs"].tolist() == ids[:-1].tolist()
        assert example["targets"].tolist() == ids[1:].tolist()
        assert example["roles"].tolist() == [T.ROLE_NAMES.index(k) for k in target_kinds]
        assert example["weights"].tolist() == weights, regime
    with pytest.raises(ValueError, match="regime"):
        data.regime_weights(np.zeros(3, np.int32), "everything")


def test_dropped_and_unimitated_turns_by_hand(setup):
    """Agent data: the verifier probe leaves the transcript; an injected mistake stays as context (its
    output still trains the terminal side in B) but its command weighs 0; the recovery is imitated."""
    root, _, tok = setup
    error, recovery = Turn("cat nope", "cat: nope: No such file\n", 1, "/", label="error"), Turn("ls", "a\n", 0, "/", label="recovery")
    probe = Turn("cd /x || exit 1\nexit 0\n", "", 0, "/", label="verify")
    ep = Episode("e", "go", [error, recovery, probe])
    without_probe = Episode("e", "go", [error, recovery])
    for regime, lambda_obs in (("agent", 1.0), ("full", 0.5)):
        encode = data.EncodeEpisode(str(root / "tok.model"), SEQ_LEN, regime, lambda_obs, ("verify",), ("error",))
        [example] = encode.map(ep)
        [plain] = data.EncodeEpisode(str(root / "tok.model"), SEQ_LEN, regime, lambda_obs).map(without_probe)
        assert example["inputs"].tolist() == plain["inputs"].tolist(), "the probe is gone"
        n_task = len(tok.encode_task("go"))
        n_error_cmd = len(tok.encode_command(error.command))
        # targets are shifted by one: target i is token i + 1
        error_cmd = slice(n_task - 1, n_task - 1 + n_error_cmd)
        assert not example["weights"][error_cmd].any(), regime
        np.testing.assert_array_equal(plain["weights"][error_cmd], 1.0)
        rest = np.ones(len(plain["weights"]), bool)
        rest[error_cmd] = False
        np.testing.assert_array_equal(example["weights"][rest], plain["weights"][rest])
        assert (example["weights"][rest] > 0).sum() == (plain["weights"][rest] > 0).sum() > 0
    [terminal] = data.EncodeEpisode(str(root / "tok.model"), SEQ_LEN, "terminal").map(ep)
    assert "cd /x" in tok.decode(terminal["inputs"]), "the terminal's data keeps the probe"


def test_imagined_outputs_are_context_not_targets_by_hand(setup):
    """A session from a learned terminal closed by the real verdict: only the verdict's span trains
    the terminal; the agent still imitates its own imagined commands."""
    root, _, tok = setup
    imagined = [Turn("ls", "a.txt\n", 0, "/", label="imagined"), Turn("cat a.txt", "hi\n", 0, "/", label="imagined")]
    verdict = Turn("cd /x || exit 1\nexit 0\n", "", 1, "/", label="verify")
    ep = Episode("e", "go", imagined + [verdict])
    [terminal] = data.EncodeEpisode(str(root / "tok.model"), SEQ_LEN, "terminal").map(ep)
    n_head = len(tok.encode_task("go")) + sum(len(tok.encode_turn(t)[0]) for t in imagined)
    verdict_ids, verdict_roles = tok.encode_turn(verdict)
    expected = np.zeros(len(terminal["weights"]), np.float32)
    expected[n_head - 1:n_head - 1 + len(verdict_ids)] = verdict_roles == T.ROLE_TERMINAL
    np.testing.assert_array_equal(terminal["weights"], expected)
    [agent] = data.EncodeEpisode(str(root / "tok.model"), SEQ_LEN, "agent").map(ep)
    observed = Episode("e", "go", [Turn(t.command, t.output, 0, "/") for t in imagined] + [verdict])
    [plain] = data.EncodeEpisode(str(root / "tok.model"), SEQ_LEN, "agent").map(observed)
    np.testing.assert_array_equal(agent["weights"], plain["weights"])


def check_packed_rows(batch, tok, allow_empty_rows=False):
    for row in range(batch["inputs"].shape[0]):
        seg, pos = batch["segment_ids"][row], batch["positions"][row]
        inputs, targets = batch["inputs"][row], batch["targets"][row]
        pad = seg == 0
        assert not batch["weights"][row][pad].any() and not inputs[pad].any()
        real = np.flatnonzero(~pad)
        if allow_empty_rows and not real.size:
            continue
        assert real.size and (real == np.arange(real.size)).all(), "padding only at the end"
        ids = seg[real]
        assert (np.diff(ids) >= 0).all() and (np.diff(ids) <= 1).all() and ids[0] == 1
        for segment in np.unique(ids):
            where = np.flatnonzero(seg == segment)
            assert (pos[where] == np.arange(where.size)).all(), "positions restart at 0 per segment"
            assert inputs[where[0]] == tok.task_id, "every segment is one window starting at <task>"
            assert (inputs[where[1:]] == targets[where[:-1]]).all(), "targets are the next inputs"
            assert tok.task_id not in inputs[where[1:]].tolist(), "no second window inside a segment"


@pytest.mark.parametrize("regime", data.REGIMES)
def test_packing_keeps_windows_apart(setup, regime):
    root, _, tok = setup
    iterator = data.make_train_iterator(make_config(root, regime=regime), shard=(0, 1))
    batches = take(iterator, 6)
    for batch in batches:
        check_packed_rows(batch, tok)
        role_of_weighted = batch["roles"][batch["weights"] > 0]
        if regime == "terminal":
            assert (role_of_weighted == T.ROLE_TERMINAL).all()
        elif regime == "agent":
            assert (role_of_weighted == T.ROLE_AGENT).all()
        else:  # 0 only where a window repeats history of a long session.
            real = batch["segment_ids"] > 0
            terminal = (batch["roles"] == T.ROLE_TERMINAL) & real
            assert set(np.unique(batch["weights"][terminal])) <= {0.0, 0.25}
            assert set(np.unique(batch["weights"][~terminal & real])) <= {0.0, 1.0}
            assert (batch["weights"][real] > 0).mean() > 0.5
    assert sum(int((b["segment_ids"] > 0).sum()) for b in batches) > 0.5 * 6 * 4 * SEQ_LEN


def test_same_seed_same_batches_other_seed_other_batches(setup):
    root, _, _ = setup
    first = take(data.make_train_iterator(make_config(root), shard=(0, 1)), 4)
    again = take(data.make_train_iterator(make_config(root), shard=(0, 1)), 4)
    other = take(data.make_train_iterator(make_config(root, seed=8), shard=(0, 1)), 4)
    assert_same_batches(first, again)
    assert any(not np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, other))


def test_iterator_state_resumes_exactly(setup, tmp_path):
    root, _, _ = setup
    config = make_config(root, batch_size=2)
    assert_resumes_exactly(config, skip=5, compare=7)
    # The orbax integration the trainer uses: grain's CheckpointHandler, one JSON file per process.
    import grain
    from etils import epath
    iterator = data.make_train_iterator(config, shard=(0, 1))
    take(iterator, 3)
    grain.checkpoint.CheckpointHandler().save(epath.Path(tmp_path), item=iterator)
    expected = take(iterator, 3)
    restored = grain.checkpoint.CheckpointHandler().restore(
        epath.Path(tmp_path), item=data.make_train_iterator(config, shard=(0, 1)))
    assert_same_batches(take(restored, 3), expected)


def test_epochs_repeat_with_a_new_order(setup):
    root, _, _ = setup
    records = data._records(str(root / "valid.jsonl"), (0, 1)).shuffle(seed=1).repeat(None)
    first, second = [records[i].id for i in range(20)], [records[i].id for i in range(20, 40)]
    assert sorted(first) == sorted(second) and first != second


def test_corrupt_record_names_file_and_line(setup, tmp_path):
    root, episodes, _ = setup
    bad = tmp_path / "bad.jsonl"
    lines = [e.to_line() for e in episodes[:4]]
    lines[2] = '{"id": "x", "task": "t", "turns": [{"command": "ls"}]}'
    bad.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")
    config = make_config(root, train=str(bad), valid=str(bad))
    with pytest.raises(episode_lib.EpisodeFormatError, match=f"{bad}:4: turn 0: turn is missing output"):
        take(data.make_train_iterator(config, shard=(0, 1)), 50)
    with pytest.raises(episode_lib.EpisodeFormatError, match=f"{bad}:4:"):
        list(data.make_eval_batches(config, shard=(0, 1)))
    bad.write_bytes(episodes[0].to_line().encode() + b"\n{\"id\": \"\xff\"}\n")
    with pytest.raises(episode_lib.EpisodeFormatError, match=f"{bad}:2: not UTF-8"):
        [data.EpisodeLines([str(bad)])[i] for i in range(2)]


def test_source_indexes_lines_without_trailing_newline_and_blank_lines(setup, tmp_path):
    _, episodes, _ = setup
    path = tmp_path / "e.jsonl"
    path.write_text("\n  \n" + episodes[0].to_line() + "\n\n" + episodes[1].to_line())
    source = data.EpisodeLines([str(path)])
    assert len(source) == 2 and [source[0].id, source[1].id] == [episodes[0].id, episodes[1].id]
    assert source.location(1) == f"{path}:5"


def test_process_shards_are_disjoint_and_cover_the_data(setup):
    root, episodes, _ = setup
    pattern = str(root / "train-*.jsonl")
    shards = [[ep.id for ep in data._records(pattern, (i, 3))] for i in range(3)]
    assert sum(len(s) for s in shards) == 100
    assert set().union(*map(set, shards)) == {ep.id for ep in episodes[:100]}
    config = make_config(root, batch_size=4)
    per_process = [take(data.make_train_iterator(config, shard=(i, 2)), 3) for i in range(2)]
    assert all(b["inputs"].shape == (2, SEQ_LEN) for batches in per_process for b in batches)
    with pytest.raises(ValueError, match="does not split"):
        data.make_train_iterator(make_config(root, batch_size=3), shard=(0, 2))


def test_eval_batches_are_a_fixed_pass_over_valid(setup):
    root, episodes, tok = setup
    config = make_config(root, regime="full")
    first = list(data.make_eval_batches(config, shard=(0, 1)))
    assert_same_batches(first, list(data.make_eval_batches(config, shard=(0, 1))))
    for batch in first:
        check_packed_rows(batch, tok, allow_empty_rows=True)
    windows = sum(len(tok.encode_windows(ep, SEQ_LEN + 1)) for ep in episodes[100:])
    starts = sum(int(((b["positions"] == 0) & (b["segment_ids"] > 0)).sum()) for b in first)
    assert starts == windows
    exact = list(data.make_eval_batches(config, shard=(0, 1), num_batches=len(first) + 2))
    assert_same_batches(exact[:len(first)], first)
    assert all(not b["weights"].any() for b in exact[len(first):])
    assert len(list(data.make_eval_batches(config, shard=(0, 1), num_batches=1))) == 1


def test_bench_prints_one_json_line(setup, capsys):
    root, _, _ = setup
    from twjax import cli
    overrides = [f"--config.data.{k}={v}" for k, v in make_config(root).data.items()]
    assert cli.main(["bench", "data", "--config", "configs/terminal.py:tiny", "--batches", "3", "--json",
                     *overrides]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["batches"] == 3 and result["seq_len"] == SEQ_LEN and result["tokens_per_s"] > 0
    assert 0 <= result["padding_fraction"] < 1


def test_a_directory_means_its_jsonl_files(setup):
    root, _, _ = setup
    assert episode_lib.expand_globs(str(root)) == sorted(str(p) for p in root.glob("*.jsonl"))


def test_globs_split_on_commas_but_paths_may_hold_them(tmp_path):
    """Sweep trial directories are named like 'regime=C,train=n96,seed=1': agent train lists
    files under them next to the training glob, comma-separated."""
    trial = tmp_path / "regime=C,seed=1"
    trial.mkdir()
    for path in (tmp_path / "a-0.jsonl", tmp_path / "a-1.jsonl", trial / "round-1.jsonl"):
        path.write_text("")
    spec = f"{tmp_path}/a-*.jsonl,{trial}/round-1.jsonl,"
    assert episode_lib.expand_globs(spec) == sorted([str(tmp_path / "a-0.jsonl"), str(tmp_path / "a-1.jsonl"),
                                                     str(trial / "round-1.jsonl")])
    assert episode_lib.expand_globs(str(trial)) == [str(trial / "round-1.jsonl")]
    with pytest.raises(FileNotFoundError, match="round-2"):
        episode_lib.expand_globs(f"{tmp_path}/a-*.jsonl,{trial}/round-2.jsonl")


def test_copy_example_by_hand(setup):
    _, _, tok = setup
    token_ids = data.copy_token_ids(tok)
    assert not {tok.id_of(m) for m in T.MARKERS} & set(token_ids.tolist())
    assert not any(tok.sp.is_byte(int(i)) for i in token_ids)
    make = data.CopyExample(token_ids, SEQ_LEN, seed=3)
    for index in range(20):
        [example] = make.map(index)
        ids = np.concatenate([example["inputs"], example["targets"][-1:]])
        weighted = np.flatnonzero(example["weights"])
        first_copy = len(ids) - len(weighted) - 1  # where the second A starts
        a = ids[first_copy:]
        assert len(ids) <= SEQ_LEN + 1 and 8 <= len(a) <= SEQ_LEN // 3
        np.testing.assert_array_equal(ids[:len(a)], a)  # [A, B, A]
        assert weighted.tolist() == list(range(first_copy, len(ids) - 1))  # targets a[1:]
        assert (example["roles"] == T.ROLE_TERMINAL).all()
        np.testing.assert_array_equal(make.map(index)[0]["inputs"], example["inputs"])


def test_listing_copy_examples_by_hand(setup):
    _, _, tok = setup
    token_ids = data.copy_token_ids(tok)
    plain, listings = data.CopyExample(token_ids, 64, seed=3), data.CopyExample(token_ids, 64, seed=3, lines_fraction=1.0)
    shared_columns = 0
    for index in range(50):
        [example] = listings.map(index)
        ids = np.concatenate([example["inputs"], example["targets"][-1:]])
        weighted = np.flatnonzero(example["weights"])
        listing = ids[len(ids) - len(weighted) - 1:]
        assert len(ids) <= 65
        np.testing.assert_array_equal(ids[:len(listing)], listing)  # [listing, filler, listing]
        assert weighted.tolist() == list(range(len(ids) - len(listing), len(ids) - 1))
        newline = listing[-1]
        ends = np.flatnonzero(listing == newline)
        line_len = ends[0] + 1
        assert len(listing) % line_len == 0 and 2 <= len(listing) // line_len <= 12 and 3 <= line_len <= 12
        lines = listing.reshape(-1, line_len)
        assert (lines[:, -1] == newline).all()
        shared_columns += int((lines[:, :-4] == lines[0, :-4]).all(axis=0).sum())
        # lines_fraction 0 draws exactly the examples it drew before listings existed
        rng = np.random.default_rng((3, index))
        a = rng.choice(token_ids, rng.integers(8, 64 // 3 + 1))
        b = rng.choice(token_ids, rng.integers(0, 64 // 6 + 1))
        np.testing.assert_array_equal(plain.map(index)[0]["inputs"], np.concatenate([a, b, a])[:-1])
    assert shared_columns > 50  # prefixes mostly shared: the token before a name rarely tells which


def test_selection_copy_examples_by_hand(setup):
    _, _, tok = setup
    token_ids = data.copy_token_ids(tok)
    listings = data.CopyExample(token_ids, 128, seed=3, lines_fraction=1.0)
    selections = data.CopyExample(token_ids, 128, seed=3, lines_fraction=1.0, select_fraction=1.0)
    kinds = {"lines": 0, "names": 0}
    for index in range(60):
        [whole], [example] = listings.map(index), selections.map(index)
        ids = np.concatenate([example["inputs"], example["targets"][-1:]])
        weighted = np.flatnonzero(example["weights"])
        second = ids[len(ids) - len(weighted) - 1:]
        assert weighted.tolist() == list(range(len(ids) - len(second), len(ids) - 1))
        # [listing, filler] as the plain listing example of this index draws them, then a selection
        whole_ids = np.concatenate([whole["inputs"], whole["targets"][-1:]])
        head_len = len(whole_ids) - (np.flatnonzero(whole["weights"]).size + 1)
        np.testing.assert_array_equal(ids[:head_len], whole_ids[:head_len])
        listing = whole_ids[head_len:]
        line_len = np.flatnonzero(listing == listing[-1])[0] + 1
        lines_NxW = listing.reshape(-1, line_len)
        cue, second = second[0], second[1:]  # a cue says which kind of selection follows
        runs = {(a, b, w) for a in range(len(lines_NxW)) for b in range(a + 1, len(lines_NxW) + 1)
                for w in {2, 3, 4, line_len} if w <= line_len
                and np.array_equal(lines_NxW[a:b, line_len - w:].ravel(), second)}
        if any(w == line_len for _, _, w in runs):
            assert cue == data.selection_cues(token_ids)[1]
            kinds["lines"] += 1
        else:
            assert cue == data.selection_cues(token_ids)[0]
            assert runs, index  # the names (1-3 tokens) and newline of a run of lines
            kinds["names"] += 1
    assert kinds["lines"] > 15 and kinds["names"] > 15, kinds
    with pytest.raises(ValueError, match="copy_select_fraction"):
        data.make_train_iterator(make_config(setup[0], copy_fraction=0.5, copy_lines_fraction=0.5,
                                             copy_select_fraction=-0.1), shard=(0, 1))


def test_names_fraction_sets_the_kind_of_selection(setup):
    _, _, tok = setup
    token_ids = data.copy_token_ids(tok)
    names_cue, lines_cue = data.selection_cues(token_ids)

    def cues(names_fraction):
        make = data.CopyExample(token_ids, 128, seed=3, lines_fraction=1.0, select_fraction=1.0,
                                names_fraction=names_fraction)
        return [ex["inputs"][np.flatnonzero(ex["weights"])[0]] for ex in (make.map(i)[0] for i in range(40))]

    assert set(cues(1.0)) == {names_cue} and set(cues(0.0)) == {lines_cue}
    # the default draws what selections drew before the knob existed: half and half
    assert cues(0.5) == [ex["inputs"][np.flatnonzero(ex["weights"])[0]] for ex in
                         (data.CopyExample(token_ids, 128, seed=3, lines_fraction=1.0, select_fraction=1.0).map(i)[0]
                          for i in range(40))]
    assert 10 < cues(0.5).count(names_cue) < 30
    with pytest.raises(ValueError, match="copy_names_fraction"):
        data.make_train_iterator(make_config(setup[0], copy_fraction=0.5, copy_lines_fraction=0.5,
                                             copy_select_fraction=0.5, copy_names_fraction=1.5), shard=(0, 1))


def test_prefix_and_name_max_bound_the_listing_lines(setup):
    _, _, tok = setup
    token_ids = data.copy_token_ids(tok)
    for prefix_max in (0, 3):
        for index in range(30):
            lines_NxW, prefix_len, _ = data.line_listing(np.random.default_rng(index), token_ids, 128, prefix_max)
            assert min(1, prefix_max) <= prefix_len <= prefix_max
            assert lines_NxW.shape[1] - prefix_len - 1 in (1, 2, 3)  # [prefix, name of 1-3, newline]
    for index in range(30):  # names of one token: a line is [prefix, name, newline]
        lines_NxW, prefix_len, _ = data.line_listing(np.random.default_rng(index), token_ids, 128, name_max=1)
        assert lines_NxW.shape[1] == prefix_len + 2
    with pytest.raises(ValueError, match="copy_name_max"):
        data.make_train_iterator(make_config(setup[0], copy_fraction=0.5, copy_lines_fraction=0.5,
                                             copy_name_max=0), shard=(0, 1))
    # without a prefix, a names column is the listing itself, under the names cue
    make = data.CopyExample(token_ids, 128, seed=3, lines_fraction=1.0, select_fraction=1.0, names_fraction=1.0,
                            prefix_max=0)
    for index in range(20):
        [example] = make.map(index)
        ids = np.concatenate([example["inputs"], example["targets"][-1:]])
        start = len(ids) - np.flatnonzero(example["weights"]).size - 1
        assert ids[start] == data.selection_cues(token_ids)[0]
        column = ids[start + 1:]
        assert any(np.array_equal(ids[i:i + len(column)], column) for i in range(start))
    # the default draws what listings drew before the knob existed: filler, then a prefix of 1-8
    for index in range(20):
        rng = np.random.default_rng(index)
        rng.choice(token_ids, rng.integers(0, 128 // 8 + 1))
        assert data.line_listing(np.random.default_rng(index), token_ids, 128)[1] == int(rng.integers(1, 9))
    with pytest.raises(ValueError, match="copy_prefix_max"):
        data.make_train_iterator(make_config(setup[0], copy_fraction=0.5, copy_lines_fraction=0.5,
                                             copy_prefix_max=33), shard=(0, 1))


def test_listings_reach_the_length_of_real_ls_la_lines(setup):
    _, _, tok = setup
    token_ids = data.copy_token_ids(tok)
    shapes = set()
    for index in range(60):
        lines_NxW, prefix_len, _ = data.line_listing(np.random.default_rng(index), token_ids, 512, 28, name_max=6)
        assert 2 <= len(lines_NxW) and 1 <= prefix_len <= 28 and 1 <= lines_NxW.shape[1] - prefix_len - 1 <= 6
        shapes.add(lines_NxW.shape[1])
    assert max(shapes) >= 30  # lines as long as a real `ls -la` line (~31 pieces with the 2,048-piece tokenizer)
    assert data.listing_fits(512, 32, 8) and not data.listing_fits(128, 28, 6)
    with pytest.raises(ValueError, match="do not fit"):
        data.make_train_iterator(make_config(setup[0], copy_fraction=0.5, copy_lines_fraction=0.5,
                                             copy_prefix_max=28, copy_name_max=6, seq_len=128), shard=(0, 1))


def test_listings_for_a_model_that_counts_lines_end_in_the_real_newline(setup):
    _, _, tok = setup
    token_ids, newline = data.copy_token_ids(tok), tok.id_of("\n")
    make = data.CopyExample(token_ids, 128, seed=3, lines_fraction=1.0, newline_id=newline)
    for index in range(20):
        [example] = make.map(index)
        ids = np.concatenate([example["inputs"], example["targets"][-1:]])
        listing = ids[len(ids) - np.flatnonzero(example["weights"]).size - 1:]
        line_len = np.flatnonzero(listing == newline)[0] + 1
        lines = listing.reshape(-1, line_len)
        assert (lines[:, -1] == newline).all() and (ids == newline).sum() == 2 * len(lines)  # nowhere else
    config = make_config(setup[0])
    assert data.listing_newline_id(config, tok) == -1
    config.model = ml_collections.ConfigDict(dict(line_embeddings=16))
    assert data.listing_newline_id(config, tok) == newline


def test_session_shaped_listings_align_the_names_column_with_the_listing_by_hand(setup):
    _, _, tok = setup
    token_ids, newline, out = data.copy_token_ids(tok), tok.id_of("\n"), tok.out_id
    names_cue, lines_cue = data.selection_cues(token_ids)
    lines_config = model_lib.ModelConfig(vocab_size=640, d_model=8, n_layers=1, n_heads=1, n_kv_heads=1, d_ff=8,
                                         max_len=256, line_embeddings=16, newline_id=newline, line_reset_ids=(out,))

    def examples(**fractions):
        make = data.CopyExample(token_ids, 128, seed=3, lines_fraction=1.0, newline_id=newline,
                                session_marker_id=out, **fractions)
        for index in range(20):
            [example] = make.map(index)
            ids = np.concatenate([example["inputs"], example["targets"][-1:]])
            assert ids[0] == out and (ids == out).sum() == 2  # each part opens with <out>, as an output does
            second = np.flatnonzero(ids == out)[1]
            # the targets are the second part's tokens after its <out>
            assert (np.flatnonzero(example["weights"]) + 1 == np.arange(second + 1, len(ids))).all()
            yield ids, second

    for ids, second in examples(select_fraction=1.0, names_fraction=1.0):
        assert ids[second - 1] == names_cue  # the cue stands before <out>, as the command does
        listing, column = ids[1:second - 1], ids[second + 1:]  # the listing and its filler; the names column
        line_len = np.flatnonzero(listing == newline)[0] + 1
        names_NxW = listing[:len(listing) // line_len * line_len].reshape(-1, line_len)
        name_len = np.flatnonzero(column == newline)[0]
        names_NxW = names_NxW[:, line_len - name_len - 1:]
        # a names column from the listing's first line: line k of it is line k of the listing
        assert np.array_equal(column, names_NxW[:len(column) // (name_len + 1)].ravel())
        line_1xT, _ = model_lib.line_columns(jnp.asarray(ids)[None], jnp.zeros((1, len(ids)), bool), lines_config,
                                             jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))
        line_T = np.asarray(line_1xT[0])
        for k in range(len(column) // (name_len + 1)):
            at_column = second + 1 + k * (name_len + 1)
            at_listing = 1 + k * line_len + line_len - name_len - 1
            assert line_T[at_column] == line_T[at_listing] == k
    for ids, second in examples(select_fraction=1.0, names_fraction=0.0):
        assert ids[second - 1] == lines_cue
        run = ids[second + 1:]
        assert any(np.array_equal(ids[i:i + len(run)], run) for i in range(1, second))
    for ids, second in examples():  # the whole listing again, under its own <out>
        listing = ids[second + 1:]
        assert np.array_equal(ids[1:1 + len(listing)], listing)


def test_session_header_lines_shift_the_names_column_by_their_count_by_hand(setup):
    _, _, tok = setup
    token_ids, newline, out = data.copy_token_ids(tok), tok.id_of("\n"), tok.out_id
    dots = set(data.header_names(token_ids).tolist())
    lines_config = model_lib.ModelConfig(vocab_size=640, d_model=8, n_layers=1, n_heads=1, n_kv_heads=1, d_ff=8,
                                         max_len=256, line_embeddings=16, newline_id=newline, line_reset_ids=(out,))
    make = data.CopyExample(token_ids, 128, seed=3, lines_fraction=1.0, select_fraction=1.0, names_fraction=1.0,
                            newline_id=newline, session_marker_id=out, header_max=3)
    counts = set()
    for index in range(40):
        [example] = make.map(index)
        ids = np.concatenate([example["inputs"], example["targets"][-1:]])
        assert len(ids) <= 129
        second = np.flatnonzero(ids == out)[1]
        column = ids[second + 1:]
        name_len = np.flatnonzero(column == newline)[0]
        ends = np.flatnonzero(ids[:second] == newline)  # the newlines of the header's and listing's lines
        names_at = [end - name_len for end in ends]  # where each line's last name_len tokens start
        header = 0  # the header: the leading lines named by a header name
        while ids[ends[header] - 1] in dots:
            header += 1
        counts.add(header)
        line_1xT, _ = model_lib.line_columns(jnp.asarray(ids)[None], jnp.zeros((1, len(ids)), bool), lines_config,
                                             jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))
        line_T = np.asarray(line_1xT[0])
        for k in range(len(column) // (name_len + 1)):  # line k of the column: the listing's line k + header
            at_column = second + 1 + k * (name_len + 1)
            at_listing = names_at[header + k]
            assert np.array_equal(ids[at_listing:at_listing + name_len], column[k * (name_len + 1):][:name_len])
            assert line_T[at_listing] == line_T[at_column] + header
    assert counts == {0, 1, 2, 3}
    for seq_len in (64, 128):  # whole repeats hold the header twice; every kind fits the window
        mixed = data.CopyExample(token_ids, seq_len, seed=3, lines_fraction=1.0, select_fraction=0.5,
                                 names_fraction=0.5, newline_id=newline, session_marker_id=out, header_max=3)
        assert max(len(mixed.map(index)[0]["inputs"]) for index in range(2000)) == seq_len
    with pytest.raises(ValueError, match="copy_session_header_max needs data.copy_sessions"):
        data.make_train_iterator(make_config(setup[0], copy_fraction=0.5, copy_lines_fraction=0.5,
                                             copy_session_header_max=2), shard=(0, 1))


def test_recall_examples_ask_for_one_shown_files_lines_by_its_name_by_hand(setup):
    _, _, tok = setup
    token_ids, newline, out = data.copy_token_ids(tok), tok.id_of("\n"), tok.out_id
    cue, targets = data.recall_cue(token_ids), 0
    for seq_len, newline_id in ((64, -1), (128, newline), (512, newline)):
        make = data.RecallExample(token_ids, seq_len, seed=3, marker_id=out, newline_id=newline_id)
        for index in range(60):
            [example] = make.map(index)
            assert all(np.array_equal(a, b) for a, b in zip(example.values(), make.map(index)[0].values()))
            ids = np.concatenate([example["inputs"], example["targets"][-1:]])
            assert len(ids) <= seq_len + 1 and ids[0] == out and (ids == out).sum() == 2
            second = np.flatnonzero(ids == out)[1]
            # the targets: every token after the second <out>
            assert (np.flatnonzero(example["weights"]) + 1 == np.arange(second + 1, len(ids))).all()
            prompt, lines = make.parts(index)
            assert np.array_equal(ids, np.concatenate([prompt, lines])[:seq_len + 1])
            asked = prompt[np.flatnonzero(prompt == cue)[-1] + 1:-1]  # the key between the cue and <out>
            opener, line_end = prompt[1], lines[-1]
            assert newline_id < 0 or line_end == newline
            # the shown files: [opener, key, closer, newline, lines], a blank line between them
            starts = [i for i in np.flatnonzero(prompt[:np.flatnonzero(prompt == cue)[-1]] == opener)
                      if i == 1 or prompt[i - 1] == prompt[i - 2] == line_end]
            closer = prompt[np.flatnonzero(prompt == line_end)[0] - 1]  # the token before the first newline
            shown = {}
            for start, end in zip(starts, starts[1:] + [None]):
                block = prompt[start:end]
                key_end = np.flatnonzero(block == closer)[0]
                shown[tuple(block[1:key_end])] = block[key_end + 2:]
            assert 2 <= len(shown) <= 6  # files that do not fit are left out, down to two
            assert tuple(asked) in shown and shown[tuple(asked)][:len(lines)].tolist() == lines.tolist()
            targets += len(lines)
    assert targets > 60 * 3 * 6


def test_copy_recall_fraction_mixes_recall_examples_among_the_copies(setup):
    root, _, tok = setup
    cue, out = data.recall_cue(data.copy_token_ids(tok)), tok.out_id
    config = make_config(root, copy_fraction=0.5, copy_recall_fraction=0.5, seq_len=128, batch_size=8)
    kinds = {"real": 0, "recall": 0, "copy": 0}
    markers = {tok.id_of(m) for m in T.MARKERS} - {out}  # a recall example holds <out>, and no other marker
    for batch in take(data.make_train_iterator(config, shard=(0, 1)), 4):
        for row_inputs, row_segments in zip(batch["inputs"], batch["segment_ids"]):
            for segment in set(row_segments.tolist()) - {0}:
                tokens = row_inputs[row_segments == segment]
                kind = "real" if set(tokens.tolist()) & markers else \
                    "recall" if tokens[0] == out and cue in tokens.tolist() else "copy"
                kinds[kind] += 1
    assert all(kinds.values()), kinds
    assert_resumes_exactly(config, skip=2, compare=2)
    with pytest.raises(ValueError, match="copy_recall_fraction"):
        data.make_train_iterator(make_config(root, copy_fraction=0.5, copy_recall_fraction=2.0), shard=(0, 1))


def test_copy_fraction_mixes_copies_in_and_resumes_exactly(setup):
    root, _, tok = setup
    config = make_config(root, copy_fraction=0.5, batch_size=8)
    batches = take(data.make_train_iterator(config, shard=(0, 1)), 6)
    synthetic = real = 0
    markers = {tok.id_of(m) for m in T.MARKERS}
    for batch in batches:
        for row_inputs, row_segments in zip(batch["inputs"], batch["segment_ids"]):
            for segment in set(row_segments.tolist()) - {0}:
                tokens = set(row_inputs[row_segments == segment].tolist())
                if tokens & markers:
                    real += 1
                else:
                    synthetic += 1
    assert synthetic > 0 and real > 0
    assert_resumes_exactly(config, skip=3, compare=3)
    with pytest.raises(ValueError, match="copy_fraction"):
        data.make_train_iterator(make_config(root, copy_fraction=1.0), shard=(0, 1))
    with pytest.raises(ValueError, match="copy_lines_fraction"):
        data.make_train_iterator(make_config(root, copy_fraction=0.5, copy_lines_fraction=1.5), shard=(0, 1))
    with pytest.raises(ValueError, match="seq_len >= 64"):
        data.make_train_iterator(make_config(root, copy_fraction=0.5, copy_lines_fraction=0.5, seq_len=32), shard=(0, 1))


def test_upweighted_episodes_take_their_fraction_of_the_records_however_few(setup, tmp_path):
    root, episodes, _ = setup
    extra = tmp_path / "kept.jsonl"
    episode_lib.write_jsonl(extra, episodes[100:102])  # not in data.train
    config = make_config(root, upweighted=str(extra), upweighted_fraction=0.5, batch_size=8)
    encode = data.make_encoder(config)
    kept_windows = {tuple(example["inputs"].tolist()) for episode in episodes[100:102]
                    for example in encode.map(episode)}
    from_kept = total = 0
    for batch in take(data.make_train_iterator(config, shard=(0, 1)), 6):
        for row_inputs, row_segments in zip(batch["inputs"], batch["segment_ids"]):
            for segment in set(row_segments.tolist()) - {0}:
                total += 1
                from_kept += tuple(row_inputs[row_segments == segment].tolist()) in kept_windows
    # Two episodes of 102 are drawn for about half the records; beside data.train alone they are 2%.
    assert 0.3 < from_kept / total < 0.7, (from_kept, total)
    assert_resumes_exactly(config, skip=3, compare=3)
    with pytest.raises(ValueError, match="upweighted_fraction"):
        data.make_train_iterator(make_config(root, upweighted=str(extra)), shard=(0, 1))
