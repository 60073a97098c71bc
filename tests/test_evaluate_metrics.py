"""Each metric and each normalisation rule on hand-made cases."""
import math

import pytest

from twjax.episode import Episode, Turn
from twjax.evaluate import metrics, normalize
from twjax.evaluate.metrics import Prediction


@pytest.mark.parametrize("name, text, expected", [
    ("iso_timestamp", "created 2026-11-22T04:28:21.123Z ok", "created <TIME> ok"),
    ("iso_timestamp", "Modify: 2026-11-22 04:28:21.123456789 +0000", "Modify: <TIME>"),
    ("date_text", "Sun Nov 22 04:28:21 UTC 2026", "<TIME>"),
    ("ls_date", "-rw-r--r-- 1 root root 5 Nov 22 04:28 a.txt", "-rw-r--r-- 1 root root 5 <TIME> a.txt"),
    ("ls_date", "-rw-r--r-- 1 root root 5 Jan  3  2025 a.txt", "-rw-r--r-- 1 root root 5 <TIME> a.txt"),
    ("clock", "at 4:28:21 done", "at <TIME> done"),
    ("iso_date", "backup-2026-11-22.tar", "backup-<DATE>.tar"),
    ("epoch_seconds", "1795408101", "<EPOCH>"),
    ("duration_min_sec", "real\t0m0.003s", "real\t<DUR>"),
    ("duration", "5 passed in 0.12s", "5 passed in <DUR>"),
    ("duration", "took 15 ms", "took <DUR>"),
    ("duration", "sleeping 2 seconds", "sleeping <DUR>"),
    ("temp_name", "/tmp/tmp.AbC123xYz9", "/tmp/<TMP>"),
    ("temp_name", "/tmp/tmpa1b_c3d4/x", "/tmp/<TMP>/x"),
    ("stat_inode", "Device: 801h  Inode: 1234567  Links: 1", "Device: 801h  Inode: <INODE>  Links: 1"),
    ("job_pid", "[1] 12345", "[1] <PID>"),
    ("pid_word", "started worker pid=4242", "started worker pid=<PID>"),
    ("hex_address", "<object at 0x7f3a2b1c9d80>", "<object at <ADDR>>"),
])
def test_each_rule(name, text, expected):
    assert name in normalize.RULE_NAMES
    assert normalize.normalize_output(text) == expected


@pytest.mark.parametrize("text", [
    "3 files", "exit 0", "abc 12345 def", "version 1.2.3", "total 8", "10:30 appointment", "ran 3s",
    "2024 lines", "port 8080",
])
def test_ordinary_text_is_left_alone(text):
    assert normalize.normalize_output(text) == text


def test_ps_pid_columns_found_by_header():
    text = "  PID TTY          TIME CMD\n    1 pts/0    00:00:00 bash\n 4711 pts/0    00:00:00 ps\n"
    out = normalize.normalize_output(text)
    assert out.splitlines()[1:] == ["<PID> pts/0 <TIME> bash", "<PID> pts/0 <TIME> ps"]
    other = "  PID TTY          TIME CMD\n    7 pts/0    00:00:00 bash\n 99 pts/0    00:00:00 ps\n"
    assert normalize.normalize_output(other) == out


def test_ls_inode_only_for_ls_dash_i():
    text = "1234 a.txt\n  987 b.txt"
    assert normalize.normalize_output(text, "ls -i") == "<INODE> a.txt\n  <INODE> b.txt"
    assert normalize.normalize_output(text, "ls -lai /root") .startswith("<INODE>")
    assert normalize.normalize_output(text, "cat counts.txt") == text
    assert normalize.normalize_output(text) == text


def test_content_commands_are_not_normalised():
    log = "2024-03-10 09:00:00 start\n12:12:00 GET /\n"
    assert normalize.normalize_output(log, "cat app.log") == log
    assert normalize.normalize_output(log, "grep GET app.log") == log
    assert normalize.normalize_output(log, "LC_ALL=C sort app.log") == log
    assert normalize.normalize_output(log, "python3 show.py") == "<TIME> start\n<TIME> GET /\n"
    assert normalize.normalize_output(log) == "<TIME> start\n<TIME> GET /\n"
    # a pipeline is judged by its first command: ls output piped through grep is still ls output
    assert normalize.normalize_output("-rw-r--r-- 1 root root 5 Nov 22 04:28 a", "ls -l | grep a") == \
        "-rw-r--r-- 1 root root 5 <TIME> a"


def test_command_word():
    assert metrics.command_word("ls -la /root") == "ls"
    assert metrics.command_word("FOO=1 BAR=2 python3 x.py") == "python3"
    assert metrics.command_word("sudo apt-get install x") == "apt-get"
    assert metrics.command_word("/usr/bin/env python3 x") == "python3"
    assert metrics.command_word("./run.sh --fast") == "run.sh"
    assert metrics.command_word("cd /tmp && ls") == "cd"
    assert metrics.command_word("echo 'unterminated") == "echo"
    assert metrics.command_word("   ") == "<empty>"


def test_edit_similarity():
    assert metrics.edit_similarity("", "") == 1.0
    assert metrics.edit_similarity("abc", "abc") == 1.0
    assert metrics.edit_similarity("abcd", "abxd") == pytest.approx(0.75)
    assert metrics.edit_similarity("", "abcd") == 0.0
    assert metrics.edit_similarity("ab", "abcd") == pytest.approx(0.5)


def test_line_f1():
    assert metrics.line_f1("", "") == 1.0
    assert metrics.line_f1("a\n", "") == 0.0
    assert metrics.line_f1("a\nb\n", "a\nb") == 1.0
    # predicted {a, c}, real {a, b, d}: p = 1/2, r = 1/3, F1 = 0.4
    assert metrics.line_f1("a\nc", "a\nb\nd") == pytest.approx(0.4)
    # multisets: a duplicated line counts twice
    assert metrics.line_f1("a\na", "a") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_set_f1():
    assert metrics.set_f1(set(), set()) == 1.0
    assert metrics.set_f1({1, 2}, {2, 3}) == pytest.approx(0.5)
    assert metrics.set_f1({1}, set()) == 0.0


def test_score_turn():
    real = Turn("date; ls", "Sun Nov 22 04:28:21 UTC 2026\na.txt\n", 0, "/root")
    right_but_clock = Prediction("Mon Dec  1 10:00:00 UTC 2025\na.txt\n", 0, "/root")
    scores = metrics.score_turn(right_but_clock, real)
    assert scores["exact"] == 0.0 and scores["exact_norm"] == 1.0 and scores["correct"] == 1.0
    assert scores["edit_sim"] == 1.0 and scores["line_f1"] == 1.0
    wrong = metrics.score_turn(Prediction("b.txt\n", None, "/tmp"), real)
    assert wrong == {"exact": 0.0, "exact_norm": 0.0, "edit_sim": pytest.approx(wrong["edit_sim"]),
                     "line_f1": 0.0, "exit_acc": 0.0, "cwd_acc": 0.0, "correct": 0.0}
    assert 0 < wrong["edit_sim"] < 0.5
    exit_only_wrong = metrics.score_turn(Prediction(real.output, 1, "/root"), real)
    assert exit_only_wrong["exact"] == 1.0 and exit_only_wrong["correct"] == 0.0


def test_copyable_turns():
    def T(command, output=""):
        return Turn(command, output, 0, "/root")
    episode = Episode("e", "Fix notes.txt (it should say: alpha beta)", [
        T("cat notes.txt", "gamma\n"),                 # first look at a file: never printed before
        T("printf 'x 1\\ny 2\\n' > t.txt"),          # no output
        T("cat t.txt", "x 1\ny 2\n"),                  # both lines are in the printf command
        T("cat notes.txt", "gamma\n"),                 # printed by turn 0
        T("wc -l t.txt", "2 t.txt\n"),                 # computed: "2 t.txt" never appeared
        T("echo alpha beta", "alpha beta\n"),          # in the task text (and the command)
        T("ls -l", "-rw-r--r-- 1 root root 5 Nov 22 04:28 a.txt\n"),
        T("ls -l", "-rw-r--r-- 1 root root 5 Nov 23 11:02 a.txt\n"),  # same line once normalised
        T("cat t.txt", "\n  x 1  \n\n"),              # blank lines and surrounding spaces do not count
        T("cat b", "note\n"),                          # only inside the word "notes"
        T("ls -l a.txt", "-rw-r--r-- 1 root root  5 Nov 22 04:28 a.txt\n"),  # column padding differs
    ])
    assert metrics.copyable_turns(episode) == [False, False, True, True, False, True, False, True, True, False, True]


def _record(eid, turn, value, word="ls", nonempty=True, xent=None, copyable=False):
    m = {name: value for name in metrics.TURN_METRICS}
    if xent is not None:
        m["xent"] = xent
    return metrics.TurnRecord(eid, turn, 10 * turn, word, nonempty, m, copyable=copyable)


def test_summarize_breakdowns():
    records = [_record("a", 0, 1.0, "ls", True, copyable=True), _record("a", 1, 0.0, "cat", True),
               _record("b", 0, 1.0, "ls", False), _record("b", 1, 1.0, "cd", False),
               _record("c", 0, 0.0, "ls", True)]
    s = metrics.summarize(records, min_command_count=2)
    assert s["n"] == 5 and s["exact"] == pytest.approx(3 / 5)
    assert [(t["turn"], t["n"], t["exact"]) for t in s["by_turn"]] == [(0, 3, pytest.approx(2 / 3)), (1, 2, 0.5)]
    assert s["nonempty"]["n"] == 3 and s["nonempty"]["exact"] == pytest.approx(1 / 3)
    assert s["copyable"]["n"] == 1 and s["copyable"]["exact"] == 1.0
    assert set(s["by_command"]) == {"ls", "<other>"}
    assert s["by_command"]["ls"]["n"] == 3 and s["by_command"]["ls"]["nonempty"]["n"] == 2
    assert s["by_command"]["<other>"]["exact"] == 0.5


def test_summarize_skips_nan_values():
    records = [_record("a", 0, 1.0, xent=2.0), _record("a", 1, 1.0, xent=float("nan"))]
    s = metrics.summarize(records)
    assert s["xent"] == 2.0
    assert math.isnan(metrics.summarize([_record("a", 0, 1.0, xent=float("nan"))])["xent"])


def test_verdicts_read_the_verifier_probes_as_a_classifier():
    def probe(real_code, predicted_code, command="ls", label="verify"):
        turn = Turn(command, "", real_code, "/root", label=label)
        return metrics.make_record("e", 0, turn, metrics.Prediction("", predicted_code, "/root"))
    # 2 real passes (one predicted), 3 real failures (two predicted); a plain command is not a probe
    records = [probe(0, 0), probe(0, 1), probe(1, 1), probe(2, 1), probe(1, 0), probe(0, 1, label=None)]
    v = metrics.summarize(records)["verdicts"]
    assert v["n"] == 5 and v["real_pass_rate"] == pytest.approx(0.4) and v["predicted_pass_rate"] == pytest.approx(0.4)
    assert v["accuracy"] == pytest.approx(3 / 5)
    assert (v["pass_recall"], v["fail_recall"]) == (pytest.approx(1 / 2), pytest.approx(2 / 3))
    assert v["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert v["pass_precision"] == pytest.approx(1 / 2)  # of the two predicted passes, one is real
    # always "fail" on sessions that all fail: right every time, with no pass to recall
    only_failures = metrics.summarize([probe(1, 1), probe(3, 2)])["verdicts"]
    assert only_failures["accuracy"] == 1.0 and only_failures["pass_recall"] is None
    assert only_failures["balanced_accuracy"] is None and only_failures["pass_precision"] is None
    assert metrics.summarize([probe(0, 0, label=None)])["verdicts"] is None


def test_verdict_pass_probabilities_rank_and_threshold_the_passes():
    def probe(real_code, predicted_code, probability):
        turn = Turn("test -s out", "", real_code, "/root", label="verify")
        return metrics.make_record("e", 0, turn, metrics.Prediction("", predicted_code, "/root", probability))
    # predicted passes at 0.95 (real), 0.85 (real), 0.6 (false), 0.99 (false); failures 0.3, 0.1; one without
    records = [probe(0, 0, 0.95), probe(0, 0, 0.85), probe(1, 0, 0.6), probe(2, 0, 0.99), probe(1, 1, 0.3),
               probe(0, 1, 0.1), probe(1, 1, None)]
    v = metrics.summarize(records)["verdicts"]
    # real passes {0.95, 0.85, 0.1} over real failures {0.6, 0.99, 0.3}: 0.95 beats 2, 0.85 beats 2, 0.1 none
    assert v["pass_auc"] == pytest.approx(4 / 9)
    assert v["passes_by_probability"] == {
        "0.5": {"passes": 4, "real": 2, "precision": 0.5}, "0.8": {"passes": 3, "real": 2, "precision": 2 / 3},
        "0.9": {"passes": 2, "real": 1, "precision": 0.5}, "0.95": {"passes": 2, "real": 1, "precision": 0.5},
        "0.99": {"passes": 1, "real": 0, "precision": 0.0}}
    assert metrics.summarize([probe(0, 0, 0.9), probe(0, 1, 0.2)])["verdicts"]["pass_auc"] is None  # no failure
    tied = metrics.summarize([probe(0, 0, 0.7), probe(1, 0, 0.7)])["verdicts"]
    assert tied["pass_auc"] == 0.5 and tied["passes_by_probability"]["0.8"]["precision"] is None
