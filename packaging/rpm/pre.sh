# rapport %pre: the service user exists before the files are unpacked, because the configuration
# file belongs to its group. Same entry as /usr/lib/sysusers.d/rapport.conf (which is not yet there).
if command -v systemd-sysusers >/dev/null 2>&1; then
    echo 'u rapport - "Rapport appliance" /var/lib/rapport' |
        systemd-sysusers --replace=/usr/lib/sysusers.d/rapport.conf -
elif ! getent passwd rapport >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/rapport --no-create-home \
        --shell /sbin/nologin --comment "Rapport appliance" rapport
fi
