# syntax=docker/dockerfile:1
# agent-runner: a release build in the Rust image, run from a slim Debian with only
# what the worker calls at run time (git, TLS roots, OpenSSL for native-tls).

FROM rust:1-bookworm AS builder
# pkg-config and libssl-dev for native-tls and libgit2's https (already in this image;
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

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git libssl3 \
    && rm -rf /var/lib/apt/lists/*
# An unprivileged user whose home is the data directory (slots, filesystem artifacts).
RUN groupadd --system --gid 10001 runner \
    && useradd --system --uid 10001 --gid runner --home-dir /var/lib/agent-runner \
       --create-home --shell /usr/sbin/nologin runner
COPY --from=builder /usr/local/bin/agent-runner /usr/local/bin/agent-runner
COPY playbooks/ /etc/agent-runner/playbooks/
COPY config/ /etc/agent-runner/config/
ENV AGENT_RUNNER_HOME=/var/lib/agent-runner \
    RUNNER_PLAYBOOKS_DIR=/etc/agent-runner/playbooks
USER runner
WORKDIR /var/lib/agent-runner
VOLUME ["/var/lib/agent-runner"]
ENTRYPOINT ["agent-runner"]
CMD ["worker"]
