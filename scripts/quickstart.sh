#!/usr/bin/env bash
# The main job: set up (packages + data), build, and profile the default model (gpt2-tiny) on the
# built-in corpus (brown). Results land in out/quickstart/. Extra arguments go to `blocksharp profile`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec build/bin/blocksharp profile --out out/quickstart "$@"
