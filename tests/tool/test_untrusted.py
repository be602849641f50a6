#!/usr/bin/env python3
"""Bytes a client passes (a device name that is not UTF-8 and holds a newline) reach the daemon's
log and the trace quoted, as \\xNN: no forged log line, no U+FFFD in the trace, and `vfio-emu
trace` works (the JSON reply once could not be built, and the daemon died of the exception)."""

import fcntl
import os

from harness import main

VFIO_GROUP_GET_DEVICE_FD = 0x3B6A
VFIO_EMU_GROUP_DEVICE = 0x3B7E
FORGED = b"[12:00:00.000] [core] [critical] forged"
NAME = b"0000:00:01.0\xff\n" + FORGED + b"\x00"


def check_client_bytes(rig, check):
    fd = os.open(os.path.join(rig.dev, "vfio/1"), os.O_RDWR)
    try:
        for cmd in (VFIO_GROUP_GET_DEVICE_FD, VFIO_EMU_GROUP_DEVICE):
            try:
                fcntl.ioctl(fd, cmd, bytearray(NAME))
                check.true(False, f"ioctl {cmd:#x} with a bad name succeeded")
            except OSError as e:
                check.expect(e.errno, 19, f"ioctl {cmd:#x} with a bad name: ENODEV")
    finally:
        os.close(fd)
    trace = rig.tool_json(check, "trace")
    if trace is not None:
        details = [r["detail"] for r in trace["records"]
                   if r["command"] in ("VFIO_GROUP_GET_DEVICE_FD", "VFIO_EMU_GROUP_DEVICE")]
        want = 'name="0000:00:01.0\\xff\\x0a' + FORGED.decode() + '"'
        check.expect(details, [want, want], "trace: the name, quoted")
    r = rig.tool("trace")
    check.expect(r.rc, 0, f"vfio-emu trace (for people): exit code ({r.err.strip()})")
    check.true(rig.daemon.poll() is None, "the daemon is alive")
    log = rig.daemon_log()
    forged = [line for line in log.splitlines() if line.startswith(FORGED.decode())]
    check.expect(forged, [], "log lines a client wrote")
    quoted = [line for line in log.splitlines() if "has no device" in line]
    check.true(quoted and all('"0000:00:01.0\\xff\\x0a[12:00' in line for line in quoted),
               f"the log quotes the name: {quoted}")


def test(rig, check):
    check_client_bytes(rig, check)


if __name__ == "__main__":
    main(test, with_client=False)
