#!/usr/bin/env bash
# Fails unless the llama.cpp of a build has AVX2 kernels (or native ones).
#
#   scripts/check-simd-kernels.sh PROFILE_DIR     e.g. target/release or target/debug
#
# llama-cpp-sys-2 builds llama.cpp with CMake under PROFILE_DIR/build/llama-cpp-sys-2-*/out/build;
# the newest CMakeCache.txt there must have GGML_AVX2 (or GGML_NATIVE) on. Without them ggml falls
# back to SSE kernels, some 60x slower, which happens when SOURCE_DATE_EPOCH is set during the
# build. `make package` runs this before packaging a binary, and tests/integration/inference.rs runs
# it on the test build, so the two use one rule.
set -euo pipefail

case "${1:-}" in
    "" | -h | --help)
        sed -n '2,10s/^# \{0,1\}//p' "$0"
        [[ -n "${1:-}" ]] && exit 0
        exit 2
        ;;
esac
profile_dir="$1"

newest=""
for cache in "$profile_dir"/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt; do
    [[ -f "$cache" ]] || continue
    if [[ -z "$newest" || "$cache" -nt "$newest" ]]; then
        newest="$cache"
    fi
done
if [[ -z "$newest" ]]; then
    echo "check-simd-kernels: no llama.cpp CMakeCache.txt under $profile_dir/build" >&2
    exit 1
fi

# Cache lines read NAME:TYPE=VALUE; CMake's true values are ON, TRUE and 1 in any case.
if grep -Eiq '^GGML_(AVX2|NATIVE)(:[A-Z]+)?=(ON|TRUE|1)[[:space:]]*$' "$newest"; then
    exit 0
fi
echo "check-simd-kernels: $newest builds llama.cpp without AVX2 kernels (SSE only, some 60x slower): is SOURCE_DATE_EPOCH set?" >&2
exit 1
