#!/bin/sh
# Installed as /usr/libexec/rapport/postinstall and run by the .deb's postinst (configure) and the
# .rpm's %post, on every installation and upgrade: the service user, the permissions of /etc/rapport,
# the data directory and, only when neither a master key nor a database exists, `rapport init`
# (master key, self-signed certificate, database). It never overwrites a key or touches data.
set -e

config=/etc/rapport/rapport.toml
data_dir=/var/lib/rapport
key=/etc/rapport/master.key

# The user from /usr/lib/sysusers.d/rapport.conf; adduser or useradd where systemd-sysusers is missing.
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers rapport.conf
elif ! getent passwd rapport >/dev/null; then
    if command -v adduser >/dev/null 2>&1 && adduser --help 2>&1 | grep -q -- --system; then
        adduser --system --group --home "$data_dir" --no-create-home --gecos "Rapport appliance" rapport
    else
        useradd --system --user-group --home-dir "$data_dir" --no-create-home \
            --shell /usr/sbin/nologin --comment "Rapport appliance" rapport
    fi
fi

# The service reads its configuration through the group; the master key stays root's alone (systemd
# hands the service a copy), so nothing here is readable by other users.
chown root:rapport /etc/rapport "$config"
chmod 0750 /etc/rapport
chmod 0640 "$config"
if [ ! -d "$data_dir" ]; then
    install -d -m 0700 -o rapport -g rapport "$data_dir"
fi

first_install=no
if [ ! -e "$key" ] && [ ! -e "$data_dir/db" ]; then
    echo "rapport: first installation: creating the master key, a self-signed certificate and the database"
    rapport init --config "$config" --data-dir "$data_dir"
    chown -R rapport:rapport "$data_dir"
    chmod 0700 "$data_dir"
    first_install=yes
elif [ ! -e "$key" ]; then
    echo "rapport: warning: $data_dir holds a database but $key is missing; restore the key from its backup" >&2
fi

# The service reads the TLS files itself: group rapport, never other users. Files an administrator
# gave another owner are left alone.
if [ -d /etc/rapport/tls ]; then
    chown root:rapport /etc/rapport/tls
    chmod 0750 /etc/rapport/tls
    for file in /etc/rapport/tls/cert.pem /etc/rapport/tls/key.pem; do
        if [ -f "$file" ] && [ "$(stat -c %U:%G "$file")" = root:root ]; then
            chown root:rapport "$file"
            chmod 0640 "$file"
        fi
    done
fi

if [ "$first_install" = yes ]; then
    cat <<'MESSAGE'
rapport: installed (enabled, not yet started). Create the first operator, then start the service:
    printf '%s\n' 'a long one-time password' | rapport user add --email you@example.com \
        --role operator --password-stdin --temporary
    chown -R rapport:rapport /var/lib/rapport
    systemctl start rapport
and sign in at https://<this host>:8443 (see /usr/share/doc/rapport/README.packaging.md).
MESSAGE
fi
