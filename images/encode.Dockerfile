# syntax=docker/dockerfile:1.7
# searchrec-encode: the encode stage with the CUDA 12.8 builds of torch and faiss, on the same Python 3.11 as
# the dev venv and CI (and the CPU images). The CUDA runtime libraries come as pip packages with torch and
# faiss-gpu; the node's driver (libcuda) is mounted into the container by the NVIDIA container toolkit / GKE.
# Build context = the repository root:
#   docker build -f images/encode.Dockerfile -t $REGISTRY/searchrec-encode:$(git rev-parse --short HEAD) .
# (`make images` does this for all six stages; images/encode.Dockerfile.dockerignore limits the context.)
FROM python:3.11.7-slim-bookworm

# torch 2.13.0 built for CUDA 12.8, from the PyTorch index (PyPI's default build targets CUDA 13).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

# NVIDIA_*: what the container toolkit mounts; /usr/local/nvidia: where GKE (and Vertex AI) mount the driver.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64

RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" torch==2.13.0

# The library with only this stage's extra, at the pinned versions (torch stays the CUDA build: the
# constraint torch==2.13.0 matches 2.13.0+cu128). The extra names faiss-cpu; the GPU build of the same
# faiss version replaces it. The source is bind-mounted for the install and not kept in a layer.
# images/smoke.py fails the build unless the stage imports with a CUDA torch and the GPU faiss.
RUN --mount=type=bind,source=.,target=/src,rw \
    pip install --no-cache-dir --constraint /src/images/constraints.txt "/src[encode]" \
 && pip uninstall --yes faiss-cpu \
 && pip install --no-cache-dir --constraint /src/images/constraints.txt faiss-gpu \
 && python /src/images/smoke.py encode

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin searchrec
# The commit the image was built from: every artifact's `git_commit` metadata (searchrec.runtime).
ARG GIT_COMMIT=unknown
ENV SEARCHREC_GIT_COMMIT=${GIT_COMMIT}

USER 10001:10001
WORKDIR /home/searchrec
