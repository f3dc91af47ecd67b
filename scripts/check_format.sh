#!/usr/bin/env bash
# The tree follows .clang-format: lists each C++/CUDA file whose formatting differs and fails.
# Fix with: scripts/check_format.sh --fix
set -euo pipefail
cd "$(dirname "$0")/.."
cf=$(command -v clang-format-14 || command -v clang-format || true)
[ -n "$cf" ] || { echo "check_format: clang-format not found (scripts/setup.sh installs it)" >&2; exit 1; }
# Tracked files and new ones not yet added (not ignored ones): a new file is checked before its commit.
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cpp' '*.h' '*.cu' '*.cuh' 2>/dev/null || find src diagnostics partitioners optimizers tools tests -name '*.cpp' -o -name '*.h' -o -name '*.cu')
if [ "${1:-}" = "--fix" ]; then "$cf" -i "${files[@]}"; exit 0; fi
bad=0
for f in "${files[@]}"; do
  if ! "$cf" --dry-run --Werror "$f" >/dev/null 2>&1; then echo "check_format: $f differs from .clang-format" >&2; bad=1; fi
done
[ $bad -eq 0 ] && echo "check_format: ${#files[@]} files follow .clang-format"
exit $bad
