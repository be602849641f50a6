#!/usr/bin/env python3
"""`vfio-emu trace --follow`: records arrive as the ioctls happen (with --json one object per
line), and the stream ends cleanly: exit 0 on SIGINT or when the reader of stdout goes away,
exit 3 with one line on stderr when the daemon stops."""

import json
import os
import select
import signal
import subprocess
import time

from harness import main


class Follower:
    """`vfio-emu trace --follow` running in the background, read line by line with timeouts."""

    def __init__(self, rig, *args):
        self.p = rig.spawn(*args, "trace", "--follow")
        self.buf = b""

    def line(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def finish(self, timeout=10):
        """Waits for the exit; returns (exit code or None if it hung, stderr)."""
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            rc = None
        err = self.p.stderr.read().decode(errors="replace")
        if self.p.stdout:
            self.p.stdout.close()
        return rc, err


def test(rig, check):
    # Records arrive while the client maps: 4 MAP_DMA among the 10 ioctls it makes.
    json_follower = Follower(rig, "--json")
    human_follower = Follower(rig)
    time.sleep(0.3)  # connected before the client starts (older records would come anyway)
    ready = rig.start_client()
    records = []
    while len(records) < 10:
        line = json_follower.line()
        if not check.true(line is not None, f"trace --follow --json: record {len(records) + 1}"):
            break
        records.append(json.loads(line))
    check.expect([r["seq"] for r in records], list(range(1, len(records) + 1)),
                 "trace --follow: records in order")
    maps = [r for r in records if r["command"] == "VFIO_IOMMU_MAP_DMA"]
    check.expect(len(maps), 4, "trace --follow: the MAP_DMA records")
    check.expect({r["pid"] for r in records}, {ready["pid"]}, "trace --follow: the client's pid")
    check.true(all(set(r) >= {"seq", "time", "pid", "tid", "node", "command", "cmd", "arg",
                              "detail", "result"} for r in records), "trace --follow: fields")

    # Ctrl-C: exit 0, nothing on stderr.
    json_follower.p.send_signal(signal.SIGINT)
    rc, err = json_follower.finish()
    check.expect((rc, err), (0, ""), "trace --follow: SIGINT ends it cleanly")

    # The reader of stdout goes away (`| head -1`): exit 0 without waiting for another record.
    head = Follower(rig)
    check.true(head.line() is not None, "trace --follow: a line for the reader")
    head.p.stdout.close()
    head.p.stdout = None
    rc, err = head.finish(timeout=5)
    check.expect((rc, err), (0, ""), "trace --follow: a reader that goes away ends it")

    # Text: a heading, then one line per record.
    heading = human_follower.line()
    check.true(heading is not None and heading.split()[:3] == ["SEQ", "TIME", "PID"],
               f"trace --follow: heading {heading!r}")
    lines = [human_follower.line() for _ in range(10)]
    check.true(all(lines), f"trace --follow: 10 record lines: {lines!r}")
    check.true(sum(" VFIO_IOMMU_MAP_DMA " in (l or "") for l in lines) == 4,
               "trace --follow: 4 MAP_DMA lines")

    # The daemon stops: the stream ends with exit 3 and one line.
    rig.stop_client()
    while human_follower.line(timeout=1) is not None:  # the client's close is no ioctl: none
        pass
    rig.stop_daemon()
    rc, err = human_follower.finish()
    check.expect(rc, 3, "trace --follow: the daemon stops: exit code")
    check.expect(len(err.splitlines()), 1, f"trace --follow: one line on stderr: {err!r}")
    check.true("the daemon closed the stream" in err, f"trace --follow: message {err!r}")


if __name__ == "__main__":
    main(test, with_client=False)
