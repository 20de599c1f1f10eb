#!/usr/bin/env bash
# A CI job step: fail the build unless IMAGE is a Linux whose hostname and
# /etc/os-release are as expected.  Exit status 1 and a one-line reason on failure.
#
#   examples/ci-check-image.sh IMAGE EXPECTED_HOSTNAME
set -euo pipefail
image=$1 expected=$2
gs=${GUESTSLOTS:-guestslots}

report=$("$gs" inspect "$image")
hostname=$(printf '%s' "$report" | python3 -c \
  'import json,sys; r=json.load(sys.stdin)[0]; print(r["operating_systems"][0]["hostname"])')
if [ "$hostname" != "$expected" ]; then
  echo "check-image: $image: hostname is '$hostname', expected '$expected'" >&2
  exit 1
fi
"$gs" cat "$image" /etc/os-release | grep -q '^ID=' \
  || { echo "check-image: $image: /etc/os-release has no ID" >&2; exit 1; }
echo "check-image: $image: ok (hostname $hostname)"
