#!/usr/bin/env bash
# Fails unless the llama.cpp of a build has the CPU kernels it should.
#
#   scripts/check-simd-kernels.sh PROFILE_DIR           check, e.g. target/release or target/debug
#   scripts/check-simd-kernels.sh --cache PROFILE_DIR   print the CMakeCache.txt it reads
#
# llama-cpp-sys-2 builds llama.cpp with CMake under PROFILE_DIR/build/llama-cpp-sys-2-*/out/build;
# the newest CMakeCache.txt there decides. A static build (development, tests) must have GGML_AVX2
# (or GGML_NATIVE) on: without them ggml falls back to SSE kernels, some 60x slower, which happens
# when SOURCE_DATE_EPOCH is set during the build. A `runtime-kernels` build (the release packages)
# must have GGML_BACKEND_DL and GGML_CPU_ALL_VARIANTS on and its kernel modules built, from the
# baseline x64 one to AVX2, AVX-512 and AMX. `make package` runs this before packaging a binary, and
# tests/integration/inference.rs runs it on the test build, so the two use one rule.
set -euo pipefail

print_cache=0
case "${1:-}" in
    "" | -h | --help)
        sed -n '2,13s/^# \{0,1\}//p' "$0"
        [[ -n "${1:-}" ]] && exit 0
        exit 2
        ;;
    --cache)
        print_cache=1
        shift
        ;;
esac
profile_dir="${1:?check-simd-kernels: PROFILE_DIR is missing}"

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
if ((print_cache)); then
    echo "$newest"
    exit 0
fi

# Cache lines read NAME:TYPE=VALUE; CMake's true values are ON, TRUE and 1 in any case.
is_on() {
    grep -Eiq "^$1(:[A-Z]+)?=(ON|TRUE|1)[[:space:]]*\$" "$newest"
}

if is_on GGML_BACKEND_DL && is_on GGML_CPU_ALL_VARIANTS; then
    modules="$(dirname "$(dirname "$newest")")/backends"
    for level in x64 haswell skylakex icelake zen4 sapphirerapids; do
        if [[ ! -f "$modules/libggml-cpu-$level.so" ]]; then
            echo "check-simd-kernels: the $level kernel module is missing from $modules" >&2
            exit 1
        fi
    done
    exit 0
fi
if is_on GGML_AVX2 || is_on GGML_NATIVE; then
    exit 0
fi
echo "check-simd-kernels: $newest builds llama.cpp without AVX2 kernels (SSE only, some 60x slower): is SOURCE_DATE_EPOCH set?" >&2
exit 1
