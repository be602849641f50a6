#!/usr/bin/env python3
"""Control connections that come and go leave nothing behind in the daemon (issue 12): after
thousands of short connections (a `status` each, some closing at once or mid-request, some in
bursts of many at a time) its thread count and its number of memory mappings are back to about
where they were. Before the fix every connection kept a finished thread (+1 thread, +2 VMAs)
until the daemon stopped, and after ~32,700 of them it aborted."""

import os
import socket
import threading
import time

from harness import Control, main

ROUNDS = 3000
SECONDS = 60        # a loaded machine does fewer rounds instead of failing
MIN_ROUNDS = 100    # even then, far more than the slack below
THREAD_SLACK = 2    # a connection still being torn down
VMA_SLACK = 16      # a few thread stacks cached by the allocator, a malloc arena or two


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def vmas(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for _ in f)


def one_connection(rig, kind):
    c = Control(rig.sock, timeout=10)
    try:
        if kind == "status":
            r = c.request({"cmd": "status"})
            return r is not None and r.get("ok") is True
        if kind == "half":
            c.send(b'{"cmd":"sta')
        return True
    finally:
        c.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def settle(pid, threads_limit, vmas_limit, timeout=10):
    """Waits until the counts are within the limits (teardown is asynchronous); the counts."""
    deadline = time.monotonic() + timeout
    while True:
        t, v = threads(pid), vmas(pid)
        if (t <= threads_limit and v <= vmas_limit) or time.monotonic() > deadline:
            return t, v
        time.sleep(0.1)


def burst(rig, n):
    """n connections open at once, each asking `status`; how many got their answer."""
    results = []
    lock = threading.Lock()

    def run():
        try:
            ok = one_connection(rig, "status")
        except OSError:
            ok = False
        with lock:
            results.append(ok)

    ts = [threading.Thread(target=run) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return sum(results)


def test(rig, check):
    pid = rig.daemon.pid
    # Warm up: the first connections create what stays anyway (a cached stack, an arena).
    for _ in range(50):
        one_connection(rig, "status")
    burst(rig, 16)
    time.sleep(0.5)
    threads0, vmas0 = settle(pid, 0, 0, timeout=0)
    rss0 = rss_kib(pid)

    kinds = ["status"] * 8 + ["close", "half"]
    rounds, answered = 0, 0
    deadline = time.monotonic() + SECONDS
    while rounds < ROUNDS and time.monotonic() < deadline:
        kind = kinds[rounds % len(kinds)]
        try:
            ok = one_connection(rig, kind)
        except (OSError, socket.timeout) as e:
            check.true(False, f"connection {rounds} ({kind}): {e}")
            break
        if kind == "status":
            answered += ok
        rounds += 1
        if rounds % 500 == 0:
            got = burst(rig, 20)
            check.expect(got, 20, f"a burst of 20 connections after {rounds}: answered")
    check.expect(answered, sum(kinds[i % len(kinds)] == "status" for i in range(rounds)),
                 "every status answered")
    print(f"{rounds} connections in {SECONDS - max(0, deadline - time.monotonic()):.1f} s, "
          f"{answered} status answers")
    check.true(rounds >= MIN_ROUNDS, f"at least {MIN_ROUNDS} connections ({rounds})")

    t, v = settle(pid, threads0 + THREAD_SLACK, vmas0 + VMA_SLACK)
    print(f"threads {threads0} -> {t}, VMAs {vmas0} -> {v}, RSS {rss0} -> {rss_kib(pid)} KiB")
    check.true(t <= threads0 + THREAD_SLACK,
               f"threads after {rounds} connections: {threads0} -> {t}")
    check.true(v <= vmas0 + VMA_SLACK, f"VMAs after {rounds} connections: {vmas0} -> {v}")
    rig.daemon_alive(check, f"after {rounds} connections")


if __name__ == "__main__":
    main(test, with_client=False)
