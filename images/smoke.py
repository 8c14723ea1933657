"""Build-time smoke check of a stage image: the build fails (exit 1, one line) unless the image can run its
stage. Run by every Dockerfile after the install: `python /src/images/smoke.py <stage>`.

CPU images (extract, clean): the stage module imports and loads no torch, transformers or faiss.
CUDA images: the stage module imports, torch is a CUDA build, faiss is the GPU build and has every name
the stages call (FAISS_API; tests/test_images.py keeps it equal to what the code uses).
"""

from __future__ import annotations

import importlib
import sys

HEAVY = ("torch", "transformers", "faiss")
FAISS_API = (
    "GpuParameterSpace",
    "Index",
    "IndexFlatIP",
    "IndexHNSW",
    "IndexHNSWFlat",
    "IndexIVF",
    "IndexIVFFlat",
    "Kmeans",
    "METRIC_INNER_PRODUCT",
    "StandardGpuResources",
    "__version__",
    "cvar",
    "get_num_gpus",
    "index_cpu_to_gpu",
    "index_gpu_to_cpu",
    "read_index",
    "write_index",
)


def check(stage: str) -> str:
    from searchrec import config

    if stage not in config.STAGES:
        raise SystemExit(f"smoke check: unknown stage {stage!r}")
    try:
        importlib.import_module("kfp")  # the executor of every component (nothing is installed at run time)
        importlib.import_module(f"searchrec.stages.{stage}")
    except Exception as error:  # any import failure fails the build, in one line
        raise SystemExit(
            f"smoke check: searchrec.stages.{stage} does not import: {type(error).__name__}: {error}"
        ) from None
    if stage in config.CPU_STAGES:
        heavy = sorted(m for m in HEAVY if m in sys.modules)
        if heavy:
            raise SystemExit(f"smoke check: the CPU image of {stage} loads {', '.join(heavy)}")
        return f"smoke check: searchrec.stages.{stage} imports, no torch, transformers or faiss"
    import faiss
    import torch

    if not torch.version.cuda:
        raise SystemExit(
            f"smoke check: torch {torch.__version__} is a CPU build in the CUDA image of {stage}"
        )
    if not hasattr(faiss, "StandardGpuResources"):  # only the GPU build has it
        raise SystemExit(
            f"smoke check: faiss {faiss.__version__} is not the GPU build (faiss-cpu installed?)"
        )
    missing = [name for name in FAISS_API if not hasattr(faiss, name)]
    if missing:
        raise SystemExit(f"smoke check: faiss {faiss.__version__} lacks {', '.join(missing)}")
    return f"smoke check: searchrec.stages.{stage}, torch {torch.__version__} (CUDA {torch.version.cuda}), faiss {faiss.__version__} GPU build"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python images/smoke.py <stage>")
    print(check(sys.argv[1]))
