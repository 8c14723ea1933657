# syntax=docker/dockerfile:1.7
# searchrec-train: the train stage on CUDA 12.8 with the CUDA build of torch and faiss on the GPU.
# Build context = the repository root:
#   docker build -f images/train.Dockerfile -t $REGISTRY/searchrec-train:$(git rev-parse --short HEAD) .
# (`make images` does this for all six stages; images/train.Dockerfile.dockerignore limits the context.)
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# torch 2.13.0 built for CUDA 12.8, from the PyTorch index (PyPI's default build targets CUDA 13).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Ubuntu's Python in a venv (PEP 668). The base image tag fixes the release; apt package versions are
# left to it (Ubuntu's archive drops superseded versions, so exact pins would break rebuilds).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" torch==2.13.0

# The library with only this stage's extra, at the pinned versions (torch stays the CUDA build: the
# constraint torch==2.13.0 matches 2.13.0+cu128). The extra names faiss-cpu; the GPU build replaces it.
# The source is bind-mounted for the install and not kept in a layer.
RUN --mount=type=bind,source=.,target=/src,rw \
    pip install --no-cache-dir --constraint /src/images/constraints.txt "/src[train]" \
 && pip uninstall --yes faiss-cpu \
 && pip install --no-cache-dir --constraint /src/images/constraints.txt faiss-gpu-cu12 \
 && python -c "import kfp, torch, searchrec.stages.train; assert torch.version.cuda, 'CPU torch in a CUDA image'"

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin searchrec
# The commit the image was built from: every artifact's `git_commit` metadata (searchrec.runtime).
ARG GIT_COMMIT=unknown
ENV SEARCHREC_GIT_COMMIT=${GIT_COMMIT}

USER 10001:10001
WORKDIR /home/searchrec
