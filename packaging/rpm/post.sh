# rapport %post: the shared set-up script (permissions, first-install keys), then, on the first
# installation, the unit's preset (Fedora and RHEL policy; enable it with `systemctl enable rapport`
# where the preset disables it). Not started: the first operator is created first.
/usr/libexec/rapport/postinstall
if [ "$1" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload preset rapport.service >/dev/null 2>&1 || :
fi
