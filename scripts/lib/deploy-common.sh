# shellcheck shell=bash disable=SC2034  # (its variables are for the scripts that source it)
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

# spool_size_limit MAX_SPOOL_MB: the spool emptyDir's sizeLimit for that
# budget. Past the limit the kubelet evicts the pod and every capture in the
# spool is lost, so it leaves room for what the budget cannot drop: the file
# being written and the uploads in flight (at the defaults 1 + 8 files of up
# to MAX_FILE_MB=100) and what arrives between two scans. Half the budget
# again, at least 1 GiB. The one copy of the rule: scripts/deploy applies it,
# tests/deploy/validate-manifests checks every render (the base included)
# against it.
spool_size_limit() {
  local mb=$1 headroom=$(($1 / 2))
  ((headroom >= 1024)) || headroom=1024
  echo "$((mb + headroom))Mi"
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
