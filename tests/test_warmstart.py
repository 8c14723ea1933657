"""Warm task processes (searchrec.warmstart): kfp.local tasks forked from a server that imported the
image family's libraries once, and run cold (kfp.local's own subprocess) whenever a fork could not
reproduce the task exactly. Real kfp.local runs of small components; nothing mocked."""

import builtins
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from kfp import dsl, local

from searchrec import cli, config, warmstart
from searchrec.errors import SearchrecError

pytestmark = pytest.mark.slow


@dsl.component(base_image=config.image("train"), install_kfp_package=False)
def ml_probe(marker: str) -> str:
    import json
    import os
    import sys

    import numpy

    print(f"probe says {marker}")
    return json.dumps(
        {
            "torch": "torch" in sys.modules,
            "marker": os.environ.get("WARMSTART_PROBE_MARKER", ""),
            "cwd": os.getcwd(),
            "draw": float(numpy.random.random()),
            "ppid": os.getppid(),
            "searchrec_loaded": "searchrec" in sys.modules,
        }
    )


@dsl.component(base_image=config.image("clean"), install_kfp_package=False)
def cpu_probe() -> str:
    import json
    import sys

    return json.dumps({"torch": "torch" in sys.modules, "pandas": "pandas" in sys.modules})


@dsl.component(base_image=config.image("infer"), install_kfp_package=False)
def failing_probe(reason: str) -> str:
    raise SystemExit(f"searchrec probe failed: {reason}")


@dsl.component(base_image=config.image("index"), install_kfp_package=False)
def slow_probe(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "slept"


@pytest.fixture
def kfp_local(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(builtins, "print", builtins.print)  # kfp.local indents print() and may leave it so
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    yield tmp_path


def _wait_ready(servers: dict[str, warmstart.WarmServer], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not all(s.ready for s in servers.values()):
        assert time.monotonic() < deadline, "warm servers never became ready"
        assert all(s.alive for s in servers.values()), "a warm server died"
        time.sleep(0.2)


def test_every_stage_image_has_a_family_and_cpu_images_never_load_torch() -> None:
    for stage in config.STAGES:
        family = warmstart.family_of(config.image(stage))
        assert family == ("ml" if stage in config.GPU_STAGES else "cpu"), stage
    assert warmstart.family_of("python:3.11") is None
    assert warmstart.family_of("europe-docker.pkg.dev/x/other-train:dev") is None
    assert not any(m.split(".")[0] in ("torch", "faiss", "transformers") for m in warmstart.FAMILIES["cpu"])


def test_only_kfps_exact_lightweight_command_is_taken() -> None:
    container = ml_probe.component_spec.implementation.container
    command = [*container.command, *container.args]
    request = warmstart.task_request(command, {"A": "1"}, "/somewhere")
    assert request is not None
    assert request["source"] == container.command[3] and "def ml_probe" in request["source"]
    assert request["args"] == container.args and request["cwd"] == "/somewhere"
    changed = [command[0], command[1], command[2].replace("executor_main", "executor_main -X"), *command[3:]]
    assert warmstart.task_request(changed, {}, "/") is None
    assert warmstart.task_request(["python3", "-m", "kfp.dsl.executor_main"], {}, "/") is None


def test_tasks_run_forked_from_their_familys_server(kfp_local: Path, capfd) -> None:
    with warmstart.warm_tasks(kfp_local / "warm.log") as servers:
        _wait_ready(servers)
        first = json.loads(ml_probe(marker="one").output)
        second = json.loads(ml_probe(marker="two").output)
        cpu = json.loads(cpu_probe().output)
    out = capfd.readouterr().out
    # served warm: the ml image's server had imported torch, the task did not
    assert first["torch"] and second["torch"]
    assert first["ppid"] == second["ppid"] == servers["ml"].process.pid  # forked from the ml server
    assert first["cwd"] == os.getcwd()
    assert first["draw"] != second["draw"]  # numpy's global generator reseeded per task, as in a new process
    assert cpu == {"torch": False, "pandas": True}  # the CPU image's server never imports torch
    assert "probe says one" in out and "probe says two" in out  # the task's output reaches kfp.local
    assert out.count("forked from the warm ml process") == 2 and "forked from the warm cpu process" in out
    assert all(s.process.poll() is not None for s in servers.values())  # stopped with the run
    assert not Path(next(iter(servers.values())).socket_path).parent.exists()


def test_a_failing_task_fails_with_its_own_line(kfp_local: Path, capfd) -> None:
    with warmstart.warm_tasks(kfp_local / "warm.log") as servers:
        _wait_ready(servers)
        with pytest.raises(RuntimeError, match="failing-probe"):
            failing_probe(reason="on purpose")
    out = capfd.readouterr().out
    assert "forked from the warm ml process" in out
    assert "searchrec probe failed: on purpose" in out


def test_a_changed_environment_or_the_switch_runs_cold(kfp_local: Path, monkeypatch, capfd) -> None:
    with warmstart.warm_tasks(kfp_local / "warm.log") as servers:
        _wait_ready(servers)
        monkeypatch.setenv("WARMSTART_PROBE_MARKER", "set after the servers started")
        changed = json.loads(ml_probe(marker="cold").output)
    assert changed == {**changed, "torch": False, "marker": "set after the servers started"}
    monkeypatch.setenv(warmstart.ENV, "0")
    with warmstart.warm_tasks(kfp_local / "warm.log") as servers:
        assert servers == {}
        switched = json.loads(ml_probe(marker="off").output)
    assert switched["torch"] is False
    assert "forked from the warm" not in capfd.readouterr().out


def test_prestarted_servers_are_taken_over_by_the_run_and_stopped_after(kfp_local: Path, monkeypatch) -> None:
    with warmstart.prestarted():
        prestarted = dict(warmstart._PRESTARTED)
        # the run sets the project's own variables after the servers started: no preloaded library reads them
        monkeypatch.setenv("SEARCHREC_ERRORS_FILE", str(kfp_local / "errors.txt"))
        with warmstart.warm_tasks(kfp_local / "warm.log") as servers:
            assert servers == prestarted and not warmstart._PRESTARTED
            _wait_ready(servers)
            assert json.loads(ml_probe(marker="taken over").output)["torch"]
    assert all(s.process.poll() is not None for s in prestarted.values())
    said = (kfp_local / "warm.log").read_text()
    assert "warm cpu tasks: imported" in said and "warm ml tasks: imported" in said  # both servers' lines
    with pytest.raises(KeyError), warmstart.prestarted():  # a run that fails before it starts
        left = dict(warmstart._PRESTARTED)
        raise KeyError("a check failed")
    assert left and all(s.process.poll() is not None for s in left.values()) and not warmstart._PRESTARTED


@dsl.pipeline
def parallel_probes():
    with dsl.ParallelFor(items=["a", "b", "c"], parallelism=3) as marker:
        ml_probe(marker=marker)


def test_tasks_of_a_parallel_for_are_served_at_once(kfp_local: Path, capfd) -> None:
    with warmstart.warm_tasks(kfp_local / "warm.log") as servers:
        _wait_ready(servers)
        parallel_probes()
    out = capfd.readouterr().out
    assert out.count("forked from the warm ml process") == 3
    assert all(f"probe says {m}" in out for m in "abc")


def test_on_a_machine_with_an_nvidia_device_the_cuda_family_runs_cold(kfp_local: Path, monkeypatch) -> None:
    (kfp_local / "nvidia0").write_text("")
    monkeypatch.setattr(warmstart, "GPU_DEVICE_NODES", str(kfp_local / "nvidia[0-9]*"))
    assert warmstart.served_families() == ["cpu"]
    with warmstart.warm_tasks(kfp_local / "warm.log") as servers:
        assert list(servers) == ["cpu"]
        _wait_ready(servers)
        assert json.loads(ml_probe(marker="cold on a GPU machine").output)["torch"] is False
        assert json.loads(cpu_probe().output)["pandas"] is True


# --- kept servers: the next run finds them ------------------------------------------------------------


@pytest.fixture
def keep(monkeypatch):
    """Kept servers in a folder of this test's own (a short path: a socket path has ~100 characters),
    all stopped at the end."""
    folder = tempfile.mkdtemp(prefix="sw", dir="/tmp")
    monkeypatch.setattr(tempfile, "tempdir", folder)
    monkeypatch.setenv(config.WARM_KEEP_ENV, "120")
    yield Path(folder, f"searchrec-warm-{os.getuid()}")
    for _, pid in warmstart.stop_kept():
        _wait_gone(pid)


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with __import__("contextlib").suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # a kept server this test process started: reap it
        time.sleep(0.1)
    raise AssertionError(f"process {pid} is still running")


def test_the_conftest_keeps_no_server_by_the_variable_config_names() -> None:
    assert config.WARM_KEEP_ENV == "SEARCHREC_WARM_KEEP_S" and os.environ[config.WARM_KEEP_ENV] == "0"
    assert warmstart.keep_seconds() == 0


@pytest.mark.parametrize("raw", ["soon", "-1", "nan", "inf"])
def test_a_keep_time_that_is_not_seconds_is_refused_naming_the_variable(monkeypatch, raw: str) -> None:
    monkeypatch.setenv(config.WARM_KEEP_ENV, raw)
    with pytest.raises(SearchrecError, match=f"{config.WARM_KEEP_ENV} must be a number of seconds >= 0"):
        warmstart.keep_seconds()
    monkeypatch.setenv(config.WARM_KEEP_ENV, " ")
    assert warmstart.keep_seconds() == config.WARM_KEEP_S


def test_kept_servers_serve_the_next_run_without_importing_again(kfp_local: Path, keep: Path, capsys) -> None:
    with warmstart.warm_tasks(kfp_local / "first.log") as first:
        _wait_ready(first)
        one = json.loads(ml_probe(marker="one").output)
    assert all(s.kept and s.process.poll() is None for s in first.values())  # still there after the run
    assert one["ppid"] == first["ml"].process.pid and one["searchrec_loaded"] is False
    assert sorted(p.name.split("-")[0] for p in keep.glob("*.sock")) == ["cpu", "ml"]
    assert "warm ml tasks: imported" in (kfp_local / "first.log").read_text()

    with warmstart.warm_tasks(kfp_local / "second.log") as second:
        assert all(s.process is None and s.ready for s in second.values())  # found, not started
        two = json.loads(ml_probe(marker="two").output)
    assert two["torch"] and two["ppid"] == one["ppid"]  # forked from the same server, imports not redone
    said = (kfp_local / "second.log").read_text()
    assert "imported" not in said and "warm ml tasks: kept for the next run" in said

    capsys.readouterr()
    assert cli.main(["warm", "--stop"]) == 0
    out = capsys.readouterr().out
    assert f"stopped the warm ml task process (pid {one['ppid']})" in out and "warm cpu" in out
    _wait_gone(one["ppid"])
    assert not list(keep.glob("*.sock"))  # a stopped server removes its socket
    cli.main(["warm", "--stop"])
    assert "no warm task process was running" in capsys.readouterr().out


def test_a_kept_server_of_another_environment_is_replaced(kfp_local: Path, keep: Path, monkeypatch) -> None:
    with warmstart.warm_tasks(kfp_local / "first.log") as first:
        _wait_ready(first)
    monkeypatch.setenv("WARMSTART_PROBE_MARKER", "another environment")  # libraries may read it at import
    with warmstart.warm_tasks(kfp_local / "second.log") as second:
        assert all(s.process is not None for s in second.values())  # started anew, not the first's
        _wait_ready(second)
        probe = json.loads(ml_probe(marker="new").output)
    assert probe["torch"] and probe["marker"] == "another environment"
    assert probe["ppid"] == second["ml"].process.pid != first["ml"].process.pid
    for server in first.values():  # the first environment's servers were stopped, their sockets gone
        server.process.wait(timeout=30)
        assert not Path(server.socket_path).exists()
    assert "ended after 0 tasks" in Path(first["cpu"].log_path).read_text()


def test_a_kept_server_told_to_stop_finishes_its_running_task_first(kfp_local: Path, keep: Path) -> None:
    import threading

    with warmstart.warm_tasks(kfp_local / "warm.log") as servers:
        _wait_ready(servers)
        stopper = threading.Timer(1.5, warmstart.stop_kept)  # while the task sleeps
        stopper.start()
        assert slow_probe(seconds=4.0).output == "slept"  # its exit status still came back
        stopper.join()
        servers["ml"].process.wait(timeout=30)
    said = (kfp_local / "warm.log").read_text()
    assert "warm ml tasks: pid" in said and "ended after 1 tasks" in said
    assert not list(keep.glob("*.sock"))


def test_a_kept_server_ends_once_idle_after_its_run_ended(keep: Path) -> None:
    """Idle time counts only from the end of the run that started it (here a process that exits at once)."""
    keep.mkdir(mode=0o700)
    start = "import os, sys; from searchrec import warmstart; warmstart._start(sys.argv[1], 'cpu-x', 'cpu', dict(os.environ), 1.0)"
    subprocess.run([sys.executable, "-c", start, str(keep)], check=True)
    log = keep / "cpu-x.log"
    deadline = time.monotonic() + 60
    while "ended after 0 tasks" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    said = log.read_text()
    assert "imported" in said and "kept 1 s after its last task" in said
    assert not (keep / "cpu-x.sock").exists()


def test_ctrl_c_is_forwarded_only_to_a_task_outside_the_terminals_process_group() -> None:
    sleeper = [
        sys.executable,
        "-c",
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(42))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)",
    ]
    apart = subprocess.Popen(sleeper, start_new_session=True, stdout=subprocess.PIPE)  # a kept server's task
    along = subprocess.Popen(
        sleeper, stdout=subprocess.PIPE
    )  # this run's own server's: Ctrl-C reaches it anyway
    try:
        assert apart.stdout.readline() == along.stdout.readline() == b"ready\n"  # its handler is in place
        warmstart._forward_interrupt(apart.pid)
        warmstart._forward_interrupt(along.pid)
        assert apart.wait(timeout=30) == 42
        time.sleep(0.5)
        assert along.poll() is None
    finally:
        for process in (apart, along):
            process.kill()
            process.wait()


def test_a_task_takes_the_servers_compiled_code_only_for_files_unchanged_since(tmp_path: Path) -> None:
    """The server compiles the project's files once; a forked task runs each module afresh, from that code
    where the file is as compiled, from the file where it changed since."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "same.py").write_text("import os\nVALUE = os.environ['PROBE']\n")
    (package / "edited.py").write_text("VALUE = 'as compiled'\n")
    child = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(tmp_path)!r})
from searchrec import warmstart
warmstart._compile_project(Path({str(package)!r}))
Path({str(package / "edited.py")!r}).write_text("VALUE = 'as edited since'\\n")
warmstart._use_compiled()
import os
os.environ['PROBE'] = 'read at import in the task'
import pkg.same, pkg.edited
print(pkg.same.VALUE, '|', pkg.edited.VALUE, '|', warmstart._compiled_hits[0])
"""
    out = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        env={**os.environ, "PROBE": "x"},
        check=True,
    ).stdout.strip()
    assert (
        out == "read at import in the task | as edited since | 2"
    )  # __init__ and same from the server's code
