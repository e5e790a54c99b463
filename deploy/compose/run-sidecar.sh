#!/bin/sh
# Starts `tollgate sidecar` with the token that create-sidecar-token.sh wrote.
# The sidecar reads its token from TOLLGATE_SIDECAR_TOKEN, and exec makes it
# PID 1, so it receives `docker compose stop`'s SIGTERM and drains.
set -eu

token_file="${SIDECAR_TOKEN_FILE:-/var/lib/tollgate/sidecar-token}"
cli="${TOLLGATE_CLI:-/app/bin/tollgate.js}"

if [ ! -s "$token_file" ]; then
  echo "run-sidecar: $token_file is missing or empty; run the sidecar-token service first" >&2
  exit 2
fi

TOLLGATE_SIDECAR_TOKEN="$(cat "$token_file")"
export TOLLGATE_SIDECAR_TOKEN
exec node "$cli" sidecar "$@"
