# One image for the three containers of the s3-tcpdump pod: `launcher` (runs
# tcpdump, as uid 1000), `uploader` (ships captures to S3, as uid 1001) and
# `journal` (records which pod held each address, as uid 1002); `captures`
# serves the flight recorder's Alertmanager receiver (manifests/pin-receiver).
#
#   docker build -t s3-tcpdump .
#
# Without a registry, with the binaries built on the host
# (tests/deploy/image-and-pod does this):
#
#   cargo build --release --locked
#   buildah build --build-arg BINARIES=prebuilt \
#     --build-context host-binaries=target/release -t s3-tcpdump .

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
# The stage that provides /out/launcher, /out/uploader and /out/journal: "build" compiles
# them here, "prebuilt" copies them from the build context "host-binaries".
ARG BINARIES=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin launcher --bin uploader --bin journal --bin captures \
 && install -D -m 0755 -t /out target/release/launcher target/release/uploader target/release/journal target/release/captures

FROM scratch AS prebuilt
COPY --from=host-binaries launcher uploader journal captures /out/

FROM ${BINARIES} AS binaries

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="s3-tcpdump" \
      org.opencontainers.image.description="Continuous packet capture on Kubernetes nodes, shipped to S3 with verified checksums"

# tcpdump gets NET_RAW, and nothing else, from file capabilities, so the
# capture container runs it as a non-root user. NET_ADMIN is not needed: a
# packet socket, promiscuous mode included, needs only NET_RAW
# (launcher/tests/privileges.rs). The kernel honours file capabilities only
# without no_new_privs: the capture container must not set
# allowPrivilegeEscalation: false. libcap2-bin stays for `getcap` checks.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      tcpdump ca-certificates libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && setcap cap_net_raw+eip /usr/bin/tcpdump

# Group 2000 owns the spool; the capture writes as 1000, the journal as
# 1002, the uploader reads and deletes as 1001 (the pod sets fsGroup 2000 on
# its emptyDir).
RUN groupadd --gid 2000 s3-tcpdump \
 && useradd --uid 1000 --gid 2000 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin capture \
 && useradd --uid 1001 --gid 2000 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin uploader \
 && useradd --uid 1002 --gid 2000 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin journal \
 && install -d -m 2775 -o 1000 -g 2000 /spool

COPY --from=binaries /out/launcher /out/uploader /out/journal /out/captures /usr/local/bin/

# No setuid or setgid programs (su, passwd, mount, chage, ...): the capture
# container must allow privilege escalation for tcpdump's file capabilities,
# so any setuid-root program left here would be a way to root for whatever
# runs in it. File capabilities are not mode bits: tcpdump keeps its own.
# tests/deploy/image-and-pod checks that none is left.
RUN find / -xdev -type f -perm /6000 -exec chmod ug-s {} + \
 && test -z "$(find / -xdev -type f -perm /6000)"

ENV SPOOL_DIR=/spool
USER 1000:2000
CMD ["launcher"]
