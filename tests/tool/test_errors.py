#!/usr/bin/env python3
"""`vfio-emu` error exits: each failure is one line on stderr and its own exit code
(tools/control-protocol.md): 2 usage, 3 daemon not running, 4 permission denied, 5 unknown id,
6 timeout or bad reply; never a hang or a stack trace."""

import os
import socket
import stat
import threading

from harness import main

USAGE, NOT_RUNNING, PERMISSION, UNKNOWN_ID, PROTOCOL = 2, 3, 4, 5, 6
NOBODY = 65534


def expect_error(check, r, code, words):
    what = f"vfio-emu {' '.join(r.args)}"
    check.expect(r.rc, code, f"{what}: exit code")
    lines = r.err.splitlines()
    check.expect(len(lines), 1, f"{what}: one line on stderr ({r.err!r})")
    check.true(r.err.startswith("vfio-emu: "), f"{what}: message starts with 'vfio-emu: '")
    check.true(words in r.err, f"{what}: {words!r} in {r.err!r}")
    check.expect(r.out, "", f"{what}: nothing on stdout")


class FakeDaemon:
    """A control socket that answers every request with `reply` (bytes; b"": closes the
    connection instead; None: never answers)."""

    def __init__(self, path, reply):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.reply = reply
        self.conns = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.recv(65536)
            if self.reply == b"":
                conn.close()
            elif self.reply is not None:
                conn.sendall(self.reply)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test(rig, check):
    # Usage errors never reach the daemon.
    for args, words in ((["pt"], "--domain is required"),
                        (["translate", "--domain", "1"], "iova is required"),
                        (["pt", "--domain", "x"], "'x' is not a number"),
                        (["pt", "--domain", "1", "--iova", "0x2000..0x1000"], "A <= B"),
                        (["maps", "--domain", "1", "--pid", "2"], "excludes"),
                        (["maps", "--ioas", "a:b"], "not an IOAS id"),
                        (["translate", "--domain", "1", "-5"], "not a number"),
                        (["status", "--bogus"], "--bogus"),
                        ([], "subcommand is required"),
                        (["--timeout", "0", "status"], "seconds")):
        expect_error(check, rig.tool(*args), USAGE, words)

    # Unknown ids: the daemon says ENOENT.
    for args, words in ((["pt", "--domain", "999"], "unknown domain 999 (ENOENT)"),
                        (["translate", "--domain", "999", "0x1000"], "unknown domain 999"),
                        (["maps", "--domain", "999"], "unknown domain 999"),
                        (["maps", "--container", "999"], "unknown container 999"),
                        (["maps", "--ioas", "9:1"], "unknown IOAS 9:1")):
        expect_error(check, rig.tool(*args), UNKNOWN_ID, words)

    # The socket is owner-only: another user may not connect (the directory lets them through).
    mode = stat.S_IMODE(os.stat(rig.sock).st_mode)
    check.expect(oct(mode), oct(0o600), "the control socket's mode")
    expect_error(check, rig.tool("status", user=NOBODY), PERMISSION, "permission denied")
    expect_error(check, rig.tool("--json", "maps", user=NOBODY), PERMISSION, rig.sock)

    # $VFIO_EMU_CONTROL names the socket; --control wins over it.
    r = rig.tool("status", control=False, env={"VFIO_EMU_CONTROL": rig.sock})
    check.expect(r.rc, 0, f"$VFIO_EMU_CONTROL is used: {r!r}")
    missing = os.path.join(rig.work, "missing.sock")
    r = rig.tool("status", control=False, env={"VFIO_EMU_CONTROL": missing})
    expect_error(check, r, NOT_RUNNING, missing)
    r = rig.tool("--control", rig.sock, "status", control=False, env={"VFIO_EMU_CONTROL": missing})
    check.expect(r.rc, 0, f"--control wins over $VFIO_EMU_CONTROL: {r!r}")

    # No daemon: no socket at all, or a socket nobody listens on (a daemon that died).
    expect_error(check, rig.tool("list", control=missing), NOT_RUNNING, "not running")
    stale = os.path.join(rig.work, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    expect_error(check, rig.tool("list", control=stale), NOT_RUNNING, "refuses connections")

    # Something that is not the protocol, or silence: exit 6, within the timeout.
    for name, reply, words in (("garbage", b"hello\n", "not a JSON object"),
                               ("no-ok", b'{"result": {}}\n', "no boolean \"ok\""),
                               ("ebusy", b'{"ok":false,"error":"too many clients","errno":"EBUSY"}\n',
                                "too many clients (EBUSY)"),
                               ("closes", b"", "without a reply"),
                               ("silent", None, "timed out")):
        path = os.path.join(rig.work, f"fake-{name}.sock")
        fake = FakeDaemon(path, reply)
        try:
            r = rig.tool("--timeout", "0.5", "status", control=path)
            expect_error(check, r, PROTOCOL, words)
        finally:
            fake.close()
        if name == "silent":
            check.true(r.seconds < 5, f"the timeout is kept: {r.seconds:.1f} s")

    # The daemon goes away: from then on, "not running".
    rig.stop_client()
    rig.stop_daemon()
    expect_error(check, rig.tool("status"), NOT_RUNNING, "not running")


if __name__ == "__main__":
    main(test)
