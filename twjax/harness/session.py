"""A session: one sandbox (docker container or bwrap) with one persistent shell.

    with open_session(backend="auto", workdir="/root") as s:
        turn = s.run("ls -la", timeout=10.0)         # episode.Turn
        s.run_script(script, timeout=60.0)           # in a subshell of the persistent shell
        s.write_files({"/root/task/a.txt": "text"})
        s.snapshot(roots=("/root",))                 # [{path, type, size, sha256, mode}]

`run` executes in the shell itself, so `cd` and variables persist. `run_script` executes in a
subshell `( ... )` of it: the script sees the cwd and variables, but its `exit`, `set -e` or `cd`
do not leak into the session (setup and verifier scripts use it). "auto" picks docker when an
engine answers and the image exists, else bwrap. Shell policies (exit, timeout, output): shell.py.
"""
import atexit
import dataclasses
import json
import threading
import weakref

from twjax.episode import SIDE_PROBE_LABELS, Turn
from twjax.harness import bwrap_backend, docker_backend, image
from twjax.harness.shell import SandboxError, Shell

BACKENDS = ("docker", "bwrap")
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
    "LANG": "C.UTF-8", "TERM": "dumb", "PAGER": "cat", "GIT_PAGER": "cat",
}
# Runs inside the sandbox (python3 is in the base image); prints one JSON list.
SNAPSHOT_SCRIPT = r"""
import hashlib, json, os, stat, sys
out = []
def add(path):
    st = os.lstat(path)
    kind = ("dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode)
            else "symlink" if stat.S_ISLNK(st.st_mode) else "other")
    digest = None
    if kind == "file":
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
    elif kind == "symlink":
        digest = hashlib.sha256(os.fsencode(os.readlink(path))).hexdigest()
    out.append({"path": path, "type": kind, "size": st.st_size if kind != "dir" else 0,
                "sha256": digest, "mode": stat.S_IMODE(st.st_mode)})
for root in sys.argv[1:]:
    if not os.path.lexists(root):
        continue
    add(root)
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            add(os.path.join(top, name))
out.sort(key=lambda r: r["path"])
sys.stdout.write(json.dumps(out))
"""


@dataclasses.dataclass(frozen=True)
class Limits:
    memory_mb: int = 1024
    cpus: float = 1.0
    pids: int = 256
    disk_mb: int = 256            # size of each writable tmpfs directory
    max_output_bytes: int = 64 * 1024
    writable_dirs: tuple[str, ...] = ("/root", "/tmp", "/home", "/var/tmp", "/srv", "/opt", "/mnt")


# Sessions still open at interpreter exit are closed then, so an exception that skips `close`
# leaves no container behind; only a hard crash does (`twjax harness gc` removes those).
_open_sessions: "weakref.WeakSet[Session]" = weakref.WeakSet()
atexit.register(lambda: [s.close() for s in list(_open_sessions)])

_auto_lock = threading.Lock()
_auto_choice: list[str] = []


def backend_status(backend: str) -> tuple[bool, str]:
    """(available, reason if not)."""
    if backend == "docker":
        return docker_backend.available()
    if backend == "bwrap":
        return bwrap_backend.available()
    raise ValueError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")


def resolve_backend(backend: str = "auto") -> str:
    if backend != "auto":
        return backend
    with _auto_lock:
        if not _auto_choice:
            reasons = {}
            for candidate in BACKENDS:
                ok, reasons[candidate] = backend_status(candidate)
                if ok:
                    _auto_choice.append(candidate)
                    break
            else:
                raise SandboxError("no sandbox backend is available: "
                                   + "; ".join(f"{name}: {why}" for name, why in reasons.items()))
        return _auto_choice[0]


class Session:
    def __init__(self, backend: str = "auto", workdir: str = "/root", env: dict | None = None,
                 files: dict | None = None, limits: Limits | None = None, docker_client=None):
        self.closed = False
        self.backend = resolve_backend(backend)
        self.limits = limits or Limits()
        self.workdir = workdir
        full_env = dict(BASE_ENV, **(env or {}))
        if self.backend == "docker":
            self.sandbox = docker_backend.DockerSandbox(self.limits, full_env, client=docker_client)
        elif self.backend == "bwrap":
            self.sandbox = bwrap_backend.BwrapSandbox(self.limits, full_env)
        else:
            raise ValueError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
        try:
            self.shell = Shell(self.sandbox.channel, self.sandbox.root_pid, workdir,
                               self.limits.max_output_bytes)
            if files:
                self.write_files(files)
        except BaseException:
            self.sandbox.close()
            raise
        _open_sessions.add(self)

    @property
    def cwd(self) -> str:
        return self.shell.cwd

    def run(self, command: str, timeout: float = 10.0) -> Turn:
        self._check_open()
        return self.shell.run(command, timeout=timeout)

    def run_script(self, script: str, timeout: float = 60.0) -> Turn:
        self._check_open()
        return self.shell.run(script, timeout=timeout, subshell=True)

    def replay(self, turn: Turn, timeout: float = 10.0) -> Turn:
        """A recorded turn again, the way it first ran: side probes (a "verify" turn) in a subshell."""
        if turn.label in SIDE_PROBE_LABELS:
            return self.run_script(turn.command, timeout=timeout)
        return self.run(turn.command, timeout=timeout)

    def write_files(self, files: dict, timeout: float = 60.0) -> None:
        """files: {path: str | bytes} (str is written as UTF-8; relative paths are under the cwd)."""
        self._check_open()
        for path, content in files.items():
            data = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else bytes(content)
            turn = self.shell.put_file(path, data, timeout=timeout)
            if turn.exit_code != 0:
                raise SandboxError(f"writing {path} failed (exit {turn.exit_code}): {turn.output.strip()}")

    def snapshot(self, roots=("/root",), timeout: float = 60.0) -> list[dict]:
        """A digest of the file system under `roots`: one dict per entry, sorted by path."""
        self._check_open()
        quoted = " ".join("'" + r.replace("'", "'\\''") + "'" for r in roots)
        script = f"python3 -c {_single_quote(SNAPSHOT_SCRIPT)} {quoted}"
        turn = self.shell.run(script, timeout=timeout, subshell=True, max_output_bytes=256 << 20)
        if turn.exit_code != 0 or turn.truncated:
            raise SandboxError(f"snapshot failed (exit {turn.exit_code}): {turn.output[-2000:]}")
        return json.loads(turn.output)

    def reset(self, timeout: float = 30.0) -> None:
        """Returns the sandbox to the state of a fresh one, for reuse by the next item: all
        processes killed, every writable directory (the only writable places: the root is
        read-only) emptied and given back its mode and owner, /dev/shm emptied, SysV IPC removed,
        a new shell in the workdir. Raises SandboxError if that cannot be verified."""
        self._check_open()
        places = self.limits.writable_dirs + ("/dev/shm",)
        by_mode: dict[int, list[str]] = {}
        for directory in places:
            mode = 0o1777 if directory == "/dev/shm" else image.dir_mode(directory)
            by_mode.setdefault(mode, []).append(_single_quote(directory))
        quoted = " ".join(_single_quote(d) for d in places)
        lines = [f"find {quoted} -mindepth 1 -delete", f"chown 0:0 {quoted}"]
        lines += [f"chmod {mode:o} {' '.join(dirs)}" for mode, dirs in by_mode.items()]
        lines += ["ipcrm -a", f'test -z "$(find {quoted} -mindepth 1 -print -quit)"']
        self.shell.reset(self.workdir, " && ".join(lines), timeout=timeout)

    def enforced_limits(self) -> dict:
        return self.sandbox.enforced()

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxError("the session is closed")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sandbox.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _single_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def open_session(backend: str = "auto", workdir: str = "/root", env: dict | None = None,
                 files: dict | None = None, limits: Limits | None = None, docker_client=None) -> Session:
    """Opens a sandbox with a ready shell in `workdir`; use as a context manager or call close()."""
    return Session(backend=backend, workdir=workdir, env=env, files=files, limits=limits,
                   docker_client=docker_client)
