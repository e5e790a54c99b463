#!/bin/sh
# Creates a sidecar token on the Tollgate server and writes its secret to
# $SIDECAR_TOKEN_FILE (mode 600), unless that file already contains one, so
# running it again after `docker compose up` reuses the first token.
#
# Needs TOLLGATE_SERVER (the server's URL) and TOLLGATE_ADMIN_TOKEN, which the
# tollgate CLI reads itself. The secret never reaches the log or a command line.
set -eu

token_file="${SIDECAR_TOKEN_FILE:-/var/lib/tollgate/sidecar-token}"
token_name="${SIDECAR_TOKEN_NAME:-compose-sidecar}"
cli="${TOLLGATE_CLI:-/app/bin/tollgate.js}"

if [ -s "$token_file" ]; then
  echo "create-sidecar-token: $token_file already contains a token; keeping it"
  exit 0
fi

umask 077
# The CLI prints the token record as JSON; keep only its secret. An empty
# output (the CLI failed) makes JSON.parse, and so the pipeline, fail.
node "$cli" tokens create "$token_name" --kind sidecar --json \
  | node -e 'process.stdout.write(JSON.parse(require("node:fs").readFileSync(0, "utf8")).token)' \
  > "$token_file.partial"
mv "$token_file.partial" "$token_file"
echo "create-sidecar-token: wrote a new sidecar token named $token_name to $token_file"
