# shellcheck shell=bash disable=SC2034  # (its variables are for the scripts that source it)
# Shared by scripts/test, scripts/demo, bench/* and tests/deploy/*:
# progress lines, timed steps, skip rules and the installers of what the
# tests need. Source it; it defines functions and a few variables only.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Everything slow to make (garage, the Python tools, the base image) is
# cached here and reused by later runs on the same machine.
CACHE=${S3TD_CACHE:-/root/.cache/s3-tcpdump}
VENV=$CACHE/venv
# Tools that pin conflicting versions of the same libraries (the AWS CLI and
# checkov both pin botocore) each get a virtualenv of their own.
TOOLS_VENV=$CACHE/venv-tools
GARAGE_VERSION=2.5.0
GARAGE_BIN=${GARAGE_BIN:-$CACHE/garage/bin/garage}
T0=$SECONDS
SKIPPED=()

say() { printf '[%s +%ss] %s\n' "${0##*/}" "$((SECONDS - T0))" "$*" >&2; }
fail() { printf '[%s +%ss] FAILED: %s\n' "${0##*/}" "$((SECONDS - T0))" "$*" >&2; exit 1; }

# skip_or_fail WHAT: a missing prerequisite is a failure under CI=true and a
# loud skip elsewhere.
skip_or_fail() {
  if [[ ${CI:-} == true ]]; then
    fail "$1 (CI=true: nothing is skipped)"
  fi
  say "SKIPPED: $1"
  SKIPPED+=("$1")
}

# step NAME CMD...: run one timed step; a failure names the step.
step() {
  local name=$1 start=$SECONDS
  shift
  say "$name ..."
  "$@" || fail "$name"
  say "$name: ok ($((SECONDS - start)) s)"
}

# ensure_apt PKG...: install the Debian packages that are missing.
ensure_apt() {
  local missing=() pkg
  for pkg in "$@"; do
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == *'install ok installed' ]] || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  say "installing from Debian: ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
}

# ensure_python_tools PKG==VERSION...: those PyPI packages in the cached
# tools virtualenv ($TOOLS_VENV), installed once.
ensure_python_tools() {
  [[ -x $TOOLS_VENV/bin/python ]] || python3 -m venv "$TOOLS_VENV"
  local wanted=() pkg
  for pkg in "$@"; do
    grep -qxF "$pkg" "$TOOLS_VENV/.s3-tcpdump-installed" 2>/dev/null || wanted+=("$pkg")
  done
  ((${#wanted[@]})) || return 0
  say "installing ${wanted[*]} into $TOOLS_VENV (PyPI)"
  "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check "${wanted[@]}"
  printf '%s\n' "${wanted[@]}" >> "$TOOLS_VENV/.s3-tcpdump-installed"
}

# ensure_garage: the garage S3 server, built once from crates.io and cached.
# A local single-node store needs only the LMDB engine: no sqlite, K2V,
# metrics or telemetry, and no LTO, which roughly halves the first build.
ensure_garage() {
  if [[ -x $GARAGE_BIN && $("$GARAGE_BIN" --version 2>/dev/null) == *"$GARAGE_VERSION"* ]]; then
    return 0
  fi
  say "building garage $GARAGE_VERSION (LMDB only) from crates.io into $CACHE/garage (once; several minutes)"
  CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    cargo install garage --version "$GARAGE_VERSION" --locked --root "$CACHE/garage" \
    --no-default-features --features bundled-libs,lmdb \
    > "$CACHE/garage-build.log" 2>&1 || { tail -30 "$CACHE/garage-build.log" >&2; return 1; }
}

finish() {
  if ((${#SKIPPED[@]})); then
    say "done in $((SECONDS - T0)) s, with ${#SKIPPED[@]} part(s) SKIPPED:"
    printf '  - %s\n' "${SKIPPED[@]}" >&2
  else
    say "done in $((SECONDS - T0)) s, nothing skipped"
  fi
}
