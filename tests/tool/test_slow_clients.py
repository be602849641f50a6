#!/usr/bin/env python3
"""Slow clients cannot hold the control socket (issue 12): a request line must arrive whole
within --control-request-timeout of the connection (or of the previous reply), and a reply must
be taken within as long. Before the fix the 30 s timeout restarted on every byte, so the 32
client slots could be held forever by connections sending one byte every 20 s.

The daemon runs with a 2 s request timeout so that the test is quick."""

import os
import socket
import threading
import time

from harness import Control, main

TIMEOUT = 2.0       # --control-request-timeout
SLACK = 8.0         # scheduling on a loaded machine; far less than "never"
MAX_CLIENTS = 32


class Trickler:
    """A connection that sends half a request and then one space every 0.25 s, forever."""

    def __init__(self, path):
        self.conn = Control(path, timeout=1)
        self.opened = time.monotonic()
        self.closed_at = None
        self.replies = []
        self.conn.send(b'{"cmd":"status"')
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        deadline = self.opened + TIMEOUT + SLACK + 5
        while time.monotonic() < deadline:
            reply = self.conn.line(timeout=0.25)
            if reply is not None:
                self.replies.append(reply)
            if self.conn.eof or not self.conn.send(b" "):
                self.closed_at = time.monotonic()
                # What the daemon said before closing may still be unread.
                while (reply := self.conn.line(timeout=1)) is not None:
                    self.replies.append(reply)
                return


def test(rig, check):
    # Every slot taken by a trickling client; the next one is turned away.
    tricklers = [Trickler(rig.sock) for _ in range(MAX_CLIENTS)]
    started = time.monotonic()
    for t in tricklers:
        t.thread.start()
    time.sleep(0.3)
    extra = Control(rig.sock, timeout=5)
    reply = extra.line()  # said at once, before any request (which could meet a closed socket)
    check.expect(reply and reply.get("errno"), "EBUSY", "the 33rd client while 32 trickle")
    extra.close()

    # A normal request gets through once the trickling clients' time is up.
    answered = None
    while time.monotonic() < started + TIMEOUT + SLACK + 10:
        r = rig.tool("--timeout", "1", "status")
        if r.rc == 0:
            answered = time.monotonic() - started
            break
        time.sleep(0.2)
    check.true(answered is not None and answered <= TIMEOUT + SLACK,
               f"status answered within {TIMEOUT} s + {SLACK} s of 32 trickling clients "
               f"(after {answered if answered is None else round(answered, 1)} s)")

    # Each trickling client was dropped, after the request timeout, with a last word.
    for t in tricklers:
        t.thread.join(TIMEOUT + SLACK + 10)
    dropped = [t.closed_at - t.opened for t in tricklers if t.closed_at is not None]
    check.expect(len(dropped), MAX_CLIENTS, "every trickling client is dropped")
    check.true(all(TIMEOUT - 0.5 <= d <= TIMEOUT + SLACK for d in dropped),
               f"dropped {TIMEOUT} s after connecting (after {sorted(round(d, 1) for d in dropped)} s)")
    check.true(all([r.get("errno") for r in t.replies] == ["ETIMEDOUT"] for t in tricklers),
               f"each got one ETIMEDOUT reply: {[t.replies for t in tricklers][:2]}")

    # A silent connection is dropped too.
    idle = Control(rig.sock, timeout=TIMEOUT + SLACK)
    reply = idle.line()
    check.expect(reply and reply.get("errno"), "ETIMEDOUT", "an idle connection: ETIMEDOUT")
    check.true(idle.closed(timeout=SLACK), "an idle connection is closed")

    # A client within the rules is served: a request in pieces, then a pause before the next
    # one (the time counts from the previous reply).
    c = Control(rig.sock, timeout=5)
    for piece in (b'{"cmd":', b'"sta', b'tus"}\n'):
        c.send(piece)
        time.sleep(TIMEOUT / 4)
    reply = c.line()
    check.true(reply and reply.get("ok") is True, f"a request sent in pieces: {reply!r}")
    for _ in range(3):
        time.sleep(TIMEOUT * 0.6)
        reply = c.request({"cmd": "status"})
        check.true(reply and reply.get("ok") is True, f"a request after a pause: {reply!r}")
    c.close()

    # A reader that does not take its replies is dropped: 20000 pipelined requests whose
    # replies (~4 MB) do not fit in the socket buffers.
    count = 20000
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(rig.sock)
    sender = threading.Thread(target=lambda: send_quietly(s, b'{"cmd":"status"}\n' * count),
                              daemon=True)
    sender.start()
    time.sleep(TIMEOUT + SLACK / 2)
    replies = read_until_closed(s, timeout=SLACK + 10)
    check.true(replies is not None and replies < count,
               f"a reader that does not read is dropped ({replies} of {count} replies)")
    s.close()

    rig.daemon_alive(check, "after the slow clients")


def send_quietly(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass


def read_until_closed(s, timeout):
    """Reply lines received until the daemon closes the connection; None if it does not."""
    s.settimeout(1)
    deadline = time.monotonic() + timeout
    lines = 0
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError:
            return lines
        if not chunk:
            return lines
        lines += chunk.count(b"\n")
    return None


if __name__ == "__main__":
    main(test, with_client=False, daemon_args=("--control-request-timeout", TIMEOUT))
