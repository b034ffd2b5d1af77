#!/usr/bin/env bash
# The installed gcloud CLI, unmodified, with only `frontdoor env`'s variables set (its own
# proxy properties among them), a fresh configuration directory, and
# GOOGLE_APPLICATION_CREDENTIALS where a cell reads a credentials file.
#
# usage: client.sh CELL SERVICE_URL CLOSED_URL
#
# Prints one JSON object, read by tests/it/client_matrix.rs: a value whose key starts with
# "token" is a token the test checks.
set -euo pipefail
cell=$1 url=$2 other=$3

token() { jq -cn --arg t "$1" '{token: $t}'; }
unsupported() { jq -cn --arg why "$1" '{unsupported: $why}'; }

# Runs gcloud ARGS, its output in $out. A refusal whose message contains $refusal is what
# gcloud says of a credential it cannot use here (as against Google): reported with
# $where, the place in gcloud's source that decides it. Any other failure fails the cell.
refusal='' where=''
err=$(mktemp)
trap 'rm -f "$err"' EXIT
run() {
  if out=$(gcloud "$@" 2>"$err"); then
    return 0
  fi
  if [ -n "$refusal" ] && grep -qF -- "$refusal" "$err"; then
    unsupported "gcloud refuses: $(grep -m1 -F -- "$refusal" "$err" | sed 's/^ERROR: //') ($where)"
    exit 0
  fi
  cat "$err" >&2
  exit 1
}

case "$cell" in
  platform)
    # With no account configured, gcloud finds the metadata server's.
    run auth list --filter=status:ACTIVE --format='value(account)'
    account=$out
    run config get-value project
    jq -cn --arg a "$account" --arg p "$out" '{detected: ($a != ""), account: $a, project: $p}' ;;
  metadata-access)
    run auth print-access-token
    token "$out" ;;
  metadata-id)
    run auth print-identity-token --audiences="$url" --token-format=full
    token "$out" ;;
  key-file)
    run auth activate-service-account --key-file="$GOOGLE_APPLICATION_CREDENTIALS" --quiet
    run auth print-identity-token --audiences="$url"
    token "$out" ;;
  impersonated)
    refusal='Only external account or service account JSON credential file types are supported'
    where='lib/surface/auth/login.py reads --cred-file; gcloud impersonates with --impersonate-service-account instead'
    run auth login --cred-file="$GOOGLE_APPLICATION_CREDENTIALS" --quiet
    run auth print-identity-token --audiences="$url"
    token "$out" ;;
  external-access)
    run auth login --cred-file="$GOOGLE_APPLICATION_CREDENTIALS" --quiet
    run auth print-access-token
    token "$out" ;;
  external-id)
    run auth login --cred-file="$GOOGLE_APPLICATION_CREDENTIALS" --quiet
    refusal='Invalid account type for `--audiences`'
    where='lib/surface/auth/print_identity_token.py, ValidIdTokenCredential'
    run auth print-identity-token --audiences="$url"
    token "$out" ;;
  verify)
    unsupported "gcloud has no command that verifies an ID token (gcloud auth --help lists none)" ;;
  call)
    # Google's recipe: gcloud's token, sent with curl.
    statuses=()
    for u in "$url" "$other"; do
      run auth print-identity-token --audiences="$u"
      statuses+=("$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $out" "$u/whoami")")
    done
    jq -cn --argjson a "${statuses[0]}" --argjson b "${statuses[1]}" '{statuses: [$a, $b]}' ;;
  *)
    echo "unknown cell $cell" >&2; exit 2 ;;
esac
