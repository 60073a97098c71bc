"""The bubblewrap sandbox: the embedded default where no Docker engine runs.

The debootstrap root (image.rootfs_dir()) is bound read-only; the writable directories are
size-limited tmpfs mounts. Namespaces: pid, ipc, net (no network: only a loopback), uts, cgroup.
No user namespace: inside a user namespace only uid 0 is mapped and `chown` fails, so the sandbox
runs as root with every capability dropped except those file tasks need, under no-new-privileges
(bwrap always sets it) and --die-with-parent.

Limits: when the cgroup v1 hierarchies are writable (they are here), each sandbox gets its own
cgroup (twjax-s<pid>-<random>) in pids (pids.max), memory (memory.limit_in_bytes) and cpu (cfs quota). Where
they are not, RLIMIT_AS bounds memory and RLIMIT_NPROC bounds processes; note RLIMIT_NPROC does not
bind root, so without cgroups there is no process limit. The disk limit is the tmpfs size.
"""
import concurrent.futures
import os
import pathlib
import select
import shutil
import subprocess
import threading
import time

from twjax.harness import image
from twjax.harness.shell import SUPERVISOR, SandboxError

CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
# Each sandbox's cgroups sit at the top of each hierarchy, named twjax-s<owner pid>-<random>: nested
# under one shared parent, all sandboxes together would get one task's CPU weight (measured here:
# fork+exec 5-10x slower while other sandboxes ran).
CGROUP_PREFIX = "twjax-"
CGROUP_CONTROLLERS = ("pids", "memory", "cpu")
KEPT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_SETUID",
             "CAP_SETGID", "CAP_KILL")


def available() -> tuple[bool, str]:
    if shutil.which("bwrap") is None:
        return False, "bwrap is not installed (apt-get install -y bubblewrap)"
    if not image.rootfs_ready():
        return False, ("the base root file system is not built yet (twjax image build --backend bwrap); "
                       f"expected {image.rootfs_dir()}")
    return True, ""


class PipeChannel:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self._out = proc.stdout.fileno()
        self._in = proc.stdin.fileno()
        os.set_blocking(self._out, False)
        os.set_blocking(self._in, False)

    def send(self, data: bytes, timeout: float) -> None:
        view, deadline = memoryview(data), time.monotonic() + timeout
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._in], [], remaining)[1]:
                raise SandboxError("the sandbox does not read its input")
            try:
                view = view[os.write(self._in, view):]
            except BrokenPipeError:
                raise SandboxError("the sandbox closed its input (it exited)") from None

    def recv(self, timeout: float) -> bytes | None:
        if not select.select([self._out], [], [], max(timeout, 0))[0]:
            return None
        try:
            return os.read(self._out, 1 << 16)
        except BlockingIOError:
            return None


def _cgroups_writable() -> bool:
    return all(os.access(CGROUP_ROOT / c, os.W_OK) for c in CGROUP_CONTROLLERS)


def _make_cgroups(name: str, limits) -> list[pathlib.Path]:
    made = []
    values = {
        "pids": {"pids.max": str(limits.pids)},
        "memory": {"memory.limit_in_bytes": str(limits.memory_mb << 20)},
        "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": str(int(limits.cpus * 100000))},
    }
    for controller in CGROUP_CONTROLLERS:
        path = CGROUP_ROOT / controller / name
        path.mkdir(parents=True, exist_ok=True)
        for key, value in values[controller].items():
            (path / key).write_text(value)
        made.append(path)
    return made


def remove_cgroup(path: pathlib.Path, wait_s: float = 2.0) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def leftover_cgroups() -> list[pathlib.Path]:
    return [p for c in CGROUP_CONTROLLERS for p in (CGROUP_ROOT / c).glob(CGROUP_PREFIX + "s*") if p.is_dir()]

_spawner_lock = threading.Lock()
_spawner: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    """Popen from one thread that lives as long as the process. --die-with-parent is
    PR_SET_PDEATHSIG, which fires when the *thread* that started bwrap exits, not the process: a
    sandbox opened in a worker thread that then ended (a ThreadPoolExecutor shut down after the
    sessions were opened) was killed with it, and every later command failed."""
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner[0] != os.getpid():  # a forked child has no such thread
            _spawner = (os.getpid(), concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="twjax-bwrap"))
        executor = _spawner[1]
    return executor.submit(subprocess.Popen, argv, **kwargs).result()


class BwrapSandbox:
    backend = "bwrap"

    def __init__(self, limits, env: dict[str, str]):
        ok, reason = available()
        if not ok:
            raise SandboxError(reason)
        root = image.rootfs_dir()
        self.name = f"{CGROUP_PREFIX}s{os.getpid()}-{os.urandom(4).hex()}"
        self.cgroups = _make_cgroups(self.name, limits) if _cgroups_writable() else []
        argv = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session",
                "--ro-bind", str(root), "/", "--dev", "/dev", "--proc", "/proc",
                "--hostname", "twjax", "--cap-drop", "ALL"]
        for cap in KEPT_CAPS:
            argv += ["--cap-add", cap]
        # bwrap's /dev is an unbounded tmpfs; its shm gets the same size limit as the others.
        argv += ["--perms", "1777", "--size", str(limits.disk_mb << 20), "--tmpfs", "/dev/shm"]
        for directory in limits.writable_dirs:
            argv += ["--perms", f"{image.dir_mode(directory):04o}", "--size", str(limits.disk_mb << 20),
                     "--tmpfs", directory]
        argv += ["--chdir", "/", "bash", "--noprofile", "--norc", "-c", SUPERVISOR]
        # A host-side sh (our fixed text, never a task command) joins the cgroups and sets rlimits,
        # then becomes bwrap; preexec_fn would not be safe with the pool's threads.
        joins = "".join(f'echo $$ > {p}/cgroup.procs || exit 97; ' for p in self.cgroups)
        rlimits = "" if self.cgroups else f"ulimit -v {limits.memory_mb << 10}; ulimit -u {limits.pids}; "
        wrapper = ["sh", "-c", joins + rlimits + 'exec "$@"', "twjax-bwrap"] + argv
        self.proc = spawn(wrapper, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=env, close_fds=True)
        self.channel = PipeChannel(self.proc)

    def root_pid(self) -> int:
        return self.proc.pid

    def enforced(self) -> dict:
        if self.cgroups:
            return {"pids": "cgroup", "memory": "cgroup", "cpu": "cgroup", "disk": "tmpfs size",
                    "network": "none"}
        return {"pids": "RLIMIT_NPROC (not binding for root)", "memory": "RLIMIT_AS", "cpu": "none",
                "disk": "tmpfs size", "network": "none"}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        for path in self.cgroups:
            for pid in cgroup_pids(path):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            remove_cgroup(path)


def cgroup_pids(path: pathlib.Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []
