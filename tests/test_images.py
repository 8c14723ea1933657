"""Stage images: lint-clean Dockerfiles, one stage extra each, pinned, non-root, CPU images without torch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from searchrec import config

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
HEAVY = ("torch", "transformers", "faiss")


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed in the dev venv (make setup)"
    return found


def _dockerfile(stage: str) -> str:
    return (IMAGES / f"{stage}.Dockerfile").read_text()


def _pip_installs(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [m.group(0) for m in re.finditer(r"pip install[^&\n]*", joined)]


def _extra_requirements(extra: str, optional: dict[str, list[str]]) -> set[str]:
    """Distribution names an extra installs, following searchrec[...] self-references."""
    names: set[str] = set()
    for req in optional[extra]:
        m = re.match(r"searchrec\[([^\]]+)\]", req)
        if m:
            for sub in m.group(1).split(","):
                names |= _extra_requirements(sub.strip(), optional)
        else:
            names.add(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower())
    return names


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> dict[str, str]:
    pins = {}
    for line in (IMAGES / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.lower()] = version
    return pins


def test_every_stage_has_a_dockerfile_and_context_filter():
    for stage in config.STAGES:
        assert (IMAGES / f"{stage}.Dockerfile").is_file(), stage
        ignore = (IMAGES / f"{stage}.Dockerfile.dockerignore").read_text().splitlines()
        assert "*" in ignore  # an allow-list: no .venv, data or local credentials in the context
        assert "!.venv" not in ignore and "!data/" not in ignore


def test_hadolint_finds_nothing():
    hadolint = _tool("hadolint")
    files = [str(IMAGES / f"{stage}.Dockerfile") for stage in config.STAGES]
    result = subprocess.run([hadolint, "--format", "json", *files], capture_output=True, text=True)
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    result = subprocess.run([_tool("hadolint"), "--format", "json", str(bad)], capture_output=True, text=True)
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3013"} <= codes and result.returncode != 0


@pytest.mark.parametrize("stage", config.STAGES)
def test_each_image_installs_only_its_stage_extra(stage):
    installs = [i for i in _pip_installs(_dockerfile(stage)) if "/src[" in i]
    assert len(installs) == 1, installs
    assert re.findall(r"/src\[([^\]]+)\]", installs[0]) == [stage]
    for install in _pip_installs(_dockerfile(stage)):
        assert "--no-cache-dir" in install, install
        if "--index-url" not in install:  # everything from PyPI at the pinned versions
            assert "--constraint /src/images/constraints.txt" in install, install
    assert "PIP_NO_CACHE_DIR=1" in _dockerfile(stage)


@pytest.mark.parametrize("stage", config.STAGES)
def test_images_are_pinned_non_root_and_hold_no_secret(stage):
    text = _dockerfile(stage)
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) == 1
    # every image, CPU and CUDA, runs the dev venv's and CI's Python minor (the CUDA runtime comes as wheels)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-bookworm)?(@sha256:[0-9a-f]{64})?", froms[0]), froms
    assert re.search(r"^ENV SEARCHREC_GIT_COMMIT=\$\{GIT_COMMIT\}$", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    for line in re.findall(r"^(?:ENV|ARG)\s+.*$", text, re.M):
        assert not re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL", line, re.I), line
    assert not re.search(r"^(COPY|ADD)\b", text, re.M), "sources are bind-mounted, nothing is copied in"


def test_cpu_images_never_install_torch_transformers_or_faiss():
    optional = PYPROJECT["project"]["optional-dependencies"]
    base = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in PYPROJECT["project"]["dependencies"]}
    for stage in config.CPU_STAGES:
        names = base | _extra_requirements(stage, optional)
        assert not {n for n in names if n.startswith(HEAVY)}, (stage, names)
        text = _dockerfile(stage)
        assert not re.search(r"torch|faiss|transformers|cuda", text.split("FROM", 1)[1], re.I), stage


def test_gpu_images_install_the_cuda_torch_and_faiss_gpu():
    for stage in config.GPU_STAGES:
        text = _dockerfile(stage)
        assert re.search(r"--index-url \"?\$\{TORCH_INDEX_URL\}\"? torch==2\.13\.0", text)
        assert re.search(r"ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu12\d", text)
        assert "pip uninstall --yes faiss-cpu" in text
        assert re.search(r"--constraint /src/images/constraints\.txt faiss-gpu \\", text)
        assert re.search(rf"python /src/images/smoke\.py {stage}$", text, re.M)  # the build's smoke check
        assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in text


def test_constraints_pin_every_stage_requirement_at_the_dev_versions():
    pins = _pins()
    optional = PYPROJECT["project"]["optional-dependencies"]
    wanted = {
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in PYPROJECT["project"]["dependencies"]
    }
    for stage in config.STAGES:
        wanted |= _extra_requirements(stage, optional)
    assert wanted <= set(pins), wanted - set(pins)
    assert pins["kfp"] == "2.17.3" and pins["torch"] == "2.13.0"
    assert pins["faiss-gpu"] == pins["faiss-cpu"]  # the GPU build of the very faiss the tests run
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # faiss-gpu: images only
        assert installed.split("+")[0] == version, f"{name}: images pin {version}, dev venv has {installed}"


def test_cpu_stage_modules_and_the_merge_load_no_torch_transformers_or_faiss():
    code = (
        "import json, sys\n"
        "import searchrec.stages.extract, searchrec.stages.clean, searchrec.stages.merge\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# --- the faiss API the stages use, in both builds, and the build's smoke check -------------------------

FAISS_GPU_NAMES = ROOT / "tests" / "data" / f"faiss-gpu-{_pins()['faiss-gpu']}.names"
# GPU-only names: the stages reach them only when faiss.get_num_gpus() > 0
GPU_ONLY = {"StandardGpuResources", "GpuParameterSpace", "index_cpu_to_gpu", "index_gpu_to_cpu"}


def _faiss_names_used() -> set[str]:
    """Every faiss.X the library and components use (read from the source)."""
    import ast

    used = set()
    for path in [*(ROOT / "shared" / "searchrec").rglob("*.py"), *(ROOT / "components").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "faiss"
            ):
                used.add(node.attr)
    return used


def _smoke_api() -> set[str]:
    sys.path.insert(0, str(IMAGES))
    try:
        import smoke
    finally:
        sys.path.remove(str(IMAGES))
    return set(smoke.FAISS_API)


def test_the_smoke_check_knows_every_faiss_name_the_stages_use():
    used = _faiss_names_used()
    assert {"IndexFlatIP", "StandardGpuResources", "write_index"} <= used  # the scan sees the stages
    assert _smoke_api() == used


def test_the_faiss_api_the_stages_use_exists_in_faiss_cpu_and_the_pinned_gpu_build():
    import faiss

    from tests.faiss_api import module_names

    pins = _pins()
    used = _faiss_names_used()
    assert faiss.__version__ == pins["faiss-cpu"]
    missing_cpu = {n for n in used if not hasattr(faiss, n)}
    assert missing_cpu == GPU_ONLY & used, missing_cpu  # only the GPU paths' names are absent on CPU
    # the GPU build cannot be installed here: its wheel's public names, read once (tests/faiss_api.py)
    header, *names = FAISS_GPU_NAMES.read_text().splitlines()
    assert f"faiss_gpu-{pins['faiss-gpu']}-" in header
    assert not used - set(names), used - set(names)
    # the same reader on the installed faiss-cpu agrees with what Python sees there
    cpu_names = module_names(Path(faiss.__file__).parent)
    assert {n for n in used if n not in GPU_ONLY} <= cpu_names


def _smoke(stage: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(IMAGES / "smoke.py"), stage],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("stage", config.CPU_STAGES)
def test_smoke_check_passes_a_cpu_image(stage):
    result = _smoke(stage)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == f"smoke check: searchrec.stages.{stage} imports, no torch, transformers or faiss"
    )


def test_smoke_check_fails_the_build_of_a_cuda_image_without_cuda_torch_or_gpu_faiss():
    import torch

    if torch.version.cuda:
        pytest.skip("this venv has a CUDA torch")
    result = _smoke("index")  # the dev venv: CPU torch and faiss-cpu, as if the CUDA builds were missing
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"smoke check: torch {torch.__version__} is a CPU build in the CUDA image of index"
    ]
    assert _smoke("nonexistent").stderr.strip() == "smoke check: unknown stage 'nonexistent'"
