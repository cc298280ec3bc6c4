# shellcheck shell=bash disable=SC2034  # (its variables are for the scripts that source it)
# Shared by tests/deploy/validate-manifests and tests/deploy/image-and-pod.

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"

# Pinned: a new checkov release brings new checks, and the exception list
# must change on purpose, not on a Tuesday.
PY_TOOLS=(kubernetes-validate==1.37.0 checkov==3.3.30)
K8S_VERSION=1.37.0

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
# $UPLOADER_BIN, else the debug build in $CARGO_TARGET_DIR or target/), or
# nothing.
binary() {
  local var=${1^^}_BIN
  local path=${!var:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/$1}
  [[ -x $path ]] && "$path" --version >/dev/null 2>&1 && echo "$path"
}

