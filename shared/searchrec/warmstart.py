"""Warm task processes for local runs: each kfp.local task forked from a process that has already
imported its image's libraries, instead of a fresh interpreter importing torch, faiss and transformers
again for every task.

kfp.local's SubprocessRunner starts every task as `sh -ec <script> <component source> <args>`, and the
script runs `python3 -m kfp.dsl.executor_main`. On a tiny demo run most of a task's seconds went to
that interpreter importing the same libraries as the task before it (tests/benchmarks/results/
local_overhead.md). Here, for the length of one local run, one server process per image family
(`FAMILIES`: the CPU images' libraries, the CUDA images' libraries) imports them once, in the background
while the first tasks run, then serves each task by forking: the child takes the task's environment,
working directory, component source and arguments, runs kfp's own executor_main, and its exit code
and output (stdout and stderr, line by line) come back to kfp.local as a subprocess's would.

A task is served cold (kfp.local's own subprocess, unchanged) whenever anything differs from what a
fork can reproduce exactly: the server is not ready yet, the command is not kfp's lightweight-component
command, the environment differs from the one the server started with (libraries read some variables
at import), or `SEARCHREC_WARM_TASKS=0`. A CPU image's server never imports torch, so a CPU stage
that did would still fail as it would in its image. On the cluster nothing of this exists: every task is
its own container.

After the run, the servers are kept (`config.WARM_KEEP_S` idle seconds, `SEARCHREC_WARM_KEEP_S`; 0: they
end with their run): the next run from the same interpreter, folder, environment and installed packages
finds them by a key of those (`_kept_key`) and skips the imports altogether. A server with another key is
stopped when a run starts its own (one kept server per family); a stopped server finishes the tasks it is
running first. Each task re-imports the project's own modules from disk, so an edit to the project is
never served stale; a package installed since changes the key. `searchrec warm --stop` ends them.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from searchrec import config
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

ENV = "SEARCHREC_WARM_TASKS"  # "0": every task in a fresh interpreter, as kfp.local does by itself
KFP_RUNTIME_ENV = "_KFP_RUNTIME"  # what kfp's task script sets for executor_main

BASE = ("numpy", "pyarrow", "pyarrow.parquet", "pandas", "tqdm", "kfp.dsl.executor_main")
# What each image family's server imports before it serves; stage -> family as the images are built
# (pyproject's extras: extract/clean never pull torch, the CUDA images share the `ml` extra).
FAMILIES: dict[str, tuple[str, ...]] = {
    "cpu": BASE,
    "ml": (
        *BASE,
        "torch",
        "faiss",
        "safetensors.torch",
        "transformers",
        "transformers.models.bert.modeling_bert",  # rubert-tiny2 and the offline stand-in are BERTs
    ),
}
STAGE_FAMILY = {"extract": "cpu", "clean": "cpu", "encode": "ml", "train": "ml", "index": "ml", "infer": "ml"}

# Where an NVIDIA device is present the CUDA family runs cold: CUDA does not survive a fork once a library
# has initialised it, and some do at import (a device count, an availability check).
GPU_DEVICE_NODES = "/dev/nvidia[0-9]*"

_HEADER = struct.Struct("!I")
READY_TIMEOUT_S = 120.0  # a server not ready by then (a slow disk, a broken import): tasks run cold


def family_of(image: str) -> str | None:
    """The family of a stage image (`.../searchrec-<stage>:<tag>`), None for any other image."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    stage = name.removeprefix("searchrec-")
    return STAGE_FAMILY.get(stage) if name != stage else None


@functools.cache
def _kfp_script() -> str | None:
    """The script element of kfp's lightweight-component command (before kfp.local swaps in its python);
    built once per process by kfp's own function."""
    try:
        from kfp.dsl import component_factory

        def probe() -> None:  # pragma: no cover - never run, only its command is built
            pass

        command, _ = component_factory._get_command_and_args_for_lightweight_component(probe)
        return command[2]
    except Exception:  # another kfp: every task is served cold
        return None


def task_request(full_command: list[str], env: dict[str, str], cwd: str) -> dict | None:
    """What a warm server needs to run this kfp.local command, or None if it is not exactly kfp's
    `sh -ec <script> <source> <args...>` for a lightweight component (then it runs cold)."""
    script = _kfp_script()
    if script is None or len(full_command) < 4 or full_command[:3] != ["sh", "-ec", script]:
        return None
    return {"source": full_command[3], "args": list(full_command[4:]), "env": env, "cwd": cwd}


# --- the server ------------------------------------------------------------------------------------


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def _exit_code(error: SystemExit) -> int:
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def _run_task(request: dict) -> int:
    """In the forked child: become the task process kfp.local would have started, run executor_main."""
    import runpy
    import traceback

    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]  # `python -m` puts the working directory first
    program_dir = tempfile.mkdtemp()
    module_path = os.path.join(program_dir, "ephemeral_component.py")
    with open(module_path, "w", encoding="utf-8") as f:
        f.write(request["source"])
    sys.argv = ["executor_main", "--component_module_path", module_path, *request["args"]]
    for name in [m for m in sys.modules if m == "searchrec" or m.startswith("searchrec.")]:
        del sys.modules[name]  # the project's code as it is on disk now, not as the server found it
    _use_compiled()
    if "numpy" in sys.modules:  # a fresh interpreter seeds numpy's global generator from the OS
        sys.modules["numpy"].random.seed()
    code = 0
    try:
        runpy.run_module("kfp.dsl.executor_main", run_name="__main__", alter_sys=True)
    except SystemExit as error:
        code = _exit_code(error)
    except BaseException:  # what an uncaught exception does to an interpreter: traceback, exit 1
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        logging.shutdown()
        shutil.rmtree(program_dir, ignore_errors=True)  # kfp's `mktemp -d` copy is never removed
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    return code


# The project's own modules, compiled once by the server. A task still runs every module it imports afresh
# (a module may read the task's environment at import), but skips compiling a file whose mtime and size
# are the ones compiled, as a .pyc file would let it (none is written where PYTHONDONTWRITEBYTECODE is set).
_COMPILED: dict[str, tuple[int, int, types.CodeType]] = {}
_compiled_hits = [0]


def _compile_project(package: Path | None = None) -> None:
    from importlib.abc import InspectLoader

    for path in sorted((package or Path(__file__).parent).rglob("*.py")):
        try:
            info = path.stat()
            code = InspectLoader.source_to_code(path.read_bytes(), str(path))
        except (OSError, SyntaxError, ValueError):  # the task compiles it and meets the error itself
            continue
        _COMPILED[str(path)] = (info.st_mtime_ns, info.st_size, code)


def _use_compiled() -> None:
    """In the forked child: source files imported from now on take the server's compiled code where the
    file is unchanged since."""
    from importlib.machinery import SourceFileLoader

    compile_source = SourceFileLoader.get_code

    def get_code(self, fullname: str):
        path = self.get_filename(fullname)
        compiled = _COMPILED.get(path)
        if compiled is not None:
            try:
                info = os.stat(path)
            except OSError:
                info = None
            if info is not None and (info.st_mtime_ns, info.st_size) == compiled[:2]:
                _compiled_hits[0] += 1
                return compiled[2]
        return compile_source(self, fullname)

    SourceFileLoader.get_code = get_code


def _read_request(conn: socket.socket) -> tuple[dict, int] | None:
    """A request: its length, the task's output pipe (passed as a file descriptor), then its JSON."""
    try:
        conn.settimeout(30.0)
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 1)
        if not fds:
            return None
        header += _recv_exact(conn, _HEADER.size - len(header))
        return json.loads(_recv_exact(conn, _HEADER.unpack(header)[0])), fds[0]
    except (OSError, ValueError, ConnectionError):
        return None


def _become_task(out_fd: int, request: dict, inherited: list) -> None:
    """In the forked child: drop the server's sockets and signal set-up, write to the task's pipe, run it."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for thing in inherited:  # the listener, the selector, other tasks' connections
            thing.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C reaches the task as usual
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        sys.stdout.reconfigure(line_buffering=True)
        code = _run_task(request)
    finally:
        os._exit(code)


class _Server:
    """One process, one thread: accept requests, fork a task per request, answer each connection with
    its task's exit status when the kernel reports the child ended (SIGCHLD wakes the loop)."""

    def __init__(self, listener: socket.socket):
        import selectors

        self.listener: socket.socket | None = listener
        self.waiting: dict[int, socket.socket] = {}  # task pid -> the connection to answer
        self.last_active = time.monotonic()
        self.forked = 0
        self.wake_r, wake_w = os.pipe()
        for fd in (self.wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so the wakeup fd is written
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)

    def step(self) -> None:
        for key, _ in self.selector.select(timeout=1.0):
            if key.fileobj is self.listener:
                self._accept()
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
        self._reap()
        if self.waiting:
            self.last_active = time.monotonic()

    def close_listener(self) -> None:
        """Take no more tasks; the ones running still get their exit status."""
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(True)
        got = _read_request(conn)
        if got is None:
            conn.close()
            return
        request, out_fd = got
        self.last_active = time.monotonic()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _become_task(out_fd, request, [self.listener, self.selector, conn, *self.waiting.values()])
        os.close(out_fd)
        self.forked += 1
        with contextlib.suppress(OSError):  # the task's pid first: the client forwards Ctrl-C to it
            conn.sendall(struct.pack("!i", pid))
        self.waiting[pid] = conn

    def _reap(self) -> None:
        while self.waiting:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.waiting.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(struct.pack("!i", os.waitstatus_to_exitcode(status)))
                conn.close()


def serve(socket_path: str, family: str, keep_s: float = 0.0, parent: int | None = None) -> None:
    """The server's main loop: import the family's libraries, then fork one task per request until it is
    told to stop (SIGTERM), or the process that started it goes away (`keep_s` 0), or, kept, `keep_s`
    seconds pass without a task once that process is gone. It then takes no more tasks and ends when its
    last task has."""
    parent = parent or os.getppid()  # given: it may have gone before this line
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the tasks and the run, not the server
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stop.append(signum))  # the loop below sees it
    os.environ[KFP_RUNTIME_ENV] = "true"  # import kfp as a task process does
    started = time.perf_counter()
    for module in FAMILIES[family]:
        try:
            importlib.import_module(module)
        except ImportError as error:  # not installed here: a task that needs it fails as it would cold
            print(f"warm {family} tasks: not preloaded: {module} ({error})", flush=True)
    _compile_project()
    import gc

    gc.collect()
    gc.freeze()  # what the imports allocated stays shared with every forked task
    del os.environ[KFP_RUNTIME_ENV]
    print(
        f"warm {family} tasks: imported {len(FAMILIES[family])} modules in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = f"{socket_path}.{os.getpid()}.partial"
    listener.bind(partial)
    listener.listen(16)
    listener.setblocking(False)
    server = _Server(listener)
    os.rename(partial, socket_path)  # the socket appears only once the server can answer at once
    own_socket = os.stat(socket_path).st_ino
    if keep_s > 0:
        print(f"warm {family} tasks: pid {os.getpid()}, kept {keep_s:g} s after its last task", flush=True)
    while not stop:
        if parent is not None and os.getppid() != parent:  # the run that started it ended
            if keep_s <= 0:
                break
            parent, server.last_active = None, time.monotonic()
        if parent is None and not server.waiting and time.monotonic() - server.last_active >= keep_s:
            break
        server.step()
    print(f"warm {family} tasks: pid {os.getpid()} ended after {server.forked} tasks", flush=True)
    with contextlib.suppress(OSError):
        if os.stat(socket_path).st_ino == own_socket:  # not a newer server's socket of the same name
            os.unlink(socket_path)
    server.close_listener()
    while server.waiting:
        server.step()


# --- the client (in the local run's process) ------------------------------------------------------


@dataclass
class WarmServer:
    family: str
    socket_path: str
    env: dict[str, str]  # the environment it was started with: a task with another one runs cold
    process: subprocess.Popen | None  # None: a kept server an earlier run started
    log_path: str = ""
    log_offset: int = 0  # where this run's part of the server's log starts
    kept: bool = False  # outlives this run

    @property
    def alive(self) -> bool:
        """Started by this run: its process is running; a kept one found: its socket is there (a server
        removes it when it stops taking tasks)."""
        if self.process is None:
            return os.path.exists(self.socket_path)
        return self.process.poll() is None

    @property
    def ready(self) -> bool:
        return os.path.exists(self.socket_path) and self.alive

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        """A task that arrives while the server is still importing waits for it: started cold, it would
        import the same libraries itself, on the same cores."""
        deadline = time.monotonic() + timeout
        while not self.ready and self.alive and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.ready

    def run(self, request: dict, echo) -> int | None:
        """Run one task; its output lines go to `echo`; its exit code, or None if the server did not
        take the request (then nothing ran and the caller runs it cold)."""
        read_fd, write_fd = os.pipe()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                try:
                    conn.connect(self.socket_path)
                    body = json.dumps(request).encode()
                    socket.send_fds(conn, [_HEADER.pack(len(body))], [write_fd])
                    conn.sendall(body)
                    task_pid = struct.unpack("!i", _recv_exact(conn, 4))[0]
                except (OSError, ConnectionError):  # no fork: nothing ran
                    return None
                finally:
                    os.close(write_fd)
                echo(
                    f"searchrec: task forked from the warm {self.family} process ({ENV}=0: a fresh interpreter)\n"
                )
                with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace", closefd=True) as out:
                    read_fd = -1
                    try:
                        for line in out:
                            echo(line)
                    except KeyboardInterrupt:
                        _forward_interrupt(task_pid)
                        raise
                try:
                    return struct.unpack("!i", _recv_exact(conn, 4))[0]
                except (OSError, ConnectionError):  # the task's own end is unknown: count it as failed
                    echo(
                        f"searchrec: the warm {self.family} process ended before its task's exit status came back\n"
                    )
                    return 1
        finally:
            if read_fd >= 0:
                os.close(read_fd)


def served_families() -> list[str]:
    """The image families whose tasks are forked on this machine."""
    import glob

    gpu = bool(glob.glob(GPU_DEVICE_NODES))
    return [family for family in FAMILIES if not (gpu and family == "ml")]


def enabled() -> bool:
    """On Linux unless SEARCHREC_WARM_TASKS=0 (fork after importing these libraries is not safe on macOS)."""
    return (
        os.environ.get(ENV, "1") != "0" and sys.platform.startswith("linux") and hasattr(socket, "send_fds")
    )


def _forward_interrupt(task_pid: int) -> None:
    """Ctrl-C reaches a task forked by a kept server only this way: that server, started by an earlier
    run in its own session, is not in this terminal's process group (a task that is gets it already)."""
    with contextlib.suppress(OSError):
        if os.getpgid(task_pid) != os.getpgrp():
            os.kill(task_pid, signal.SIGINT)


def keep_seconds() -> float:
    """How long the servers stay after their run without a task: `config.WARM_KEEP_ENV`, else the default."""
    raw = os.environ.get(config.WARM_KEEP_ENV, "").strip()
    if not raw:
        return config.WARM_KEEP_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise SearchrecError(f"{config.WARM_KEEP_ENV} must be a number of seconds >= 0, got {raw!r}")
    return value


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _start(folder: str, name: str, family: str, env: dict[str, str], keep_s: float) -> WarmServer:
    socket_path = os.path.join(folder, f"{name}.sock")  # short: a socket path has ~100 characters
    log_path = os.path.join(folder, f"{name}.log")
    offset = _file_size(log_path)
    with open(log_path, "a", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "searchrec.warmstart",
                socket_path,
                family,
                repr(keep_s),
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=keep_s > 0,  # a kept server outlives this run and its terminal's signals
        )
    return WarmServer(family, socket_path, env, process, log_path, offset, kept=keep_s > 0)


def _start_all() -> dict[str, WarmServer]:
    keep_s = keep_seconds()
    kept_folder = _kept_folder() if keep_s > 0 else None
    env = dict(os.environ)
    if kept_folder is not None:
        return {family: _kept_server(kept_folder, family, env, keep_s) for family in served_families()}
    folder = tempfile.mkdtemp(prefix="searchrec-warm-")
    return {family: _start(folder, family, family, env, 0.0) for family in served_families()}


def _stop(servers: dict[str, WarmServer], log_path: Path | None = None) -> None:
    """Stop the servers of this run (a kept one stays for the next); their own lines since this run
    started are appended to `log_path`."""
    own = [s for s in servers.values() if not s.kept and s.process is not None]
    for server in own:
        server.process.terminate()
    for server in own:
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    if log_path is not None:
        for server in servers.values():
            with contextlib.suppress(OSError), open(server.log_path, "rb") as log:
                log.seek(server.log_offset)
                lines = log.read().decode("utf-8", errors="replace")
            if server.kept:
                lines += (
                    f"warm {server.family} tasks: kept for the next run (searchrec warm --stop ends it)\n"
                )
            with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as out:
                out.write(lines)
    for folder in {os.path.dirname(s.socket_path) for s in servers.values() if not s.kept}:
        shutil.rmtree(folder, ignore_errors=True)


# --- kept servers ----------------------------------------------------------------------------------


def _kept_folder() -> Path | None:
    """The per-user folder of kept servers' sockets; None where it is not safely this user's alone (then
    the servers end with their run)."""
    folder = Path(tempfile.gettempdir(), f"searchrec-warm-{os.getuid()}")
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _kept_key(family: str, env: dict[str, str]) -> str:
    """What a server's imports depend on: the interpreter, its installed packages (a pip install touches
    site-packages), the working directory (sys.path[0]), the environment bar SEARCHREC_*, this module."""
    import hashlib
    import sysconfig

    sites = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
    stamp = [
        sys.executable,
        family,
        FAMILIES[family],
        os.getcwd(),
        sorted((k, v) for k, v in env.items() if not k.startswith("SEARCHREC_")),
        [(site, _mtime(site)) for site in sites],
        _mtime(__file__),
    ]
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]


def _peer_pid(socket_path: str) -> int | None:
    """The pid of this user's server listening at `socket_path`, None if none answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2.0)
            conn.connect(socket_path)
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, _ = struct.unpack("3i", creds)
    return pid if uid == os.getuid() else None


def _stop_kept(socket_path: Path) -> int | None:
    """Ask the kept server at `socket_path` to stop (it finishes its running tasks first); its pid."""
    pid = _peer_pid(str(socket_path))
    if pid is None:
        with contextlib.suppress(OSError):
            socket_path.unlink()  # a server that was killed outright left it
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return pid


def _kept_server(folder: Path, family: str, env: dict[str, str], keep_s: float) -> WarmServer:
    """The family's kept server for this key, started now if there is none; one of another key is
    stopped (one kept server per family)."""
    name = f"{family}-{_kept_key(family, env)}"
    socket_path = folder / f"{name}.sock"
    for other in folder.glob(f"{family}-*.sock"):
        if other != socket_path:
            _stop_kept(other)
    if _peer_pid(str(socket_path)) is not None:
        log_path = str(folder / f"{name}.log")
        return WarmServer(family, str(socket_path), env, None, log_path, _file_size(log_path), kept=True)
    with contextlib.suppress(OSError):
        socket_path.unlink()
    return _start(str(folder), name, family, env, keep_s)


def stop_kept() -> list[tuple[str, int]]:
    """Stop every kept server of this user: (family, pid) of each that was running."""
    folder = _kept_folder()
    stopped = []
    for path in sorted(folder.glob("*.sock")) if folder is not None else []:
        pid = _stop_kept(path)
        if pid is not None:
            stopped.append((path.name.split("-", 1)[0], pid))
    return stopped


_PRESTARTED: dict[str, WarmServer] = {}


@contextlib.contextmanager
def prestarted() -> Iterator[None]:
    """Start the servers on entry, so that their imports overlap the run's own checks and pipeline build;
    a `warm_tasks` inside takes them over; whatever it did not take is stopped on exit."""
    if enabled() and not _PRESTARTED:
        _PRESTARTED.update(_start_all())
    try:
        yield
    finally:
        if _PRESTARTED:
            _stop(_PRESTARTED)
            _PRESTARTED.clear()


def _same_env(a: dict[str, str], b: dict[str, str]) -> bool:
    """Equal but for the project's own SEARCHREC_* variables, which no preloaded library reads."""

    def theirs(env: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if not k.startswith("SEARCHREC_")}

    return theirs(a) == theirs(b)


def _take_prestarted() -> dict[str, WarmServer]:
    servers = dict(_PRESTARTED)
    _PRESTARTED.clear()
    alive = all(s.alive for s in servers.values())
    if servers and (not alive or not all(_same_env(s.env, dict(os.environ)) for s in servers.values())):
        _stop(servers)
        return {}
    return servers


@contextlib.contextmanager
def warm_tasks(log_path: Path) -> Iterator[dict[str, WarmServer]]:
    """For the length of a local run: one server per image family (prestarted, or started now) serves
    kfp.local's tasks (`patched_subprocess_runner`). The servers' own lines go to `log_path` at the end."""
    if not enabled():
        yield {}
        return
    servers = _take_prestarted() or _start_all()
    try:
        with patched_subprocess_runner(servers):
            yield servers
    finally:
        _stop(servers, log_path)


@contextlib.contextmanager
def patched_subprocess_runner(servers: dict[str, WarmServer]) -> Iterator[None]:
    """kfp.local's SubprocessTaskHandler.run, served by a warm server where one can run the task exactly."""
    from kfp.local import status, subprocess_task_handler

    handler = subprocess_task_handler.SubprocessTaskHandler
    cold_run = handler.run

    def run(self) -> status.Status:
        code = _run_warm(servers, self.image, self.full_command, self.env_vars)
        if code is None:
            return cold_run(self)
        return status.Status.SUCCESS if code == 0 else status.Status.FAILURE

    handler.run = run
    try:
        yield
    finally:
        handler.run = cold_run


def _run_warm(servers: dict[str, WarmServer], image: str, full_command: list, env_vars: dict) -> int | None:
    server = servers.get(family_of(image) or "")
    env = {**os.environ, **(env_vars or {})}
    if server is None or not _same_env(env, server.env):
        return None
    request = task_request(full_command, {**env, KFP_RUNTIME_ENV: "true"}, os.getcwd())
    if request is None or not server.wait_ready():  # only a task the server can take waits for it
        return None
    code = server.run(request, lambda line: print(line, end=""))
    if code is not None:
        print("\n")  # as kfp.local's own subprocess runner ends a task's output
    return code


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
