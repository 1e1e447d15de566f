#!/usr/bin/env bash
# Sets everything up, then runs the main job: stream a reply from the default model.
# Usage: bash scripts/run.sh ["your prompt" [mullama run flags, e.g. --verbose]]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/scripts/bootstrap.sh"
prompt="${1:-Write a short poem about the sea.}"
exec mullama run "$prompt" "${@:2}"
