#!/usr/bin/env bash
# Build the libFuzzer harnesses with Debian's clang (ASan + UBSan) into build-fuzz/ and run each for
# FUZZ_SECONDS (default 600) from the committed seed corpus in tests/fuzz/corpus/<name>/.
# Usage: scripts/fuzz.sh [HARNESS...]   (fuzz_safetensors fuzz_config fuzz_h5; default: all, in turn)
# Findings (crash-*, leak-*, timeout-*) land in build-fuzz/findings/<name>/; a finding fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(fuzz_safetensors fuzz_config fuzz_h5)
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBLOCKSHARP_FUZZ=ON -DBLOCKSHARP_CUDA=OFF >/dev/null
fi
cmake --build build-fuzz -j "$(nproc)" --target "${harnesses[@]}"
# LibTorch's and HDF5's one-time global allocations are not leaks of an input: leak checking stays on,
# but only for what an input leaves behind (libFuzzer's -detect_leaks compares before and after).
export ASAN_OPTIONS="detect_container_overflow=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# One suppression, for a leak inside libhdf5's own failed H5Fopen (see the file).
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp"
export OMP_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
status=0
for h in "${harnesses[@]}"; do
  corpus=build-fuzz/corpus/$h findings=build-fuzz/findings/$h
  mkdir -p "$corpus" "$findings"
  cp -n tests/fuzz/corpus/"$h"/* "$corpus"/ 2>/dev/null || true
  echo "== $h: ${FUZZ_SECONDS:-600} s"
  if ! build-fuzz/bin/"$h" "$corpus" -max_total_time="${FUZZ_SECONDS:-600}" -timeout=10 -rss_limit_mb=4096 \
      -max_len=65536 -artifact_prefix="$findings/" -print_final_stats=1 2>&1 | tail -25; then
    status=1
  fi
  [ -n "$(ls -A "$findings")" ] && { echo "findings in $findings"; status=1; }
done
exit $status
