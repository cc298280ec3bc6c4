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
# The flow index's DuckDB test (uploader/tests/flow_index_duckdb.rs) uses it
# from $TOOLS_VENV.
DUCKDB_VERSION=2.0.0
GARAGE_BIN=${GARAGE_BIN:-$CACHE/garage/bin/garage}
CARGO_DENY_VERSION=0.20.2
CARGO_DENY=$CACHE/cargo-deny/bin/cargo-deny
# The offline copy of the RustSec advisory database (its crates/ folder and
# support.toml, as in rustsec/advisory-db), beside the clone.
ADVISORY_DB=${ADVISORY_DB:-$ROOT/../shared/advisory-db}
# A copy kept in the cache, for a clone made where ../shared is not beside it
# (it is refreshed whenever the snapshot is found beside the clone).
ADVISORY_DB_CACHED=$CACHE/advisory-db
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
# metrics or telemetry; libsodium and zstd come from Debian instead of being
# compiled (system-libs); no LTO and light optimisation. Measured on 2
# cores: 4 min 33 s, against 11 min 36 s with the bundled C libraries.
ensure_garage() {
  if [[ -x $GARAGE_BIN && $("$GARAGE_BIN" --version 2>/dev/null) == *"$GARAGE_VERSION"* ]]; then
    return 0
  fi
  ensure_apt libsodium-dev libzstd-dev pkg-config
  say "building garage $GARAGE_VERSION (LMDB only) from crates.io into $CACHE/garage (once; about 5 minutes on 2 cores)"
  mkdir -p "$CACHE"
  CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    cargo install garage --version "$GARAGE_VERSION" --locked --root "$CACHE/garage" \
    --no-default-features --features system-libs,lmdb \
    > "$CACHE/garage-build.log" 2>&1 || { tail -30 "$CACHE/garage-build.log" >&2; return 1; }
}

# ensure_cargo_deny: cargo-deny, built once from crates.io and cached.
ensure_cargo_deny() {
  if [[ -x $CARGO_DENY ]] && "$CARGO_DENY" deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
    return 0
  fi
  say "building cargo-deny $CARGO_DENY_VERSION from crates.io into $CACHE/cargo-deny (once; a few minutes)"
  mkdir -p "$CACHE"
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --root "$CACHE/cargo-deny" \
    > "$CACHE/cargo-deny-build.log" 2>&1 || { tail -30 "$CACHE/cargo-deny-build.log" >&2; return 1; }
}

# advisory_db_date DB: when the snapshot was taken (its git commit, else the
# date SNAPSHOT.md names), and the newest advisory in it.
advisory_db_date() {
  local db=$1 taken newest
  if [[ -e $db/.git ]]; then
    taken=$(git -C "$db" log -1 --format=%cs 2>/dev/null)
  else
    taken=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$db/SNAPSHOT.md" 2>/dev/null | head -1)
  fi
  newest=$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$db/crates" | grep -oE '[0-9-]{10}' | sort | tail -1)
  printf 'snapshot of %s, newest advisory %s' "${taken:-unknown date}" "${newest:-none}"
}

# check_exception_dates: every advisory exception in deny.toml names a date
# to look at it again, and that date has not passed.
check_exception_dates() {
  local line id date today bad=0
  today=$(date -u +%F)
  while IFS= read -r line; do
    id=$(grep -oE '"[A-Z]+-[0-9A-Za-z-]+"' <<< "$line" | head -1)
    date=$(grep -oiE 'look again by [0-9]{4}-[0-9]{2}-[0-9]{2}' <<< "$line" | grep -oE '[0-9-]{10}$')
    if [[ -z $date ]]; then
      say "deny.toml: exception $id has no \"look again by YYYY-MM-DD\" in its reason"
      bad=1
    elif [[ $date < $today ]]; then
      say "deny.toml: exception $id was to be looked at again by $date: check whether it still does not apply, then move the date or remove the entry"
      bad=1
    fi
  done < <(grep -E '^[[:space:]]*\{ *id *=' "$ROOT/deny.toml")
  return "$bad"
}

# check_dependencies: every crate in Cargo.lock against the offline advisory
# database, and deny.toml's bans (one TLS, HTTP and runtime stack) and
# sources, with cargo-deny. Nothing is fetched from the network.
check_dependencies() {
  if [[ -f $ADVISORY_DB/support.toml && -d $ADVISORY_DB/crates ]]; then
    mkdir -p "$CACHE"
    rm -rf "$ADVISORY_DB_CACHED.new"
    cp -r "$ADVISORY_DB" "$ADVISORY_DB_CACHED.new" && rm -rf "$ADVISORY_DB_CACHED" \
      && mv "$ADVISORY_DB_CACHED.new" "$ADVISORY_DB_CACHED"
  elif [[ -f $ADVISORY_DB_CACHED/support.toml ]]; then
    say "no advisory database at $ADVISORY_DB; using the cached copy of the snapshot"
    ADVISORY_DB=$ADVISORY_DB_CACHED
  fi
  if [[ ! -f $ADVISORY_DB/support.toml || ! -d $ADVISORY_DB/crates ]]; then
    # A public clone has no snapshot beside it: the current database, when
    # the network allows.
    check_dependencies_online
    return
  fi
  ensure_cargo_deny || return 1
  check_exception_dates || return 1
  say "advisory database $ADVISORY_DB: $(advisory_db_date "$ADVISORY_DB")"
  # cargo-deny reads a database only from its own git clone under db-path.
  # The snapshot becomes a local repository, and git's URL rewriting points
  # the clone at it; git may use no transport but local files.
  local work rc=0
  work=$(mktemp -d)
  local -a git_as=(git -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false
    --git-dir="$work/snapshot.git" --work-tree="$ADVISORY_DB")
  # Every platform's crates, which cargo-deny's offline graph reads (from
  # crates.io, like the build's; a no-op once there).
  cargo fetch --locked -q &&
    git init -q --bare -b main "$work/snapshot.git" &&
    "${git_as[@]}" add -A &&
    "${git_as[@]}" commit -q -m "advisory-db snapshot" &&
    GIT_ALLOW_PROTOCOL=file GIT_CONFIG_COUNT=1 \
      GIT_CONFIG_KEY_0="url.file://$work/snapshot.git.insteadOf" \
      GIT_CONFIG_VALUE_0=https://github.com/RustSec/advisory-db \
      S3TD_ADVISORY_DBS="$work/dbs" "$CARGO_DENY" deny fetch db &&
    S3TD_ADVISORY_DBS="$work/dbs" "$CARGO_DENY" deny --offline --locked \
      check advisories bans sources || rc=1
  rm -rf "$work"
  return "$rc"
}

# check_dependencies_online: the same check against the current RustSec
# database, fetched by cargo-deny; a skip (a failure under CI=true) when it
# cannot be fetched.
check_dependencies_online() {
  ensure_cargo_deny || return 1
  check_exception_dates || return 1
  local dbs=$CACHE/advisory-dbs-online
  mkdir -p "$dbs"
  if ! S3TD_ADVISORY_DBS="$dbs" "$CARGO_DENY" deny fetch db >/dev/null 2>&1; then
    skip_or_fail "dependency check: no advisory database at $ADVISORY_DB and none could be fetched (set ADVISORY_DB to an offline copy of rustsec/advisory-db, or allow access to github.com)"
    return 0
  fi
  say "advisory database: fetched now from github.com/RustSec/advisory-db (no snapshot at $ADVISORY_DB)"
  S3TD_ADVISORY_DBS="$dbs" "$CARGO_DENY" deny --locked check advisories bans sources
}

finish() {
  if ((${#SKIPPED[@]})); then
    say "done in $((SECONDS - T0)) s, with ${#SKIPPED[@]} part(s) SKIPPED:"
    printf '  - %s\n' "${SKIPPED[@]}" >&2
  else
    say "done in $((SECONDS - T0)) s, nothing skipped"
  fi
}
