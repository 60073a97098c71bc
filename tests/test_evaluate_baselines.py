"""The n-gram and trivial baselines on a hand-made episode set."""
from twjax.episode import Episode, Turn
from twjax.evaluate import baselines
from twjax.evaluate.metrics import Prediction


def T(command, output="", exit_code=0, cwd="/root/task"):
    return Turn(command, output, exit_code, cwd)


TRAIN = [
    Episode("t1", "task", [T("ls", "a.txt\n"), T("cat a.txt", "hello\n"), T("cd /tmp", cwd="/tmp"), T("ls", "x\n", cwd="/tmp")]),
    Episode("t2", "task", [T("ls", "a.txt\n"), T("cat a.txt", "hello\n"), T("wc -l a.txt", "1 a.txt\n")]),
    Episode("t3", "task", [T("pwd", "/root/task\n"), T("ls", "a.txt\nb.txt\n"), T("cat b.txt", "", 1)]),
]


def test_ngram_backoff_levels():
    ngram = baselines.NGramBaseline().fit(TRAIN)
    assert ngram.initial_cwd == "/root/task"
    test = Episode("e", "task", [T("ls"), T("cat a.txt"), T("cd /tmp", cwd="/tmp"), T("ls", cwd="/tmp"),
                                 T("cat nothere.txt", cwd="/tmp"), T("make")])
    predictions = [ngram.predict(test, i) for i in range(len(test.turns))]
    # (command, previous) seen: "ls" at the start -> a.txt (2 of 2 episodes starting with ls)
    assert predictions[0] == Prediction("a.txt\n", 0, "/root/task")
    assert predictions[1] == Prediction("hello\n", 0, "/root/task")
    # cd changed the cwd in training, so its absolute target is predicted
    assert predictions[2] == Prediction("", 0, "/tmp")
    # "ls" after "cd /tmp": the exact context was seen once (t1)
    assert predictions[3] == Prediction("x\n", 0, "/tmp")
    # unseen command: (first word, previous first word) = (cat, ls) was seen twice, a tie that the
    # earlier-seen value wins; the cwd stays relative ("unchanged")
    assert predictions[4] == Prediction("hello\n", 0, "/tmp")
    # nothing known about make: trivial answer, cwd unchanged
    assert predictions[5] == Prediction("", 0, "/tmp")
    assert ngram.hits == {0: 4, 2: 1, "trivial": 1}


def test_ngram_prefers_most_frequent_and_context():
    train = [Episode(f"a{i}", "", [T("pwd", "/root/task\n"), T("ls", "one\n")]) for i in range(3)]
    train += [Episode(f"b{i}", "", [T("touch two"), T("ls", "one\ntwo\n")]) for i in range(2)]
    ngram = baselines.NGramBaseline().fit(train)
    after_touch = Episode("x", "", [T("touch two"), T("ls")])
    after_echo = Episode("y", "", [T("echo hi", "hi\n"), T("ls")])
    assert ngram.predict(after_touch, 1).output == "one\ntwo\n"  # the context key wins
    assert ngram.predict(after_echo, 1).output == "one\n"        # backs off to the majority for "ls"


def test_ngram_cwd_unchanged_is_relative():
    train = [Episode("a", "", [T("cd /srv", cwd="/srv"), T("ls", "f\n", cwd="/srv")])]
    ngram = baselines.NGramBaseline().fit(train)
    elsewhere = Episode("b", "", [T("cd /opt", cwd="/opt"), T("ls", cwd="/opt")])
    assert ngram.predict(elsewhere, 1).cwd == "/opt"  # "ls stays where it is", not "/srv"


def test_trivial_and_records():
    episodes = [Episode("e", "abc", [T("ls", "a\n"), T("true"), T("cd /x", cwd="/x"), T("false", "", 1, "/x"),
                                     T("ls", "a\n")])]
    records = baselines.baseline_records(baselines.TrivialBaseline("/root/task"), episodes)
    assert [r.metrics["correct"] for r in records] == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert [r.metrics["exit_acc"] for r in records] == [1.0, 1.0, 1.0, 0.0, 1.0]
    assert [r.metrics["cwd_acc"] for r in records] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert [r.nonempty for r in records] == [True, False, False, False, True]
    assert [r.copyable for r in records] == [False, False, False, False, True]
    assert [r.context_tokens for r in records] == [3, 3 + 4, 3 + 4 + 4, 3 + 4 + 4 + 5, 3 + 4 + 4 + 5 + 5]
    assert [r.command_word for r in records] == ["ls", "true", "cd", "false", "ls"]
