#!/usr/bin/env python3
"""The chaos test, end to end (README "Tests"; issue 12).

1. Starts vfio-emud in FUSE mode on a private directory and control socket (tests/tool/harness.py),
   with the chaos topology, and a second daemon whose nodes serve as foreign fd arguments.
2. After a short settle, measures the daemon: open fds (/proc/PID/fd), threads (/proc/PID/task),
   VmRSS.
3. Runs the chaos program (it-chaos: processes x threads of random, mutated and valid calls,
   forks, SIGKILLs and respawns; bounded by time and count; it reaps every process it started),
   and meanwhile asks the daemon what it holds with the tool (list, stats, maps, trace, check)
   again and again: each answer must come, as valid JSON; `check` must find no difference
   between a page table and its records even while they change.
4. With every client gone, waits for the daemon to release every file (FUSE releases after
   close() returns), lets it settle, and checks with the `vfio-emu` tool that it holds nothing:
   `check` passes; `list` shows no open file, container, iommufd context or domain, no group
   held, no device opened or bound; `maps` is empty; `stats` shows no domain, no table memory and
   no locked-memory charge; `trace` and `faults` of everything the run did can be read.
5. Does 3-4 again (--rounds, default 2, share --seconds). The daemon's fds, threads and RSS after
   the first round must be within a constant slack of what they were after start (thread pools
   and caches it starts on first use), and every later round must add nothing beyond a small
   slack to the first: what grows with the load is a leak.
6. Prints the counts (ioctls, errors by errno, kills, forks), what never succeeded, and the
   daemon's resources after start and after each round.

    python3 chaos.py --daemon build/cuse/vfio-emud --tool build/tools/vfio-emu \\
        --chaos build/tests/integration/it-chaos [--config tests/integration/chaos_machine.toml]
        [--seconds 20] [--rounds 2] [--processes 4] [--threads 4] [--fd-passing-threads 2]
        [--seed N] [--no-foreign] [--stall-foreign] [-- EXTRA CHAOS ARGS]

--fd-passing-threads (with `-- --fd-passing-percent P`) and --stall-foreign turn on inputs of
known bugs (fixed on main since): many threads passing fds at once (64 deadlocked the daemon),
and fds of a stalled FUSE filesystem (the second daemon, SIGSTOPped for the run).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tool"))
from harness import Checker, Rig, Stopped  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--daemon", required=True)
    p.add_argument("--tool", required=True)
    p.add_argument("--chaos", required=True, help="the it-chaos program")
    p.add_argument("--config", help="topology file for the daemon under test")
    p.add_argument("--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS", 20)),
                   help="of chaos in all, shared by the rounds")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--fd-passing-threads", type=int, default=2,
                   help="per process; keep processes x this below ~16 (known deadlock at 64)")
    p.add_argument("--seed", help="the chaos program's seed (default: from the clock)")
    p.add_argument("--no-foreign", action="store_true",
                   help="no second daemon: no foreign node fds as arguments")
    p.add_argument("--stall-foreign", action="store_true",
                   help="SIGSTOP the second daemon for the run (known bug: wedges a worker)")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds to let the daemon settle before each measurement")
    # What a daemon may hold after its first round that it did not after start: what it starts
    # on first use (the exit watcher's thread, epoll and eventfd; 4 deferred-call threads and a
    # closer thread for fd arguments), idle FUSE workers (libfuse keeps up to 4), malloc arenas
    # of the threads that served the run.
    p.add_argument("--slack-fds", type=int, default=4)
    p.add_argument("--slack-threads", type=int, default=10)
    p.add_argument("--slack-rss-mib", type=float, default=16)
    # What a later round may add to the first: nothing but noise.
    p.add_argument("--growth-fds", type=int, default=2)
    p.add_argument("--growth-threads", type=int, default=2)
    p.add_argument("--growth-rss-mib", type=float, default=8)
    p.add_argument("extra", nargs="*", help="more arguments for the chaos program (after --)")
    opts = p.parse_args()
    opts.client = None  # harness.Rig's mapping client: not used here
    return opts


# ---- the daemon's resources --------------------------------------------------------------------

def resources(pid):
    """Open fds, threads and VmRSS (KiB) of process `pid`."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"fds": fds, "threads": threads, "rss_kib": rss}


def fd_kinds(pid):
    """What the daemon's fds are, counted by kind ("anon_inode:[pidfd]", "/proc/*/maps", ...)."""
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/proc/") and target.endswith("/maps"):
            target = "/proc/*/maps"
        elif target.startswith("socket:"):
            target = "socket"
        elif target.startswith("pipe:"):
            target = "pipe"
        kinds[target] = kinds.get(target, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def thread_states(pid):
    """One line per thread of `pid`: name, state, where it waits in the kernel (for hangs)."""
    lines = []
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/comm") as f:
                comm = f.read().strip()
            with open(f"{base}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"{base}/wchan") as f:
                wchan = f.read().strip()
            stack = ""
            try:
                with open(f"{base}/stack") as f:
                    stack = " <- ".join(line.split()[1].split("+")[0]
                                        for line in f.read().splitlines()[:6])
            except OSError:
                pass
        except OSError:
            continue
        lines.append(f"  {tid} {comm} {state} wchan={wchan} {stack}")
    return lines


# ---- the checks --------------------------------------------------------------------------------

def wait_for_release(rig, check, timeout=10.0):
    """FUSE sends RELEASE after close() returned: wait until the daemon counts no open file."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = rig.tool("--json", "status")
        if r.rc == 0:
            last = json.loads(r.out)["counts"]
            if last["open_files"] == 0:
                return
        time.sleep(0.2)
    check.true(False, f"the daemon still counts open files {timeout} s after the last client "
                      f"exited: {last}")


def check_nothing_held(rig, check):
    lst = rig.tool_json(check, "list")
    if lst is not None:
        check.expect(lst["files"], [], "list: open files")
        check.expect(lst["containers"], [], "list: containers")
        check.expect(lst["iommufd"], [], "list: iommufd contexts")
        check.expect(lst["domains"], [], "list: domains")
        held = [g for g in lst["groups"]
                if g["open_by"] is not None or g["container"] is not None
                or g["iommufd"] is not None]
        check.expect(held, [], "list: groups still open or attached")
        used = [d for d in lst["devices"] if d["cdev_opens"] != 0 or d["bound"] is not None]
        check.expect(used, [], "list: devices still opened or bound")
        busy_units = [(u["name"], u["domains_in_use"]) for u in lst["units"]
                      if u.get("domains_in_use", 0) != 0]
        check.expect(busy_units, [], "list: VT-d domain ids in use")
    maps = rig.tool_json(check, "maps")
    if maps is not None:
        check.expect(maps["mappings"], [], "maps: mappings")
    stats = rig.tool_json(check, "stats")
    if stats is not None:
        check.expect(stats["domains"], [], "stats: domains")
        tables = [(u["name"], u["domains"], u["entries"], u["tables"], u["table_bytes"])
                  for u in stats["units"]
                  if (u["domains"], u["entries"], u["tables"], u["table_bytes"]) != (0, 0, 0, 0)]
        check.expect(tables, [], "stats: units with domains, entries or table memory")
        if check.true("locked_memory" in stats, "stats: has locked_memory"):
            check.expect(stats["locked_memory"], [], "stats: locked-memory charges")
    r = rig.tool("--json", "check")
    check.expect(r.rc, 0, f"check: exit code ({r.out.strip()[:300]})")
    # Everything the run left in the trace and fault logs, as JSON and for people.
    for args in (["--json", "trace", "--max", "100000"], ["trace", "--max", "100000"],
                 ["--json", "faults"], ["stats"], ["list"]):
        r = rig.tool(*args, timeout=60)
        check.expect(r.rc, 0, f"vfio-emu {' '.join(args)}: exit code ({r.err.strip()[:300]})")
    return stats


class Monitor:
    """Runs the tool against the daemon again and again while the chaos runs."""

    COMMANDS = (["list"], ["stats"], ["maps"], ["trace", "--max", "200"], ["check"],
                ["faults"], ["status"])

    def __init__(self, rig):
        self.rig = rig
        self.stop = threading.Event()
        self.runs = 0
        self.failures = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            for args in self.COMMANDS:
                if self.stop.is_set():
                    return
                r = self.rig.tool("--json", *args, timeout=30)
                self.runs += 1
                ok = r.rc == 0
                if ok:
                    try:
                        result = json.loads(r.out)
                        ok = args[0] != "check" or result["ok"]
                    except ValueError:
                        ok = False
                if not ok and len(self.failures) < 5:
                    self.failures.append(f"{r!r}: {r.out.strip()[:600]}")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(60)
        return False


def log_levels(log):
    counts = {}
    for line in log.splitlines():
        for level in ("warning", "error", "critical"):
            if f"] [{level}] " in line:
                counts[level] = counts.get(level, 0) + 1
    return counts


def run_chaos(opts, rig, foreign, check, seconds):
    """Runs the chaos program for `seconds`; returns its summary (dict) or None."""
    args = [opts.chaos, rig.dev, "--seconds", str(seconds), "--processes",
            str(opts.processes), "--threads", str(opts.threads), "--fd-passing-threads",
            str(opts.fd_passing_threads), *opts.extra]
    if opts.seed is not None:
        args += ["--seed", opts.seed]
    if foreign is not None:
        args += ["--foreign-dir", foreign.dev]
        if opts.stall_foreign:
            args += ["--stall-pid", str(foreign.daemon.pid)]
    env = dict(os.environ)
    env.pop("VFIO_EMU_DEV2", None)
    # The program bounds itself (--seconds, then at most ~30 s of stopping and reaping).
    limit = seconds + 90
    print("chaos.py: running " + " ".join(args), flush=True)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=30)
        check.true(False, f"the chaos program did not finish within {limit:.0f} s")
    except Stopped:
        proc.kill()
        proc.wait(10)
        raise
    summary = None
    for line in out.splitlines():
        if line.startswith("chaos-summary "):
            summary = json.loads(line[len("chaos-summary "):])
        else:
            print(line)
    check.expect(proc.returncode, 0, "the chaos program's exit status (PROBLEM lines above)")
    check.true(summary is not None, "the chaos program printed its summary")
    if summary is not None:
        check.true(summary["ioctls"] > 0, "the chaos program issued ioctls")
    return summary


def one_round(opts, rig, foreign, check, seconds):
    """A chaos run and the checks after it; returns its summary and the daemon's resources."""
    pid = rig.daemon.pid
    with Monitor(rig) as monitor:
        summary = run_chaos(opts, rig, foreign, check, seconds)
    print(f"chaos.py: the tool ran {monitor.runs} times during the run")
    check.expect(monitor.failures, [], "tool calls during the run that failed")
    if rig.daemon.poll() is not None:
        check.true(False, f"the daemon exited ({rig.daemon.returncode}) during the run")
        raise RuntimeError("the daemon is gone")
    if check.failures:
        print("chaos.py: the daemon's threads after the failed run:")
        print("\n".join(thread_states(pid)))
    wait_for_release(rig, check)
    time.sleep(opts.settle)
    stats = check_nothing_held(rig, check)
    if stats is not None:
        # What the run reached: the daemon's own counts per command.
        calls = sum(c["calls"] for c in stats["ioctls"])
        never = sorted(f"{c['command']}/{c['node']}" for c in stats["ioctls"]
                       if c["calls"] == c["errors"])
        print(f"chaos.py: the daemon has served {calls} ioctls of {len(stats['ioctls'])} "
              f"commands; never successful: {never}")
    if summary is not None:
        print(f"chaos.py: {summary['ioctls']} ioctls ({summary['fd_passing_ioctls']} passing "
              f"fds), {summary['kills']} processes killed, {summary['forks']} forks; ioctl "
              f"results {summary['ioctl_results']}")
    return summary, resources(pid), fd_kinds(pid)


def compare(check, what, before, after, fds, threads, rss_mib, kinds):
    check.true(after["fds"] <= before["fds"] + fds,
               f"{what}: daemon fds {before['fds']} -> {after['fds']} (slack {fds}); {kinds}")
    check.true(after["threads"] <= before["threads"] + threads,
               f"{what}: daemon threads {before['threads']} -> {after['threads']} (slack "
               f"{threads})")
    slack_kib = int(rss_mib * 1024)
    check.true(after["rss_kib"] <= before["rss_kib"] + slack_kib,
               f"{what}: daemon VmRSS {before['rss_kib']} -> {after['rss_kib']} KiB (slack "
               f"{slack_kib} KiB)")


def main():
    opts = parse_args()
    check = Checker("chaos")
    try:
        with Rig(opts) as rig, Rig(opts) as second:
            foreign = None
            try:
                if not opts.no_foreign:
                    second.start_daemon()
                    foreign = second
                rig.start_daemon(*(["--config", opts.config] if opts.config else []))
                pid = rig.daemon.pid
                time.sleep(opts.settle)
                start = resources(pid)
                print(f"chaos.py: daemon pid {pid} after start: {start}, fds {fd_kinds(pid)}")
                rounds = []
                for n in range(max(1, opts.rounds)):
                    print(f"chaos.py: round {n + 1}", flush=True)
                    summary, res, kinds = one_round(opts, rig, foreign, check,
                                                    opts.seconds / max(1, opts.rounds))
                    print(f"chaos.py: daemon pid {pid} after round {n + 1}: {res}, fds {kinds}")
                    if n == 0:
                        compare(check, "round 1 against the start", start, res, opts.slack_fds,
                                opts.slack_threads, opts.slack_rss_mib, kinds)
                    else:
                        compare(check, f"round {n + 1} against round 1", rounds[0], res,
                                opts.growth_fds, opts.growth_threads, opts.growth_rss_mib, kinds)
                    rounds.append(res)
                levels = log_levels(rig.daemon_log())
                print(f"chaos.py: daemon log lines by level: {levels}")
                check.expect(levels.get("critical", 0) + levels.get("error", 0), 0,
                             "error/critical lines in the daemon log")
            except Exception:
                print("---- daemon log (last 40 lines) ----", file=sys.stderr)
                print("\n".join(rig.daemon_log().splitlines()[-40:]), file=sys.stderr)
                raise
            finally:
                if foreign is not None and foreign.daemon is not None:
                    foreign.daemon.send_signal(signal.SIGCONT)  # if --stall-foreign left it stopped
            if check.failures:
                print("---- daemon log: warnings and errors (last 30) ----", file=sys.stderr)
                bad = [line for line in rig.daemon_log().splitlines()
                       if "] [warning] " in line or "] [error] " in line
                       or "] [critical] " in line]
                print("\n".join(bad[-30:]), file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - any failure of the rig, or Stopped, fails the test
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        check.done()
        sys.exit(1)
    sys.exit(check.done())


if __name__ == "__main__":
    main()
