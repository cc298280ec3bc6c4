# Shared by tests/deploy/validate-manifests and tests/deploy/image-and-pod.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${S3TD_CACHE:-/root/.cache/s3-tcpdump}
VENV=$CACHE/venv
# Pinned: a new checkov release brings new checks, and the exception list
# must change on purpose, not on a Tuesday.
PY_TOOLS=(kubernetes-validate==1.37.0 checkov==3.3.30)
K8S_VERSION=1.37.0
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

ensure_apt() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  say "installing from Debian: ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
}

# ensure_venv: kubernetes-validate and checkov in the cached virtualenv.
ensure_venv() {
  local stamp=$VENV/.s3-tcpdump-deploy-tools
  if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "${PY_TOOLS[*]}" ]]; then
    return 0
  fi
  say "installing ${PY_TOOLS[*]} into $VENV (PyPI)"
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_TOOLS[@]}"
  echo "${PY_TOOLS[*]}" > "$stamp"
}

podspec() { "$VENV/bin/python" "$ROOT/tests/deploy/podspec.py" "$@"; }

# binary NAME: the path of a working launcher or uploader ($LAUNCHER_BIN,
# $UPLOADER_BIN, else target/debug), or nothing.
binary() {
  local var=${1^^}_BIN
  local path=${!var:-$ROOT/target/debug/$1}
  [[ -x $path ]] && "$path" --version >/dev/null 2>&1 && echo "$path"
}

finish() {
  if ((${#SKIPPED[@]})); then
    say "done in $((SECONDS - T0)) s, with ${#SKIPPED[@]} part(s) SKIPPED:"
    printf '  - %s\n' "${SKIPPED[@]}" >&2
  else
    say "done in $((SECONDS - T0)) s, nothing skipped"
  fi
}
