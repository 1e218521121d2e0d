#!/usr/bin/env bash
# Lints the packages in target/packages/: lintian on each .deb, rpmlint on each .rpm. Fails on any
# error; warnings are printed, and each one that remains is explained in packaging/README.md.
#
#   packaging/lint.sh       after scripts/package.sh (`make package` and `make test` run it)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,5s/^# \{0,1\}//p' "$0"
    exit 0
fi

shopt -s nullglob
debs=(target/packages/*.deb)
rpms=(target/packages/*.rpm)
if ((${#debs[@]} == 0 || ${#rpms[@]} == 0)); then
    echo "lint: no .deb or no .rpm in target/packages (run scripts/package.sh first)" >&2
    exit 1
fi

failed=0
for deb in "${debs[@]}"; do
    echo "lint: lintian ${deb##*/}"
    # --fail-on error: warnings are reported but only errors fail the check.
    lintian --fail-on error --tag-display-limit 0 "$deb" || failed=1
done
for rpm in "${rpms[@]}"; do
    echo "lint: rpmlint ${rpm##*/}"
    # Errors exit non-zero, warnings alone exit 0. Each package has its own rpmlintrc, because
    # rpmlint counts a filter that matches nothing as an error; each filter is explained there.
    case "${rpm##*/}" in
        rapport-model-*) rpmlintrc=packaging/model/rpmlintrc ;;
        *) rpmlintrc=packaging/rpmlintrc ;;
    esac
    rpmlint --rpmlintrc "$rpmlintrc" "$rpm" || failed=1
done
if ((failed)); then
    echo "lint: errors found (above)" >&2
    exit 1
fi
echo "lint: no errors"
