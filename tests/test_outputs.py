"""Output roots (searchrec.outputs): run sub-folders plus LATEST.json, on a local folder, moto's S3 server
and the GCS emulator; foreign roots, the runs folder and repositories are refused and left untouched."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from searchrec import outputs, storage
from searchrec.artifacts import folder
from searchrec.errors import SearchrecError
from tests.tiny_world import run_sources

DATE = "2026-10-14"


def _complete_folder(path: Path, **files: str) -> Path:
    """A complete searchrec folder (what an infer task leaves) holding ``files``."""
    with folder.publishing(path, "recommendations") as out:
        for name, text in files.items():
            (out / name).write_text(text)
    return path


def _tree(uri: str) -> dict[str, bytes]:
    """Every file under a local folder or remote prefix, by relative path."""
    if storage.is_remote(uri):
        return {rel: storage.read_bytes(storage.join_uri(uri, rel)) for _, rel in storage._list_tree(uri)}
    root = storage.local_path(uri)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_run_writes_its_own_sub_folder_then_the_pointer(backend, tmp_path):
    root = backend("out")
    src = _complete_folder(tmp_path / "src", **{"recommendations.parquet": "rows", "stats.json": "{}"})
    name = outputs.output_name(DATE, "runs/demo-1/infer/recommendations")
    assert name.startswith(f"{DATE}-") and len(name) == len(DATE) + 9
    assert outputs.output_name(DATE, "runs/demo-1/infer/recommendations") == name  # a retry: the same name
    assert outputs.output_name(DATE, "runs/demo-2/infer/recommendations") != name

    pointer = outputs.publish(src, root, name, {"end_date": DATE, "users": 3})
    assert sorted(storage.list_dir(root)) == sorted([name, outputs.LATEST, outputs.MARKER])
    assert outputs.latest_output(root) == storage.join_uri(root, name) == pointer["uri"]
    latest = outputs.read_latest(root)
    assert latest["name"] == name and latest["end_date"] == DATE and latest["users"] == 3
    copied = _tree(storage.join_uri(root, name))
    assert copied["recommendations.parquet"] == b"rows" and folder.COMPLETE_MARKER in copied
    assert folder.IN_PROGRESS_MARKER not in copied
    assert outputs.is_root(root) and not outputs.is_root(storage.join_uri(root, name))


def test_a_foreign_root_is_refused_and_left_untouched(backend, tmp_path):
    root = backend("theirs")
    storage.write_bytes(storage.join_uri(root, "report.xlsx"), b"not ours")
    storage.write_bytes(storage.join_uri(root, "sub", "data.csv"), b"a,b")
    before = _tree(root)
    src = _complete_folder(tmp_path / "src", **{"recommendations.parquet": "rows"})
    with pytest.raises(
        SearchrecError, match=r"holds files searchrec did not write \(report\.xlsx, sub\)"
    ) as err:
        outputs.publish(src, root, outputs.output_name(DATE, "t"), {})
    assert "\n" not in str(err.value)
    assert _tree(root) == before


def test_a_foreign_sub_folder_of_an_owned_root_is_refused(backend, tmp_path):
    """A root of ours can hold a folder someone else put there under the very name a task would use."""
    root, name = backend("out"), outputs.output_name(DATE, "t")
    outputs.publish(_complete_folder(tmp_path / "a", x="1"), root, outputs.output_name(DATE, "other"), {})
    storage.write_bytes(storage.join_uri(root, name, "theirs.txt"), b"keep")
    with pytest.raises(SearchrecError, match="searchrec did not write"):
        outputs.publish(_complete_folder(tmp_path / "b", x="2"), root, name, {})
    assert _tree(storage.join_uri(root, name)) == {"theirs.txt": b"keep"}


def test_a_retried_task_clears_only_its_own_earlier_attempt(backend, tmp_path):
    root = backend("out")
    mine, other = outputs.output_name(DATE, "task-a"), outputs.output_name(DATE, "task-b")
    outputs.publish(_complete_folder(tmp_path / "b", x="other run"), root, other, {})
    # the first attempt of task-a died mid-copy: its in-progress marker and one object are there
    storage.write_bytes(storage.join_uri(root, mine, folder.IN_PROGRESS_MARKER), b"output\n")
    storage.write_bytes(storage.join_uri(root, mine, "stale.parquet"), b"half")
    outputs.publish(_complete_folder(tmp_path / "a", x="retry"), root, mine, {})
    assert set(_tree(storage.join_uri(root, mine))) == {"x", folder.COMPLETE_MARKER}
    assert _tree(storage.join_uri(root, other))["x"] == b"other run"
    outputs.publish(_complete_folder(tmp_path / "a2", y="again"), root, mine, {})  # complete: replaced too
    assert set(_tree(storage.join_uri(root, mine))) == {"y", folder.COMPLETE_MARKER}
    assert outputs.read_latest(root)["name"] == mine


def test_two_runs_publishing_at_once_both_complete_and_the_pointer_names_one(backend, tmp_path):
    root = backend("out")
    names = [outputs.output_name(DATE, f"run-{i}") for i in range(2)]
    sources = [_complete_folder(tmp_path / f"s{i}", **{"r.parquet": f"run {i}" * 1000}) for i in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        try:
            outputs.publish(sources[i], root, names[i], {"end_date": DATE})
        except BaseException as error:  # noqa: BLE001 -- collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(storage.list_dir(root)) == sorted([*names, outputs.LATEST, outputs.MARKER])  # no leftovers
    for i, name in enumerate(names):
        assert set(_tree(storage.join_uri(root, name))) == {"r.parquet", folder.COMPLETE_MARKER}
        assert _tree(storage.join_uri(root, name))["r.parquet"] == f"run {i}".encode() * 1000
    assert outputs.read_latest(root)["name"] in names
    assert outputs.latest_output(root) in [storage.join_uri(root, n) for n in names]


def test_latest_output_of_an_empty_or_half_written_root_is_one_line(backend, tmp_path):
    root = backend("out")
    with pytest.raises(SearchrecError, match="holds no LATEST.json"):
        outputs.latest_output(root)
    storage.write_bytes(storage.join_uri(root, outputs.LATEST), json.dumps({"name": "2026-10-14-x"}).encode())
    with pytest.raises(SearchrecError, match="names 2026-10-14-x, which is incomplete"):
        outputs.latest_output(root)
    storage.write_bytes(storage.join_uri(root, outputs.LATEST), b"{")
    with pytest.raises(SearchrecError, match="is not JSON"):
        outputs.latest_output(root)


def test_a_root_containing_the_runs_folder_is_refused_and_the_runs_are_untouched(tmp_path):
    runs = tmp_path / "work" / "runs"
    (runs / "demo-1" / "train").mkdir(parents=True)
    (runs / "demo-1" / "run.json").write_text("{}")
    for root in (tmp_path / "work", runs):
        with pytest.raises(SearchrecError, match=f"it contains the runs folder {runs}"):
            outputs.check_root(str(root), {str(runs): "the runs folder"})
    with pytest.raises(SearchrecError, match="holds files searchrec did not write"):
        outputs.check_root(str(runs / "demo-1"), {str(runs): "the runs folder"})
    src = _complete_folder(tmp_path / "src", x="1")
    before = _tree(str(tmp_path))
    with pytest.raises(SearchrecError, match="it contains this task's own artifact"):
        outputs.publish(src, str(tmp_path), "2026-10-14-x", {}, {str(src): "this task's own artifact"})
    assert _tree(str(tmp_path)) == before


def test_the_runs_folder_inside_a_marked_root_is_still_refused(tmp_path):
    """The marker says the root is ours, not that everything under it may be overwritten."""
    root = tmp_path / "out"
    outputs.publish(_complete_folder(tmp_path / "src", x="1"), str(root), "2026-10-14-a", {})
    (root / "runs").mkdir()
    with pytest.raises(SearchrecError, match="contains the runs folder"):
        outputs.check_root(str(root), {str(root / "runs"): "the runs folder"})


def test_a_repository_or_the_working_directory_is_refused(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "README.md").write_text("checkout")
    with pytest.raises(SearchrecError, match=f"refusing output root {repo}: it is a git repository"):
        outputs.check_root(str(repo))
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for root in (".", "..", str(tmp_path)):
        with pytest.raises(SearchrecError, match="it contains the working directory"):
            outputs.check_root(root)
    assert (repo / "README.md").read_text() == "checkout" and work.is_dir()
    # the real checkout too: it holds the working directory of this test run and .git
    with pytest.raises(SearchrecError, match="refusing output root"):
        outputs.check_root(str(Path(__file__).resolve().parents[1]))


def test_a_symlinked_root_is_followed_not_replaced(tmp_path):
    target = tmp_path / "elsewhere" / "outputs"
    target.mkdir(parents=True)
    link = tmp_path / "out"
    link.symlink_to(target, target_is_directory=True)
    outputs.publish(_complete_folder(tmp_path / "src", x="1"), str(link), "2026-10-14-a", {})
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert sorted(p.name for p in target.iterdir()) == ["2026-10-14-a", outputs.LATEST, outputs.MARKER]
    assert outputs.latest_output(str(link)) == str(link / "2026-10-14-a")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "missing")
    with pytest.raises(SearchrecError, match="is a symlink to a folder that does not exist"):
        outputs.check_root(str(dangling))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SearchrecError, match="exists and is not a folder"):
        outputs.check_root(str(tmp_path / "file"))


def test_a_remote_root_containing_the_pipeline_root_is_refused(s3_endpoint):
    import boto3

    boto3.client("s3").create_bucket(Bucket="pipelines")
    artifact = "s3://pipelines/root/run-1/infer/recommendations"
    for root in ("s3://pipelines", "s3://pipelines/root", "s3://pipelines/root/"):
        with pytest.raises(SearchrecError, match="it contains this task's own artifact"):
            outputs.check_root(root, {artifact: "this task's own artifact"})
    outputs.check_root("s3://pipelines/outputs", {artifact: "this task's own artifact"})
    with pytest.raises(SearchrecError, match="unsupported output root 'ftp://x/y'"):
        outputs.check_root("ftp://x/y")


# --- the command line refuses a bad root before anything runs --------------------------------------


def _run_args(data: Path, runs: Path, output: str) -> list[str]:
    return ["run", "--pipeline", "demo", *run_sources(data), "--runs-dir", str(runs), "--output-uri", output]


def test_run_refuses_a_parent_of_the_runs_folder_before_starting(tiny_demo, tmp_path, monkeypatch, capsys):
    from searchrec.cli import main

    work = tmp_path / "work"
    runs = work / "runs"
    (runs / "demo-1").mkdir(parents=True)
    (runs / "demo-1" / "run.json").write_text('{"state": "SUCCEEDED"}')
    monkeypatch.chdir(tmp_path)
    before = _tree(str(work))
    assert main(_run_args(tiny_demo, runs, str(work))) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"searchrec: error: refusing output root {work}: it contains the runs folder {runs}; "
        "name a folder of its own"
    ]
    assert _tree(str(work)) == before and sorted(p.name for p in runs.iterdir()) == ["demo-1"]


def test_run_refuses_the_checkout_it_runs_in(tiny_demo, tmp_path, monkeypatch, capsys):
    from searchrec.cli import main

    repo = tmp_path / "checkout"
    (repo / ".git").mkdir(parents=True)
    (repo / "README.md").write_text("x")
    monkeypatch.chdir(repo)
    assert main(_run_args(tiny_demo, tmp_path / "runs", ".")) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"searchrec: error: refusing output root {repo}: it contains")
    assert sorted(p.name for p in repo.iterdir()) == [".git", "README.md"]
    assert not (tmp_path / "runs").exists()  # nothing started


def test_removing_a_tree_never_empties_a_whole_bucket(s3_endpoint):
    import boto3

    boto3.client("s3").create_bucket(Bucket="recs")
    storage.write_bytes("s3://recs/keep.txt", b"x")
    storage.write_bytes("s3://recs/out/a/b.txt", b"y")
    storage.write_bytes("s3://recs/out/ab.txt", b"z")  # a sibling whose name starts like the prefix
    with pytest.raises(SearchrecError, match="refusing to delete everything in bucket s3://recs"):
        storage.remove_tree("s3://recs")
    assert storage.remove_tree("s3://recs/out/a") == 1
    assert storage.exists("s3://recs/out/ab.txt") and storage.exists("s3://recs/keep.txt")
