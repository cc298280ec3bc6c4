# shellcheck shell=bash
# Podman and buildah set up for these machines, without touching /etc:
# runc (cgroups in hybrid mode, which crun refuses), the vfs storage driver,
# no default ulimits, and a storage of their own under the cache.
# Source after lib.sh.

CTR=$CACHE/containers
export CONTAINERS_CONF=$CTR/containers.conf
export CONTAINERS_STORAGE_CONF=$CTR/storage.conf
BASE_IMAGE=localhost/debian:bookworm-slim

ensure_containers() {
  ensure_apt buildah podman runc debootstrap libcap2-bin tcpdump curl
  mkdir -p "$CTR/storage"
  cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat > "$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "vfs"
graphroot = "$CTR/storage"
runroot = "/run/s3-tcpdump-containers"
CONF
}

# ensure_base_image: a Debian bookworm minbase from Debian's packages
# (debootstrap), imported as $BASE_IMAGE; the root tree is cached.
ensure_base_image() {
  if podman image exists "$BASE_IMAGE"; then
    return 0
  fi
  local tarball=$CACHE/debootstrap/bookworm-minbase.tar
  if [[ ! -s $tarball ]]; then
    local root=$CACHE/debootstrap/bookworm.tmp
    rm -rf "$root"
    mkdir -p "$root"
    say "debootstrap bookworm (minbase) into $root"
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian > "$CACHE/debootstrap/log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap/log" >&2; return 1; }
    # What debian:bookworm-slim also carries: security updates, no caches.
    cat > "$root/etc/apt/sources.list" <<LIST
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
LIST
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner --xattrs -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  podman import --change 'CMD ["/bin/bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
}
