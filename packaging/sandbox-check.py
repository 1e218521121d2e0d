#!/usr/bin/python3
"""Runs a command under the system-call filter that systemd/rapport.service sets up, without systemd.

    /usr/bin/python3 packaging/sandbox-check.py [--unit FILE] -- COMMAND [ARG...]

Containers (this project's development machines and CI) have no systemd as PID 1, so the unit
itself cannot be started there. This rebuilds its seccomp filter with libseccomp (Debian package
python3-seccomp) from the unit's own lines and runs COMMAND under it:

- SystemCallFilter= lines, expanded with `systemd-analyze syscall-filter`: the first one is the allow
  list, each `~` line removes calls from it, and every other call fails with
  SystemCallErrorNumber= (EPERM), as systemd does;
- MemoryDenyWriteExecute=yes: mmap with both PROT_WRITE and PROT_EXEC, mprotect/pkey_mprotect
  adding PROT_EXEC and shmat with SHM_EXEC fail with EPERM, as systemd's filter makes them.

Namespaces, ProtectSystem= and the other file-system settings are not reproduced. packaging/README.md
says what was run with it and what it showed.
"""

import errno
import os
import re
import subprocess
import sys

import seccomp

PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000


def expand(group):
    """The system calls a `systemd-analyze syscall-filter` group names, groups expanded."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout
    calls = set()
    for line in listing.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        calls |= expand(line) if line.startswith("@") else {line}
    return calls


def unit_settings(path):
    allowed, denied, mdwe = None, set(), False
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith("SystemCallFilter="):
            value = line.split("=", 1)[1]
            names = set()
            for item in value.lstrip("~").split():
                names |= expand(item) if item.startswith("@") else {item}
            if value.startswith("~"):
                denied |= names
            elif allowed is None:
                allowed = names
            else:
                allowed |= names
        elif re.fullmatch(r"MemoryDenyWriteExecute=(yes|true|1)", line):
            mdwe = True
    if allowed is None:
        sys.exit("sandbox-check: the unit has no allow-list SystemCallFilter= line")
    return allowed - denied, mdwe


def main():
    arguments = sys.argv[1:]
    unit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "systemd", "rapport.service")
    if arguments[:1] == ["--unit"]:
        unit, arguments = arguments[1], arguments[2:]
    if arguments[:1] != ["--"] or len(arguments) < 2:
        sys.exit(__doc__)
    command = arguments[1:]
    allowed, mdwe = unit_settings(unit)
    guarded = {"mmap", "mprotect", "pkey_mprotect", "shmat"} if mdwe else set()

    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    unknown = []
    for name in sorted(allowed - guarded):
        try:
            rules.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):
            unknown.append(name)
    if mdwe:
        write_exec = PROT_WRITE | PROT_EXEC
        for value in (0, PROT_WRITE, PROT_EXEC):
            rules.add_rule(seccomp.ALLOW, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, write_exec, value))
        for name in ("mprotect", "pkey_mprotect"):
            rules.add_rule(seccomp.ALLOW, name, seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, 0))
        rules.add_rule(seccomp.ALLOW, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, 0))
    print(
        f"sandbox-check: {len(allowed)} system calls allowed"
        f"{', MemoryDenyWriteExecute' if mdwe else ''}"
        f"{f'; unknown to this kernel: {len(unknown)}' if unknown else ''}",
        file=sys.stderr,
        flush=True,
    )
    rules.load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
