# rapport %postun: after an upgrade restart a running service; after an erase say where the data
# stayed (RPM has no purge: deleting it is the administrator's decision).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ] && [ -d /run/systemd/system ]; then
    systemctl try-restart rapport.service >/dev/null 2>&1 || :
fi
if [ "$1" -eq 0 ]; then
    echo "rapport: removed; the data in /var/lib/rapport and the keys in /etc/rapport are kept."
    echo "rapport: to delete them for good: rm -rf /var/lib/rapport /etc/rapport"
fi
