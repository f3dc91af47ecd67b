#!/usr/bin/env bash
# Build the C++ unit tests with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and run
# them. Any report fails the run (halt_on_error). LibTorch and HDF5 are not instrumented; their
# allocations are still checked where our code touches them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
if [ ! -f build-asan/build.ninja ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBLOCKSHARP_SANITIZE=address,undefined -DBLOCKSHARP_CUDA=OFF >/dev/null
fi
cmake --build build-asan -j "$(nproc)" --target test_core test_diagnostics test_partitioners test_optimizers test_flows
# LibTorch's own globals are not instrumented: leak checking reports their one-time allocations, so
# it is off; container-overflow needs every library instrumented, so it is off too.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=0:detect_container_overflow=0:abort_on_error=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export OMP_NUM_THREADS=1
cd build-asan
ctest -j "$(nproc)" --timeout 1800 --output-on-failure -R '^(test_|[A-Z])' "$@"
