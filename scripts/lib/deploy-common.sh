# Helpers shared by scripts/deploy, scripts/cleanup, scripts/iam-setup and
# scripts/s3-lifecycle. Source it; it sets nothing but functions and ROOT.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NAMESPACE=s3-tcpdump
SERVICE_ACCOUNT=s3-tcpdump-service-account
APP_LABEL=app.kubernetes.io/name=s3-tcpdump
DRY_RUN=${DRY_RUN:-0}

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# need_cmd NAME HINT: fail with a hint when a command is missing.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

# run CMD...: run a command, or only print it under --dry-run.
run() {
  if [[ $DRY_RUN == 1 ]]; then
    { printf '+'; printf ' %q' "$@"; printf '\n'; } >&2
  else
    log "running: $*"
    "$@"
  fi
}

# json_str VALUE: VALUE as a JSON (and so YAML) double-quoted string.
json_str() {
  local s=$1
  [[ $s != *$'\n'* ]] || die "value must be one line: $s"
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

valid_bucket() {
  [[ $1 =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "not an S3 bucket name: '$1'"
}

valid_account() {
  [[ $1 =~ ^[0-9]{12}$ ]] || die "not an AWS account id (12 digits): '$1'"
}

# render_policy BUCKET PREFIX ACCOUNT: the uploader's IAM policy with the
# placeholder bucket, the capture prefix and the bucket owner's account filled in.
render_policy() {
  local bucket=$1 prefix=$2 account=$3
  [[ $prefix =~ ^[A-Za-z0-9!_.*\'()/-]+$ && $prefix != /* && $prefix != */ ]] \
    || die "not a key prefix (no leading or trailing /): '$prefix'"
  valid_account "$account"
  sed -e "s|REPLACE_WITH_BUCKET|$bucket|g" -e "s|/tcp-dumps/\*|/$prefix/*|g" \
    -e "s|REPLACE_WITH_ACCOUNT_ID|$account|g" "$ROOT/manifests/s3-tcpdump-policy.json"
}
