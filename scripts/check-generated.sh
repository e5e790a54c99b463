#!/usr/bin/env bash
# Fails when src/gen differs from what `buf generate` makes from proto/ now,
# so that a proto change cannot land without its generated code.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
npx buf lint
npx buf generate --output "$scratch"
if ! diff -r "$scratch/src/gen" src/gen; then
  echo "src/gen is stale: run 'npm run generate' and commit the result" >&2
  exit 1
fi
