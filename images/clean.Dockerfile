# syntax=docker/dockerfile:1.7
# searchrec-clean: the clean stage on a slim CPU Python (no torch, transformers or faiss).
# Build context = the repository root:
#   docker build -f images/clean.Dockerfile -t $REGISTRY/searchrec-clean:$(git rev-parse --short HEAD) .
# (`make images` does this for all six stages; images/clean.Dockerfile.dockerignore limits the context.)
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The library with only this stage's extra, at the pinned versions; the source is bind-mounted for the
# install and not kept in a layer. Nothing is installed when a pod starts (install_kfp_package=False).
RUN --mount=type=bind,source=.,target=/src,rw \
    pip install --no-cache-dir --constraint /src/images/constraints.txt "/src[clean]" \
 && python /src/images/smoke.py clean

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin searchrec
# The commit the image was built from: every artifact's `git_commit` metadata (searchrec.runtime).
ARG GIT_COMMIT=unknown
ENV SEARCHREC_GIT_COMMIT=${GIT_COMMIT}

USER 10001:10001
WORKDIR /home/searchrec
