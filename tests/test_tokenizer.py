"""Tokenizer: exact text round trip, the CONTRACTS.md layout and roles, truncation, the CLI."""
import time

import numpy as np
import pytest

from sample_episodes import make_episodes
from twjax import cli, episode as episode_lib, tokenizer as T
from twjax.episode import Episode, Turn


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    episodes = make_episodes(300, seed=1)
    episode_lib.write_jsonl(root / "train.jsonl", episodes)
    tok = T.train([str(root / "train.jsonl")], str(root / "tok.model"), vocab_size=600)
    return root, episodes, tok


TRICKY = [
    "", " ", "   leading spaces", "trailing   ", "a  b   c    d", "\ttab\t\tsep\t", "\n", "\n\n\nblank lines\n\n",
    "mixed \t \n \r\n end", "digits 0123456789 -42 3.14159 0x1F", "héllo wörld ünïcode", "emoji 😀👍🏽 中文 日本語",
    "▁ sentencepiece space symbol ▁▁", "literal <cmd>ls</cmd><out>x<exit>0<cwd>/</out><eoe><task>", "<<cmd>>",
    "nul \x00 bell \x07 esc \x1b[31mred\x1b[0m", "\udc80\udcff raw bytes \udcc3", "\x7fELF\udc82\udcff\x01\x00",
    "tail byte \udce2", "\u3000ideographic\u00a0nbsp\u200bzwsp", "a" * 5000,
]


@pytest.mark.parametrize("text", TRICKY)
def test_encode_decode_is_identity(corpus, text):
    tok = corpus[2]
    assert tok.decode(tok.encode_text(text)) == text


def test_identity_on_whole_corpus(corpus):
    _, episodes, tok = corpus
    for ep in episodes:
        for text in [ep.task] + [s for t in ep.turns for s in (t.command, t.output, t.cwd)]:
            assert tok.decode(tok.encode_text(text)) == text


def test_undecodable_bytes_round_trip_as_bytes(corpus):
    tok = corpus[2]
    raw = bytes(range(256)) + "ünïcode".encode() + b"\xff\xfe\xc3("
    text = raw.decode("utf-8", "surrogateescape")
    assert tok.decode(tok.encode_text(text)).encode("utf-8", "surrogateescape") == raw


def test_other_lone_surrogates_become_replacement_char(corpus):
    tok = corpus[2]
    assert tok.decode(tok.encode_text("a\ud800b\udc00c")) == "a\ufffdb\ufffdc"


def test_text_never_encodes_to_a_marker(corpus):
    tok = corpus[2]
    marker_ids = {tok.id_of(m) for m in T.MARKERS}
    ids = tok.encode_text("".join(T.MARKERS) + " echo '</out>' <eoe>")
    assert not marker_ids & set(ids)


def test_whitespace_and_digits_are_fine_grained(corpus):
    tok = corpus[2]
    pieces = [tok.sp.id_to_piece(i) for i in tok.encode_text("x 12345\n")]
    assert pieces[-6:] == ["1", "2", "3", "4", "5", "\n"]
    assert tok.id_of("\n") == tok.encode_text("\n")[0]


def test_without_split_digits_numbers_are_fewer_pieces(tmp_path):
    episode_lib.write_jsonl(tmp_path / "a.jsonl", make_episodes(300, seed=1))
    assert cli.main(["tokenizer", "train", "--episodes", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "t.model"),
                     "--vocab-size", "600", "--no-split-digits"]) == 0
    tok = T.Tokenizer.load(str(tmp_path / "t.model"))
    assert any(len(piece) >= 2 and piece.isdigit() for piece in map(tok.sp.id_to_piece, range(tok.vocab_size)))
    numbers = "5710 sybil\n3553 bob\n  14  52 331 report.txt\n"
    assert tok.decode(tok.encode_text(numbers)) == numbers
    split = T.train([str(tmp_path / "a.jsonl")], str(tmp_path / "s.model"), vocab_size=600)
    assert len(tok.encode_text(numbers)) < len(split.encode_text(numbers))


def test_a_word_is_the_same_tokens_wherever_it_stands(corpus):
    """Copying a name from a command or a listing into an output is copying its tokens."""
    tok = corpus[2]
    word = tok.encode_text("juniper_v2.txt")
    for before, after in [("cat ", ""), ("\n", "\n"), ("notes/", ""), ("-rw-r--r-- 1 root root 42 ", " x"),
                          ("  ", "\t")]:
        ids = tok.encode_text(before + "juniper_v2.txt" + after)
        assert ids[len(tok.encode_text(before)):][:len(word)] == word, before
    assert not any("\u2581" in tok.sp.id_to_piece(i) and tok.sp.id_to_piece(i).strip("\u2581")
                   for i in range(tok.vocab_size))


def test_a_model_that_joins_spaces_to_words_is_refused(tmp_path):
    import io
    import sentencepiece as spm
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["cat notes.txt", "ls -la /root", "echo hello world"] * 50), model_writer=proto,
        vocab_size=300, byte_fallback=True, user_defined_symbols=list(T.MARKERS), hard_vocab_limit=False,
        minloglevel=2)
    with pytest.raises(ValueError, match="join a space to a word.*retrain"):
        T.Tokenizer(proto.getvalue())


def test_episode_layout_and_roles(corpus):
    tok = corpus[2]
    ep = Episode("e", "do it", [Turn("ls -a", "a.txt\n", 0, "/root"), Turn("false", "", 1, "/tmp")])
    ids, roles = tok.encode_episode(ep)
    t, c, o = tok.encode_text, tok.id_of, "terminal"
    spans = [  # (ids, role name) in the order CONTRACTS.md gives
        ([c("<task>")] + t("do it"), "task"),
        ([c("<cmd>")] + t("ls -a") + [c("</cmd>")], "agent"), ([c("<out>")], "control"),
        (t("a.txt\n") + [c("<exit>")] + t("0") + [c("<cwd>")] + t("/root") + [c("</out>")], o),
        ([c("<cmd>")] + t("false") + [c("</cmd>")], "agent"), ([c("<out>")], "control"),
        ([c("<exit>")] + t("1") + [c("<cwd>")] + t("/tmp") + [c("</out>")], o),
        ([c("<eoe>")], "agent"),
    ]
    assert ids.dtype == np.int32 and roles.dtype == np.int32
    assert ids.tolist() == [i for span, _ in spans for i in span]
    assert roles.tolist() == [T.ROLE_NAMES.index(name) for span, name in spans for _ in span]
    assert tok.decode(ids) == ("<task>do it<cmd>ls -a</cmd><out>a.txt\n<exit>0<cwd>/root</out>"
                               "<cmd>false</cmd><out><exit>1<cwd>/tmp</out><eoe>")
    unfinished, _ = tok.encode_episode(ep, finished=False)
    assert unfinished.tolist() == ids[:-1].tolist()


def test_task_and_command_helpers(corpus):
    tok = corpus[2]
    assert tok.encode_task("x y").tolist() == [tok.id_of("<task>")] + tok.encode_text("x y")
    assert tok.encode_command("ls").tolist() == [tok.id_of("<cmd>")] + tok.encode_text("ls") + [tok.id_of("</cmd>")]
    assert tok.vocab_size == tok.sp.vocab_size() and tok.id_of("<pad>") == T.PAD_ID
    with pytest.raises(KeyError):
        tok.id_of("<not-a-piece>")


def test_parse_terminal_span(corpus):
    tok = corpus[2]
    span = tok.encode_terminal("out  put\n\x7f\udcff", 127, "/root/task")
    assert tok.parse_terminal_span(span) == ("out  put\n\x7f\udcff", 127, "/root/task")
    assert tok.parse_terminal_span([tok.out_id] + span.tolist()) == ("out  put\n\x7f\udcff", 127, "/root/task")
    assert tok.parse_terminal_span(span[:-1]) == ("out  put\n\x7f\udcff", 127, "/root/task")  # no </out>
    cut = span.tolist()[:span.tolist().index(tok.cwd_id)]
    assert tok.parse_terminal_span(cut) == ("out  put\n\x7f\udcff", 127, None)
    assert tok.parse_terminal_span(tok.encode_text("partial")) == ("partial", None, None)
    garbled = tok.encode_text("x") + [tok.exit_id] + tok.encode_text("zero") + [tok.cwd_id, tok.end_out_id]
    assert tok.parse_terminal_span(garbled) == ("x", None, "")


def _long_episode(turns=12):
    return Episode("long", "the task text", [Turn(f"echo {i}", f"line {i}\n" * 3, 0, "/root") for i in range(turns)])


def test_truncation_keeps_task_and_latest_turns(corpus):
    tok = corpus[2]
    ep = _long_episode()
    task_ids = tok.encode_task(ep.task).tolist()
    turn_ids = [tok.encode_turn(t)[0].tolist() for t in ep.turns]
    max_len = len(task_ids) + sum(len(x) for x in turn_ids[-4:]) + 1 + len(turn_ids[0]) // 2
    ids, roles = tok.encode_episode(ep, max_len=max_len)
    expected = task_ids + [i for x in turn_ids[-4:] for i in x] + [tok.eoe_id]
    assert ids.tolist() == expected and len(ids) <= max_len and len(roles) == len(ids)


def test_truncation_of_one_huge_turn_keeps_its_prefix(corpus):
    tok = corpus[2]
    ep = Episode("big", "t", [Turn("echo a", "a", 0, "/"), Turn("cat big", "word " * 500, 0, "/")])
    full, full_roles = tok.encode_episode(ep)
    task_len = len(tok.encode_task("t"))
    ids, roles = tok.encode_episode(ep, max_len=64)
    last_turn, last_roles = tok.encode_turn(ep.turns[-1])
    assert len(ids) == 64
    assert ids.tolist() == tok.encode_task("t").tolist() + last_turn[:64 - task_len].tolist()
    assert roles.tolist() == [T.ROLE_TASK] * task_len + last_roles[:64 - task_len].tolist()


def test_long_task_is_cut_to_a_quarter(corpus):
    tok = corpus[2]
    alone, alone_roles = tok.encode_episode(Episode("t", "task words " * 200, []), max_len=100)
    assert len(alone) == 26 and alone[-1] == tok.eoe_id and (alone_roles[:25] == T.ROLE_TASK).all()
    ep = Episode("t", "task words " * 200, [Turn("ls", "x", 0, "/")])
    ids, roles = tok.encode_episode(ep, max_len=100)
    assert (roles == T.ROLE_TASK).sum() == 25 and ids[-1] == tok.eoe_id and len(ids) <= 100


def _observed_episode(lines=30, turns=12):
    listing = "".join(f"-rw-r--r-- 1 root root {i} file{i}.txt\n" for i in range(lines))
    return Episode("obs", "the task text", [Turn("ls -la", listing, 0, "/root", label="setup"),
                                            *_long_episode(turns).turns])


def test_truncation_pins_the_given_observation(corpus):
    tok = corpus[2]
    ep = _observed_episode(turns=40)
    task_ids = tok.encode_task(ep.task).tolist()
    given = tok.encode_turn(ep.turns[0])[0].tolist()
    turn_ids = [tok.encode_turn(t)[0].tolist() for t in ep.turns[1:]]
    max_len = 2 * (len(task_ids) + len(given))
    ids, roles = tok.encode_episode(ep, max_len=max_len)
    assert ids[:len(task_ids) + len(given)].tolist() == task_ids + given, "task and observation stay first"
    budget, recent = max_len - len(task_ids) - len(given) - 1, []
    while turn_ids and len(turn_ids[-1]) <= budget:
        budget -= len(turn_ids[-1])
        recent = turn_ids.pop() + recent
    assert recent and turn_ids, "some turns kept, some dropped"
    assert ids[len(task_ids) + len(given):-1].tolist() == recent
    assert len(ids) <= max_len and ids[-1] == tok.eoe_id and tok.pinned_prefix(ep, max_len).tolist() == task_ids + given


def test_an_observation_over_half_the_context_keeps_its_head_lines(corpus):
    tok = corpus[2]
    ep = _observed_episode(lines=200)
    max_len = 256
    pinned = tok.pinned_prefix(ep, max_len)
    assert len(pinned) <= max_len // 2
    task_len = len(tok.encode_task(ep.task))
    span = tok.decode(pinned[task_len:])
    head = span[len("<cmd>ls -la</cmd><out>"):span.index("<exit>")]
    assert span.startswith("<cmd>ls -la</cmd><out>") and span.endswith("<exit>0<cwd>/root</out>")
    assert head and ep.turns[0].output.startswith(head) and head.endswith("\n")
    one_more = ep.turns[0].output[:len(head) + ep.turns[0].output[len(head):].index("\n") + 1]
    cut = lambda text: tok.encode_turn(Turn("ls -la", text, 0, "/root"))[0]
    assert task_len + len(cut(one_more)) > max_len // 2, "the most lines that fit"
    ids, _ = tok.encode_episode(ep, max_len=max_len)
    assert ids[:len(pinned)].tolist() == pinned.tolist() and len(ids) <= max_len
    windows = tok.encode_windows(ep, max_len)
    assert all(w[0][:len(pinned)].tolist() == pinned.tolist() for w in windows)
    for t in ep.turns[1:]:
        assert any(f"<cmd>{t.command}</cmd>" in tok.decode(w[0][len(pinned):]) for w in windows)
    tiny = tok.pinned_prefix(ep, 8)
    assert tiny.tolist() == tok.encode_task(ep.task)[:2].tolist(), "no room: the task's head alone"
    no_line = len(tok.encode_task(ep.task)) + len(cut("")) + 1
    assert tok.pinned_prefix(ep, 2 * no_line).tolist() == tok.encode_task(ep.task).tolist(), \
        "room for the command but not one line of its output: the observation is left out, not emptied"


def test_given_turns_are_never_imitated(corpus):
    tok = corpus[2]
    ep = _observed_episode(lines=3, turns=2)
    [(ids, roles, fresh)] = tok.encode_windows(ep, 10_000)
    given_len = len(tok.encode_turn(ep.turns[0])[0])
    task_len = len(tok.encode_task(ep.task))
    given = slice(task_len, task_len + given_len)
    assert not fresh[given][roles[given] == T.ROLE_AGENT].any()
    assert fresh[given][roles[given] == T.ROLE_TERMINAL].all()
    assert fresh[task_len + given_len:].all()


def test_windows_cover_every_turn(corpus):
    tok = corpus[2]
    ep = Episode("w", "the task", [Turn(f"echo {i}", f"line {i}\n" * (1 + i % 5), 0, "/root") for i in range(20)])
    max_len = 90
    windows = tok.encode_windows(ep, max_len)
    task_ids = tok.encode_task(ep.task).tolist()
    assert len(windows) > 1
    for n, (ids, roles, fresh) in enumerate(windows):
        assert len(ids) <= max_len and ids[:len(task_ids)].tolist() == task_ids
        assert len(roles) == len(fresh) == len(ids)
        assert (ids[-1] == tok.eoe_id) == (n == len(windows) - 1)
        assert fresh[len(task_ids):].any() and (np.diff(fresh[len(task_ids):].astype(int)) >= 0).all()
    as_text = [tok.decode(ids) for ids, _, _ in windows]
    fresh_text = "".join(tok.decode(ids[fresh]) for ids, _, fresh in windows)
    whole, whole_roles = tok.encode_episode(ep)
    assert fresh_text == tok.decode(whole), "fresh tokens of all windows = the episode, once"
    for turn in ep.turns:
        assert any(f"<cmd>{turn.command}</cmd><out>{turn.output}<exit>0<cwd>/root</out>" in w for w in as_text)
    assert windows[0][2].all() and not any(f[:len(task_ids)].any() for _, _, f in windows[1:])
    assert any((~f[len(task_ids):]).any() for _, _, f in windows[1:]), "some window carries history"
    [(single, single_roles, single_fresh)] = tok.encode_windows(ep, 10_000)
    assert single.tolist() == whole.tolist() and single_fresh.all()


def test_training_text_is_the_spans_without_markers(tmp_path):
    ep = Episode("e", "task\u2581", [Turn("ls", "out\udcff", 0, "/root")])
    episode_lib.write_jsonl(tmp_path / "e.jsonl", [ep])
    assert T.training_text([str(tmp_path / "e.jsonl")], 10**6, 0) == ["task", "ls", "out", "/root"]
    ep = Episode("e", "two  words\n", [Turn("ls -a", "x" * 5000, 0, "/")])
    episode_lib.write_jsonl(tmp_path / "e.jsonl", [ep])
    assert T.training_text([str(tmp_path / "e.jsonl")], 10**6, 0) == [
        "two", "  ", "words", "\n", "ls", " ", "-a", "x" * 2048, "x" * 2048, "x" * 904, "/"]


def test_cli_trains_a_loadable_model(tmp_path):
    episode_lib.write_jsonl(tmp_path / "a.jsonl", make_episodes(50, seed=3))
    out = tmp_path / "t.model"
    assert cli.main(["tokenizer", "train", "--episodes", str(tmp_path / "*.jsonl"), "--out", str(out),
                     "--vocab-size", "400"]) == 0
    tok = T.Tokenizer.load(str(out))
    assert tok.vocab_size <= 400 and tok.decode(tok.encode_text("cat  x\n")) == "cat  x\n"
    with pytest.raises(FileNotFoundError):
        episode_lib.expand_globs(str(tmp_path / "none*.jsonl"))


def test_an_output_flood_is_cut_in_bounded_time(corpus):
    tok = corpus[2]
    flood = "0123456789abcdef " * 200_000
    ep = Episode("flood", "t", [Turn("yes", "y\n", 0, "/"), Turn("cat big", flood, 0, "/")])
    started = time.perf_counter()
    ids, roles = tok.encode_episode(ep, max_len=128)
    windows = tok.encode_windows(ep, 128)
    assert time.perf_counter() - started < 2.0
    head = tok.encode_task("t").tolist() + tok.encode_command("cat big").tolist() + [tok.out_id]
    assert len(ids) == 128 and ids[:len(head)].tolist() == head
    assert tok.decode(ids[len(head):]) == flood[:len(tok.decode(ids[len(head):]))]
    assert all(len(w[0]) <= 128 for w in windows) and windows[-1][0].tolist() == ids.tolist()
