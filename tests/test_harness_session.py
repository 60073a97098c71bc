"""The real terminal, on both backends: protocol, hostile commands, limits, files, snapshots.

Every test runs real sandboxes (a docker container, a bwrap sandbox); one session per backend and
module is shared, since surviving hostile commands and staying usable is exactly what is tested."""
import hashlib
import re
import time

import pytest

from harness_fixtures import backend, module_session, require_backend, sess  # noqa: F401 (fixtures)
from twjax.episode import Episode, read_jsonl, write_jsonl
from twjax.harness import bwrap_backend
from twjax.harness.session import Limits, open_session
from twjax.harness.shell import TIMEOUT_EXIT_CODE


def test_exit_code_output_and_cwd(sess, backend):
    assert sess.backend == backend
    turn = sess.run("echo hello; echo oops >&2; false")
    assert (turn.output, turn.exit_code, turn.cwd) == ("hello\noops\n", 1, "/root")
    assert not turn.truncated and turn.duration > 0


def test_cd_and_variables_persist(sess):
    assert sess.run("mkdir -p /tmp/d && cd /tmp/d").cwd == "/tmp/d"
    assert sess.run("pwd").output == "/tmp/d\n"
    sess.run("export GREETING=hi; counter=41")
    assert sess.run("echo $GREETING $((counter + 1))").output == "hi 42\n"
    assert sess.run("cd /nonexistent").exit_code == 1
    assert sess.cwd == "/tmp/d"


def test_output_imitating_markers_does_not_end_the_turn(sess):
    fake = r"printf '\x1e\x1eTW0123456789abcdef|0|c|1|/fake\x1f0123456789abcdef\x1e'"
    turn = sess.run(f"{fake}; echo after; exit_status_probe=1; false")
    assert turn.exit_code == 1 and turn.cwd == "/root"
    assert turn.output.endswith("after\n") and "/fake" in turn.output
    # The protocol function's text holds the nonce only as printf escapes; printing it forges nothing.
    shown = sess.run("declare -f __tw_end; set; echo tail-marker")
    assert shown.exit_code == 0 and "__tw_end" in shown.output
    assert shown.output.endswith("tail-marker\n")


def test_commands_that_read_stdin_get_eof(sess):
    started = time.monotonic()
    assert sess.run("cat").output == ""
    assert sess.run('read -r line; echo "[$line] $?"').output == "[] 1\n"
    assert sess.run("python3").exit_code == 0          # an interactive program without a tty
    assert sess.run("vi").exit_code in (0, 1, 127)     # not in the image: command not found
    assert time.monotonic() - started < 8
    assert sess.run("echo still here").output == "still here\n"


def test_exit_restarts_shell_in_same_sandbox(sess):
    sess.run("cd /tmp && echo kept > /tmp/exit-file && lost=1")
    turn = sess.run("echo bye; exit 7")
    assert (turn.output, turn.exit_code, turn.extra.get("shell_restarted")) == ("bye\n", 7, True)
    after = sess.run('cat /tmp/exit-file; echo "lost=[$lost]"')
    assert after.output == "kept\nlost=[]\n" and after.cwd == "/tmp"


def test_shell_breaking_commands_recover(sess):
    assert sess.run("set -e; false").extra["shell_restarted"]
    assert sess.run("false; echo errexit is off").output == "errexit is off\n"
    for breaker in ("exec >/dev/null", "trap - EXIT; exit 5", "exec sleep 30"):
        turn = sess.run(f"cd /tmp; {breaker}", timeout=1.0)
        assert turn.exit_code == TIMEOUT_EXIT_CODE, breaker
        after = sess.run("echo fine; cd /tmp && pwd")
        assert after.output == "fine\n/tmp\n", (breaker, after.output)
    heredoc = sess.run("cat <<'END'\nliteral $HOME\nEND\necho 'unterminated")
    assert heredoc.exit_code == 2 and heredoc.output.startswith("literal $HOME\n")


def test_run_script_is_a_subshell(sess):
    turn = sess.run_script("set -e\ncd /\necho in script\nexit 3\necho unreachable")
    assert (turn.output, turn.exit_code) == ("in script\n", 3)
    assert "shell_restarted" not in turn.extra
    assert sess.run("false; echo alive").output == "alive\n"   # set -e did not leak
    assert sess.cwd == "/root"


def test_replay_runs_a_verify_turn_as_a_side_probe(sess):
    from twjax.episode import Turn
    start = sess.cwd
    probe = sess.replay(Turn("cd /tmp || exit 1\nexit 3\n", "", 0, start, label="verify"))
    assert probe.exit_code == 3 and probe.cwd == start == sess.cwd
    moved = sess.replay(Turn("cd /tmp", "", 0, "/tmp"))
    assert moved.cwd == "/tmp" == sess.cwd
    sess.run(f"cd {start}")


def test_background_job_does_not_hang_the_turn(sess):
    started = time.monotonic()
    turn = sess.run("sleep 100 & echo started")
    assert turn.exit_code == 0 and "started" in turn.output
    assert time.monotonic() - started < 3
    assert sess.run("echo next").output == "next\n"


def test_binary_output_is_lossless_through_jsonl(sess, tmp_path):
    turn = sess.run(r"printf 'ok\xff\xfe\x00\x1b[31mred\n'")
    assert turn.output.encode("utf-8", "surrogateescape") == b"ok\xff\xfe\x00\x1b[31mred\n"
    path = tmp_path / "e.jsonl"
    write_jsonl(path, [Episode(id="bin", task="", turns=[turn])])
    assert next(read_jsonl(path)).turns[0].output == turn.output


def test_flood_is_capped_and_marked_truncated(sess):
    turn = sess.run("yes | head -c 5000000; echo done >&2", timeout=30)
    assert turn.truncated and turn.exit_code == 0
    assert len(turn.output.encode("utf-8", "surrogateescape")) == sess.limits.max_output_bytes
    assert sess.run("echo after flood").output == "after flood\n"


def test_endless_flood_times_out(sess):
    turn = sess.run("yes", timeout=1.5)
    assert turn.exit_code == TIMEOUT_EXIT_CODE and turn.truncated and turn.extra["timed_out"]
    # A timeout also kills earlier background jobs; bash may report that before the next output.
    assert sess.run("echo ok").output.endswith("ok\n")


def test_timeout_kills_command_and_shell_lives_on(sess):
    sess.run("cd /tmp; marker=still")
    started = time.monotonic()
    turn = sess.run("sleep 60", timeout=1.0)
    assert turn.exit_code == TIMEOUT_EXIT_CODE and turn.extra["timed_out"]
    assert time.monotonic() - started < 5
    after = sess.run("echo $marker; pgrep -x sleep || echo no sleep left")
    assert after.output.endswith("still\nno sleep left\n") and after.cwd == "/tmp"


def test_timeout_of_a_busy_builtin_restarts_the_shell(sess):
    sess.run("cd /tmp")
    turn = sess.run("while :; do :; done", timeout=1.0)
    assert turn.exit_code == TIMEOUT_EXIT_CODE
    after = sess.run("echo ok")
    assert after.output.endswith("ok\n") and after.cwd == "/tmp"


def test_fork_bomb_is_contained(sess):
    turn = sess.run(":(){ :|:& };:; sleep 5", timeout=3.0)
    assert turn.exit_code == TIMEOUT_EXIT_CODE
    after = sess.run('echo alive; echo "processes=$(ps -e --no-headers | wc -l)"', timeout=10)
    # Messages the bomb's last forks wrote as it was killed may lead or, on a loaded host, trail
    # and interleave with the next turn's output: read the count by its name.
    counts = re.findall(r"^processes=(\d+)$", after.output, re.MULTILINE)
    assert "alive" in after.output.splitlines() and len(counts) == 1 and int(counts[0]) < 10


def test_disk_fill_hits_the_tmpfs_limit(sess):
    turn = sess.run("dd if=/dev/zero of=/tmp/fill bs=1M count=400 2>&1 | head -1; rm -f /tmp/fill",
                    timeout=30)
    assert "No space left on device" in turn.output
    assert sess.run("echo ok > /tmp/small && cat /tmp/small").output == "ok\n"


def test_root_is_read_only_and_network_is_off(sess):
    assert sess.run("touch /usr/x").exit_code != 0
    net = sess.run("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)\"")
    assert net.exit_code != 0 and ("unreachable" in net.output or "Errno" in net.output)


def test_capabilities_dropped_and_no_new_privileges(sess):
    status = dict(line.split(":\t", 1) for line in sess.run("cat /proc/self/status").output.splitlines()
                  if ":\t" in line)
    # CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID and nothing else.
    assert int(status["CapEff"], 16) == 0xFB and status["NoNewPrivs"].strip() == "1"


def test_chown_works_for_file_tasks(sess):
    turn = sess.run("touch /tmp/owned && chown 1000:1000 /tmp/owned && stat -c %u:%g /tmp/owned")
    assert turn.output == "1000:1000\n"


def test_write_files_and_snapshot(sess):
    files = {"/root/task/a.txt": "hello\n", "/root/task/sub/b.bin": b"\x00\xff\x10\x11",
             "/root/task/quote 'q'.txt": "x" * 70000}
    sess.write_files(files)
    assert sess.run("cat /root/task/a.txt").output == "hello\n"
    snap = {e["path"]: e for e in sess.snapshot(roots=("/root/task",))}
    for path, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        assert snap[path]["type"] == "file" and snap[path]["size"] == len(data)
        assert snap[path]["sha256"] == hashlib.sha256(data).hexdigest()
    assert snap["/root/task/sub"]["type"] == "dir"
    sess.run("echo changed >> /root/task/a.txt")
    again = {e["path"]: e for e in sess.snapshot(roots=("/root/task",))}
    assert again["/root/task/a.txt"]["sha256"] != snap["/root/task/a.txt"]["sha256"]


def test_memory_and_pid_limits(backend):
    limits = Limits(memory_mb=256, pids=64)
    with open_session(backend=backend, limits=limits) as small:
        hog = small.run("python3 -c \"x = b'x' * (600 << 20); print('ALLOC' + 'ATED')\"", timeout=30)
        assert hog.exit_code != 0 and "ALLOCATED" not in hog.output
        forks = small.run("python3 -c \"import os, time\nn = 0\ntry:\n while n < 200:\n"
                          "  if os.fork() == 0:\n   time.sleep(3); os._exit(0)\n  n += 1\n"
                          "except OSError:\n print('forked', n)\"", timeout=30)
        assert forks.output.startswith("forked") and int(forks.output.split()[1]) < 64
    with pytest.raises(Exception):
        small.run("true")


def test_open_with_env_files_and_workdir(backend):
    with open_session(backend=backend, workdir="/root/task", env={"TASK_NAME": "demo"},
                      files={"/root/task/in.txt": "given\n"}) as fresh:
        turn = fresh.run('cat in.txt; echo "$TASK_NAME $HOME"')
        assert (turn.output, turn.cwd) == ("given\ndemo /root\n", "/root/task")
        fresh.run("exit 1")
        assert fresh.run('echo "$TASK_NAME"').output == "demo\n"   # env survives a shell restart


def test_a_session_outlives_the_thread_that_opened_it(backend):
    """Sessions opened by a worker pool that has since shut down (grounded rollouts do this) stay
    usable: bwrap's --die-with-parent follows the spawning thread, so bwrap is spawned from one
    thread that lives as long as the process."""
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        sessions = list(pool.map(lambda _: open_session(backend=backend, workdir="/root"), range(2)))
    try:
        assert [s.run("echo alive").output for s in sessions] == ["alive\n", "alive\n"]
    finally:
        for session in sessions:
            session.close()


def test_bwrap_rlimit_fallback_without_cgroups(monkeypatch):
    require_backend("bwrap")
    monkeypatch.setattr(bwrap_backend, "_cgroups_writable", lambda: False)
    with open_session(backend="bwrap", limits=Limits(memory_mb=256)) as limited:
        assert limited.enforced_limits()["memory"] == "RLIMIT_AS"
        assert limited.run("ulimit -v").output == f"{256 << 10}\n"
        hog = limited.run("python3 -c \"x = b'x' * (600 << 20); print('ALLOC' + 'ATED')\"", timeout=30)
        assert hog.exit_code != 0 and "MemoryError" in hog.output


def test_diagnostics_read_as_in_an_interactive_terminal(sess):
    """bash's complaints about the command carry no trace of the protocol's eval; locations that a
    real terminal shows (an inner shell's line numbers) are kept."""
    missing = sess.run("cta notes.txt")
    assert missing.exit_code == 127
    assert missing.output == "bash: cta: command not found\n"
    inner = sess.run("bash -c 'cta'")
    assert inner.output == "bash: line 1: cta: command not found\n"
    syntax = sess.run("echo 'one'\nif then")
    assert "eval: line" not in syntax.output and syntax.output.startswith("one\nbash: syntax error")
