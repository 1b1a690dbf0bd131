# The knflow image: every function and the router run from it (Knative Services made by `knflow manifests`).
#
#   docker build -t ghcr.io/acme/knflow:0.1.0 .
#   docker build --build-arg EXTRAS=s3,local-embedding -t ... .    # extras: s3 (default), local-embedding, knative
#   knflow manifests examples/hello.yaml --image ghcr.io/acme/knflow:0.1.0 -o deploy/
#
# A function's Service sets KNFLOW_FUNCTION (which function) and KNFLOW_FUNCTIONS (the module that defines
# it, as a path under /app); the router's Service runs `knflow serve router` instead. Knative sets PORT.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY knflow/ knflow/
COPY functions/ functions/
COPY broker/ broker/
COPY router/ router/
COPY knative/ knative/
# the project and every dependency as wheels, so the runtime stage installs without a compiler; s3 by
# default: on a cluster, outputs over 256 KiB go to a shared blob store (profile blob_url: s3://...)
ARG EXTRAS=s3
RUN pip wheel --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11-slim
ARG EXTRAS=s3
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8080
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "knflow${EXTRAS:+[$EXTRAS]}" \
 && useradd --uid 65532 --user-group --no-create-home --home-dir /app knflow
WORKDIR /app
# Modules that define functions, at the paths the manifests name (relative to the project root).
# Add your own function modules here.
COPY examples/ examples/
# numeric, so the kubelet can check the manifests' runAsNonRoot; the pods mount emptyDirs at /knflow/tmp
# (TMPDIR, HOME) and /knflow/blobs, as their root filesystem is read-only
USER 65532:65532
EXPOSE 8080
CMD ["knflow", "serve", "function"]
