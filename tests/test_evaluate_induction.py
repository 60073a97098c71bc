"""The copy probe: an induction oracle scores ~1, a model that copies nothing scores ~0."""
import numpy as np
import pytest
from flax import nnx

from sample_episodes import make_episodes
from twjax import data, episode as episode_lib, model as model_lib, tokenizer as T
from twjax.evaluate import induction


def induction_oracle(inputs_BxT: np.ndarray) -> np.ndarray:
    """At each position: the token that followed the latest earlier occurrence of the current one."""
    predicted = np.zeros_like(inputs_BxT)
    for row, tokens in enumerate(inputs_BxT):
        last_after: dict[int, int] = {}
        for t, token in enumerate(tokens):
            if t > 0:
                last_after[int(tokens[t - 1])] = int(token)
            predicted[row, t] = last_after.get(int(token), 0)
    return predicted


@pytest.fixture(scope="module")
def tok_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("induction")
    episode_lib.write_jsonl(root / "e.jsonl", make_episodes(60, seed=5))
    tok = T.train([str(root / "e.jsonl")], str(root / "t.model"), vocab_size=500)
    config = model_lib.ModelConfig(vocab_size=512, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64,
                                   max_len=256)
    return tok, model_lib.Transformer(config, rngs=nnx.Rngs(0))


def test_copy_probe_separates_an_induction_oracle_from_a_constant(tok_and_model):
    tok, model = tok_and_model
    oracle = induction.copy_accuracy(model, tok, n_examples=16, predict=induction_oracle)
    constant = induction.copy_accuracy(model, tok, n_examples=16, predict=np.zeros_like)
    untrained = induction.copy_accuracy(model, tok, n_examples=16)
    assert oracle["targets"] == constant["targets"] == untrained["targets"] > 16 * 7
    # This small vocabulary (~230 ordinary pieces) repeats tokens inside A and B, where the latest
    # earlier occurrence is the wrong one to copy from: the oracle's ceiling is ~0.7 here.
    assert oracle["accuracy"] > 0.6 and constant["accuracy"] < 0.05 and untrained["accuracy"] < 0.1


def test_line_copy_probe_defeats_one_token_induction_only_after_a_shared_prefix(tok_and_model):
    tok, model = tok_and_model
    unique = induction.line_copy_accuracy(model, tok, shared_prefix=False, predict=induction_oracle)
    shared = induction.line_copy_accuracy(model, tok, shared_prefix=True, predict=induction_oracle)
    assert unique["targets"] == shared["targets"] == 32 * 6
    # The oracle copies what followed the latest occurrence: after a shared prefix that is always
    # the last line's name, right on one line in six. (This small vocabulary, ~230 ordinary pieces,
    # repeats tokens inside a line, which costs the oracle some unique-prefix names too.)
    assert unique["accuracy"] > 0.7 and shared["accuracy"] < 0.3, (unique, shared)


def test_names_column_probe_defeats_one_token_induction(tok_and_model):
    tok, model = tok_and_model
    oracle = induction.line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, predict=induction_oracle)
    assert oracle["targets"] == 32 * 5
    # After a newline the oracle repeats the name that followed the latest newline: the one just written
    # (not always: this small vocabulary repeats tokens, newlines among them, in the filler).
    assert oracle["accuracy"] < 0.1, oracle
    assert oracle["predicted"]["previous_name"] > 0.7 and sum(oracle["predicted"].values()) == pytest.approx(1.0)
    echo = induction.line_copy_accuracy(model, tok, shared_prefix=True, names_only=True,
                                        predict=lambda inputs_BxT: np.roll(inputs_BxT, 1, axis=1))
    # writing the token before the current one: after [name, newline], the name just written
    assert echo["predicted"]["previous_name"] > 0.85, echo

    def column_oracle(inputs_BxT):
        """Knows the layout: after [name, newline] it writes the name of the listing's next line."""
        predicted = induction_oracle(inputs_BxT)
        for row, tokens in enumerate(inputs_BxT):
            second = 6 * 8 + 10 + 1  # after the names cue
            for line in range(1, 6):
                predicted[row, second + line * 2 - 1] = tokens[line * 8 + 6]
        return predicted

    column = induction.line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, predict=column_oracle)
    assert column["accuracy"] == column["predicted"]["right"] == 1.0

    def prefix_writer(inputs_BxT):
        """Writes the next line's first prefix token, as a copy of the whole listing would."""
        predicted = inputs_BxT.copy()
        predicted[:, :] = inputs_BxT[:, :1]
        return predicted

    prefix = induction.line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, predict=prefix_writer)
    assert prefix["predicted"]["prefix"] > 0.85, prefix


def test_session_shaped_names_column_probe_aligns_lines(tok_and_model):
    tok, model = tok_and_model
    seen = []

    def line_oracle(inputs_BxT):
        """Knows only that line k of the repeat is line k of the listing, each counted from <out>:
        after the newline that ends the repeat's line k - 1 it writes the listing's line k's name."""
        seen.append(inputs_BxT)
        predicted = induction_oracle(inputs_BxT)
        for row, tokens in enumerate(inputs_BxT):
            listing_at, repeat_at = np.flatnonzero(tokens == tok.out_id)
            for line in range(1, 6):
                predicted[row, repeat_at + line * 2] = tokens[listing_at + 1 + line * 8 + 6]
        return predicted

    aligned = induction.line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, predict=line_oracle,
                                           session=True)
    assert aligned["accuracy"] == 1.0 and aligned["targets"] == 32 * 5 and aligned["by_header_lines"] == {"0": 1.0}
    assert (seen[0][:, 0] == tok.out_id).all() and ((seen[0] == tok.out_id).sum(axis=1) == 2).all()
    oracle = induction.line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, predict=induction_oracle,
                                          session=True)
    assert oracle["accuracy"] < 0.1 and oracle["predicted"]["previous_name"] > 0.7, oracle
    assert list(oracle["by_line"]) == ["1", "2", "3", "4", "5"]  # each line scored once an example
    assert np.mean(list(oracle["by_line"].values())) == pytest.approx(oracle["accuracy"])


def test_header_lines_shift_the_session_names_column(tok_and_model):
    tok, model = tok_and_model
    dots = set(data.header_names(data.copy_token_ids(tok)).tolist())

    def header_oracle(inputs_BxT, shift=True):
        """Line k of the repeat is the listing's line k + the header's lines (or, without shift, line k)."""
        predicted = induction_oracle(inputs_BxT)
        for row, tokens in enumerate(inputs_BxT):
            listing_at, repeat_at = np.flatnonzero(tokens == tok.out_id)[:2]
            header = sum(tokens[listing_at + 1 + line * 8 + 6] in dots for line in range(3))
            assert header == 1 + row % 3
            for line in range(1, 6):
                predicted[row, repeat_at + line * 2] = tokens[listing_at + 1 + (line + header * shift) * 8 + 6]
        return predicted

    shifted = induction.line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, predict=header_oracle,
                                           session=True, headers=True)
    assert shifted["accuracy"] == 1.0 and shifted["targets"] == 32 * 5
    assert shifted["by_header_lines"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert shifted["by_line"] == {str(line): 1.0 for line in range(1, 6)}
    same_line = induction.line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, session=True,
                                             headers=True, predict=lambda x: header_oracle(x, shift=False))
    assert same_line["accuracy"] < 0.1, same_line  # the line k of a session without a header is wrong here


def test_a_model_that_counts_lines_is_probed_on_real_newlines(tok_and_model):
    tok, model = tok_and_model
    newline = tok.id_of("\n")
    config = model_lib.ModelConfig.from_mapping(model.config.__dict__, line_embeddings=16, newline_id=newline)
    seen = []

    def recording_oracle(inputs_BxT):
        seen.append(inputs_BxT)
        return induction_oracle(inputs_BxT)

    lines_model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
    column = induction.line_copy_accuracy(lines_model, tok, shared_prefix=True, names_only=True,
                                          predict=recording_oracle)
    # every line of the listing and of its names column ends in the newline, which nothing else is
    # (the last one is the target of the last input position)
    assert ((seen[0] == newline).sum(axis=1) == 6 + 5).all()
    assert column["predicted"]["previous_name"] > 0.7, column  # still beyond one-token induction
    induction.line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, predict=recording_oracle)
    assert (seen[1] == newline).sum() < 32  # drawn newlines: the real one only by chance


def test_recall_probe_scores_the_jump_to_the_named_file_apart(tok_and_model):
    tok, model = tok_and_model
    make = data.RecallExample(data.copy_token_ids(tok), model.config.max_len, induction.PROBE_SEED, tok.out_id)
    examples = [make.map(i)[0] for i in range(16)]

    def knowing(inputs_BxT):  # writes each example's targets: what a model that finds the file writes
        predicted = np.zeros_like(inputs_BxT)
        for row, example in enumerate(examples):
            predicted[row, :len(example["targets"])] = example["targets"]
        return predicted

    right = induction.recall_accuracy(model, tok, n_examples=16, predict=knowing)
    assert right["accuracy"] == right["first_token"] == 1.0 and right["targets"] > 16 * 2
    # One-token induction writes what followed the latest <out>: the first file's header, never its
    # lines; once the first line is given it copies the rest.
    oracle = induction.recall_accuracy(model, tok, n_examples=16, predict=induction_oracle)
    assert oracle["first_token"] < 0.2 and oracle["accuracy"] > 0.5, oracle
    untrained = induction.recall_accuracy(model, tok, n_examples=16)
    assert untrained["accuracy"] < 0.1
