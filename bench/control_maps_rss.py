#!/usr/bin/env python3
"""The daemon's peak memory for one long control answer: starts vfio-emud (FUSE, a temporary
directory) and the tool tests' mapping client with N mappings (up to 60,000 type1 maps of 4 KiB,
the rest as areas of one IOAS), then runs `vfio-emu --json maps` and prints the daemon's VmHWM
before and after, and the tool's own peak RSS (issue 12: before `maps` was paged, 300,000
mappings took the daemon from 84 to 541 MB).

    python3 bench/control_maps_rss.py build/cuse/vfio-emud build/tools/vfio-emu \\
        build/tests/tool/tool-mapping-client [N=300000]
"""
import os
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "tool"))
from harness import Rig  # noqa: E402

TYPE1_LIMIT = 60000  # type1 allows 65535 mappings per container (dma_entry_limit)


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def main():
    daemon, tool, client = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 300000
    opts = types.SimpleNamespace(daemon=daemon, tool=tool, client=client)
    with Rig(opts) as rig:
        rig.start_daemon()
        small = min(n, TYPE1_LIMIT)
        rig.start_client("--small", small, "--areas", max(n - small, 1), timeout=600)
        pid = rig.daemon.pid
        before = status_kib(pid, "VmHWM")
        start = time.monotonic()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", tool, "--control", rig.sock,
                            "--timeout", "60", "--json", "maps"],
                           capture_output=True, timeout=600, check=False)
        seconds = time.monotonic() - start
        rows = p.stdout.count(b'"source"')
        tool_kib = int(p.stderr.decode().strip().splitlines()[-1])
        print(f"{rows} mappings listed (exit {p.returncode}) in {seconds:.1f} s; daemon VmHWM "
              f"{before} -> {status_kib(pid, 'VmHWM')} KiB; vfio-emu max RSS {tool_kib} KiB")


if __name__ == "__main__":
    main()
