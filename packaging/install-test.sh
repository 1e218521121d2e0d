#!/usr/bin/env bash
# Installs the .deb packages from target/packages/ on this machine, as an administrator would, and
# checks the result: files and permissions, `rapport check`, an upgrade and a remove that keep the
# data, the service running as the rapport user with the credential systemd would give it, a sign-in
# over HTTPS with the CSRF-protected form, and finally a purge that deletes the data. Run as root on a
# disposable machine (CI runs it from `make test`); it refuses when rapport is already installed, and
# leaves the machine as it found it (packages purged, the rapport user removed if it created it).
#
#   packaging/install-test.sh      after scripts/package.sh (or --test-build)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,9s/^# \{0,1\}//p' "$0"
    exit 0
fi
fail() {
    echo "install-test: FAILED: $*" >&2
    exit 1
}
step() {
    echo "install-test: $*"
}

((EUID == 0)) || fail "run as root (it installs packages)"
shopt -s nullglob
debs=(target/packages/rapport_*_amd64.deb)
model_debs=(target/packages/rapport-model-gemma3-270m_*_amd64.deb)
((${#debs[@]} == 1 && ${#model_debs[@]} == 1)) ||
    fail "expected one rapport and one rapport-model-gemma3-270m .deb in target/packages (run scripts/package.sh)"
for package in rapport rapport-model-gemma3-270m; do
    if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q installed; then
        fail "$package is installed already; this test installs and purges it, so run it elsewhere"
    fi
done
[[ ! -e /var/lib/rapport && ! -e /etc/rapport ]] ||
    fail "/var/lib/rapport or /etc/rapport exists already; this test would delete it"

user_existed=false
getent passwd rapport >/dev/null && user_existed=true
work="$(mktemp -d)"
server_pid=""
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if dpkg-query -W -f='${Status}' rapport rapport-model-gemma3-270m 2>/dev/null | grep -q 'ok'; then
        dpkg --purge rapport-model-gemma3-270m rapport >/dev/null 2>&1 || true
    fi
    if [[ "$user_existed" == false ]] && getent passwd rapport >/dev/null; then
        userdel rapport 2>/dev/null || true
        getent group rapport >/dev/null && groupdel rapport 2>/dev/null || true
    fi
    if ((status == 0)); then
        echo "install-test: passed"
    elif [[ -s "$work/serve.log" ]]; then
        echo "install-test: the server's log:" >&2
        tail -n 40 "$work/serve.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

mode_of() {
    stat -c '%a %U:%G' "$1"
}
expect_mode() {
    local actual
    actual="$(mode_of "$1")"
    [[ "$actual" == "$2" ]] || fail "$1 is $actual, expected $2"
}

step "installing ${debs[0]##*/} and ${model_debs[0]##*/}"
dpkg -i "${debs[0]}" "${model_debs[0]}" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; fail "dpkg -i failed"; }
grep -q "first installation" "$work/install.log" || fail "the postinst did not initialise: $(cat "$work/install.log")"

step "checking files and permissions"
[[ -x /usr/bin/rapport ]] || fail "/usr/bin/rapport is missing"
getent passwd rapport >/dev/null || fail "the rapport user was not created"
expect_mode /etc/rapport "750 root:rapport"
expect_mode /etc/rapport/rapport.toml "640 root:rapport"
expect_mode /etc/rapport/master.key "600 root:root"
expect_mode /etc/rapport/tls/key.pem "640 root:rapport"
expect_mode /var/lib/rapport "700 rapport:rapport"
[[ -f /usr/lib/sysusers.d/rapport.conf ]] || fail "the sysusers.d entry is missing"
unit="$(dpkg -L rapport | grep '/systemd/system/rapport.service$')" || fail "the unit is not in the package"
cmp -s "$unit" systemd/rapport.service || fail "$unit differs from systemd/rapport.service"
dpkg-query --showformat='${Conffiles}' --show rapport | grep -q /etc/rapport/rapport.toml ||
    fail "/etc/rapport/rapport.toml is not a conffile"
if find /var/lib/rapport ! -user rapport | grep -q .; then
    fail "files in /var/lib/rapport not owned by rapport: $(find /var/lib/rapport ! -user rapport)"
fi
model=/usr/share/rapport/models/gemma-3-270m-q4_k_m.gguf
expected_sha256="$(sed -n 's/^readonly expected_sha256="\(.*\)"$/\1/p' scripts/fetch-model.sh)"
[[ "$(sha256sum "$model" | cut -d' ' -f1)" == "$expected_sha256" ]] || fail "$model has the wrong sha256"

step "rapport check"
rapport check --config /etc/rapport/rapport.toml || fail "rapport check reported problems"

step "re-installing (an upgrade) and removing keep the key and the data"
key_sum="$(sha256sum /etc/rapport/master.key)"
dpkg -i "${debs[0]}" >"$work/upgrade.log" 2>&1 || { cat "$work/upgrade.log" >&2; fail "upgrade failed"; }
! grep -q "first installation" "$work/upgrade.log" || fail "the upgrade initialised again"
[[ "$(sha256sum /etc/rapport/master.key)" == "$key_sum" ]] || fail "the upgrade changed the master key"
dpkg --remove rapport >/dev/null
[[ -d /var/lib/rapport/db && -f /etc/rapport/master.key ]] || fail "remove deleted the data or the key"
dpkg -i "${debs[0]}" >"$work/reinstall.log" 2>&1 || { cat "$work/reinstall.log" >&2; fail "reinstall failed"; }
[[ "$(sha256sum /etc/rapport/master.key)" == "$key_sum" ]] || fail "the reinstall changed the master key"
rapport check --config /etc/rapport/rapport.toml >/dev/null || fail "rapport check failed after reinstalling"

step "creating an operator"
email=install-test@example.com
password="$(openssl rand -base64 18)"
printf '%s\n' "$password" | rapport user add --config /etc/rapport/rapport.toml --email "$email" \
    --role operator --password-stdin >/dev/null
chown -R rapport:rapport /var/lib/rapport

step "serving as the rapport user, with the master key as a credential"
# What the unit gives the service: its user, and a private copy of the key in $CREDENTIALS_DIRECTORY.
credentials="$work/credentials"
install -d -m 0500 -o rapport -g rapport "$credentials"
install -m 0400 -o rapport -g rapport /etc/rapport/master.key "$credentials/master-key"
chmod 0711 "$work"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
setpriv --reuid=rapport --regid=rapport --init-groups --reset-env \
    env CREDENTIALS_DIRECTORY="$credentials" RAPPORT_SERVER__LISTEN="127.0.0.1:$port" \
    /usr/bin/rapport serve --config /etc/rapport/rapport.toml >"$work/serve.log" 2>&1 &
server_pid=$!
base="https://127.0.0.1:$port"
curl_tls=(curl --silent --show-error --cacert /etc/rapport/tls/cert.pem)
for _ in $(seq 1 60); do
    if "${curl_tls[@]}" --output /dev/null "$base/login" 2>/dev/null; then
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || fail "rapport serve exited: $(cat "$work/serve.log")"
    sleep 0.5
done
[[ "$(ps -o user= -p "$server_pid")" == rapport ]] || fail "the server does not run as rapport"

step "signing in over HTTPS"
jar="$work/cookies"
page="$("${curl_tls[@]}" --cookie-jar "$jar" --cookie "$jar" "$base/login")"
csrf="$(printf '%s' "$page" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -n 1)"
[[ -n "$csrf" ]] || fail "no CSRF token in the sign-in page"
headers="$("${curl_tls[@]}" --cookie-jar "$jar" --cookie "$jar" --output /dev/null --dump-header - \
    --data-urlencode "csrf=$csrf" --data-urlencode "email=$email" --data-urlencode "password=$password" \
    "$base/login")"
status="$(printf '%s' "$headers" | head -n 1 | tr -d '\r')"
[[ "$status" == *" 303"* ]] || fail "sign-in answered '$status', expected 303"
printf '%s' "$headers" | tr -d '\r' | grep -qi '^location: /$' || fail "sign-in did not redirect to /"
tenants="$("${curl_tls[@]}" --cookie-jar "$jar" --cookie "$jar" --write-out '\n%{http_code}' "$base/admin/tenants")"
[[ "${tenants##*$'\n'}" == 200 ]] || fail "the signed-in console answered ${tenants##*$'\n'}"
[[ "$tenants" == *"Create a tenant"* ]] || fail "the console page is not the tenants page"
wrong="$("${curl_tls[@]}" --output /dev/null --write-out '%{http_code}' "$base/admin/tenants")"
[[ "$wrong" == 303 ]] || fail "the console answered $wrong without a session"

kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

step "purging"
dpkg --purge rapport-model-gemma3-270m rapport >"$work/purge.log" 2>&1 ||
    { cat "$work/purge.log" >&2; fail "purge failed"; }
grep -q "deleting /var/lib/rapport" "$work/purge.log" || fail "the purge did not say what it deletes"
[[ ! -e /var/lib/rapport ]] || fail "/var/lib/rapport survived the purge"
[[ ! -e /etc/rapport ]] || fail "/etc/rapport survived the purge: $(ls -la /etc/rapport)"
[[ ! -e /usr/bin/rapport && ! -e "$model" ]] || fail "files survived the purge"
