# agent-runner: a release build in the Rust image, run from a slim Debian with what the
# worker and its default execution mode (sandbox) call at run time: git, TLS roots,
# OpenSSL for libgit2's https and lapin's amqps, bubblewrap, and tini as PID 1.
#
#   docker build -t agent-runner .                      # compiles (the published image)
#   docker build --target prebuilt -t agent-runner .    # copies target/release/agent-runner
#
# The prebuilt target takes the binary `cargo build --release --locked` already made
# (scripts/test-deploy). BASE_IMAGE and RUST_IMAGE let a machine without a registry use
# local images; a base that already holds the runtime packages skips apt entirely.
ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${BASE_IMAGE} AS runtime-base
# bubblewrap: the sandbox mode (config.kubernetes.yaml). tini: reaps the orphans a step
# leaves (setsid children) and forwards SIGTERM, which PID 1 would otherwise ignore; -s
# (subreaper) keeps it reaping when an engine init (compose `init: true`) is PID 1 instead.
ARG RUNTIME_PACKAGES="ca-certificates git libssl3 bubblewrap tini"
RUN if ! dpkg-query -W $RUNTIME_PACKAGES >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# An unprivileged user whose home is the data directory (slots, filesystem artifacts);
# uid 10001 is the one the Kubernetes securityContext runs as.
RUN groupadd --system --gid 10001 runner \
    && useradd --system --uid 10001 --gid runner --home-dir /var/lib/agent-runner \
       --create-home --shell /usr/sbin/nologin runner
COPY playbooks/ /etc/agent-runner/playbooks/
COPY config/ /etc/agent-runner/config/
# config.kubernetes.yaml is a link to the manifests' own file (kustomize loads only files
# under its root); the image carries the file itself in its place.
RUN rm /etc/agent-runner/config/config.kubernetes.yaml
COPY deploy/kubernetes/common/config.yaml /etc/agent-runner/config/config.kubernetes.yaml
ENV AGENT_RUNNER_HOME=/var/lib/agent-runner \
    RUNNER_PLAYBOOKS_DIR=/etc/agent-runner/playbooks
WORKDIR /var/lib/agent-runner
VOLUME ["/var/lib/agent-runner"]
ENTRYPOINT ["tini", "-s", "--", "agent-runner"]
CMD ["worker"]

# The binary from the build context (.dockerignore lets only this file of target/ in).
# Listed before the builder so that even the classic builder stops here.
FROM runtime-base AS prebuilt
COPY target/release/agent-runner /usr/local/bin/agent-runner
USER runner

FROM ${RUST_IMAGE} AS builder
# pkg-config and libssl-dev for libgit2's https and lapin's amqps (already in this image;
# listed so the build does not depend on that).
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# `.git` is not in the build context: pass the revision for `agent-runner --version`
# (docker build --build-arg AGENT_RUNNER_GIT_REVISION=$(git rev-parse --short=12 HEAD)).
ARG AGENT_RUNNER_GIT_REVISION=""
# Cache mounts keep the registry and target directory between builds; the binary is
# copied out because the cached target directory is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/agent-runner /usr/local/bin/agent-runner

# The default target: the image registries publish.
FROM runtime-base AS runtime
COPY --from=builder /usr/local/bin/agent-runner /usr/local/bin/agent-runner
USER runner
