#!/usr/bin/env bash
# The test command: set up (packages + data), build, run the whole suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd build
ctest -j "$(nproc)" --output-on-failure --timeout 900
