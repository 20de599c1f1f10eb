#!/usr/bin/env bash
# A CI job step: mount IMAGE read-only on the host and audit it with ordinary tools:
# fail if a file under /etc is world-writable or a private SSH host key is readable
# by others.  Exit status 1 and the offending paths on failure.
#
#   examples/ci-audit-mounted.sh IMAGE
set -euo pipefail
image=$1
gs=${GUESTSLOTS:-guestslots}

mp=$(mktemp -d)
"$gs" mount -i "$image" "$mp"
trap '"$gs" umount "$mp" && rmdir "$mp"' EXIT

bad=$(find "$mp/etc" -type f \( -perm -0002 -o \( -name 'ssh_host_*_key' -perm /0044 \) \) \
        -printf '/etc/%P\n' | sort)
if [ -n "$bad" ]; then
  echo "audit: $image: unsafe permissions:" >&2
  printf '%s\n' "$bad" >&2
  exit 1
fi
echo "audit: $image: ok ($(find "$mp" -xdev | wc -l) files)"
