#!/usr/bin/env python3
"""Linux's own VFIO selftests (tools/testing/selftests/vfio), unmodified, under `vfio-emu run`.

    selftests.py --tool build/tools/vfio-emu [--cache DIR] [--device NAME=BDF ...]
                 [--binary NAME ...] [--timeout SECONDS] [--expectations FILE]

1. obtains linux-source-7.3 and linux-libc-dev 7.3 from Debian trixie-backports
   (debian_source.py; cached in --cache or $VFIO_EMU_CACHE);
2. builds every selftest binary with the selftests' own Makefile against those 7.3 uAPI
   headers (KHDR_INCLUDES), with no change to Linux's files;
3. runs each binary, time-bounded, under `vfio-emu run -- BINARY BDF` for each device of the
   built-in machine (by default the I/OAT engine 0000:00:05.0 and the passive testdev
   0000:00:01.0); every IOMMU mode variant is a case of the kselftest harness;
4. reads the TAP output per case and compares it with the expectations file.
Exit status: 0 when every case did what the file says, 1 otherwise, 77 (skip) when the Debian
archive cannot be reached (and nothing is cached) or the machine is not x86_64.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import expectations as exp_file  # noqa: E402
from debian_source import DebianLinux, SourceError, Unreachable  # noqa: E402
from kselftest_tap import parse  # noqa: E402

SERIES = "7.3"
SUITE = "trixie-backports"
# The built-in machine (README, "The built-in machine"): group 5's I/OAT engine is the device the
# selftests have a driver for; group 1's testdev has none, so the tests that only need a VFIO
# device run the generic paths there (and a BAR of plain memory). The pair (groups 1 and 2, one
# VT-d unit) is for the binaries that take several devices: they set them up in parallel threads
# on one container or iommufd.
DEFAULT_DEVICES = {"ioat": "0000:00:05.0", "testdev": "0000:00:01.0",
                   "testdev-pair": "0000:00:01.0,0000:00:02.0"}
MULTI_DEVICE_BINARIES = {"vfio_pci_device_init_perf_test"}
SKIP_EXIT = 77

# What the build needs, and which Debian 12 package gives it.
NEEDED = {"make": "make", "gcc": "gcc", "xz": "xz-utils", "dpkg-deb": "dpkg", "tar": "tar",
          "apt-get": "apt", "flock": "util-linux", "timeout": "coreutils"}


def log(*args) -> None:
    print(*args, flush=True)


def preflight() -> list[str]:
    missing = sorted({pkg for tool, pkg in NEEDED.items() if shutil.which(tool) is None})
    if shutil.which("gcc"):
        probe = subprocess.run(["gcc", "-E", "-x", "c", "-"], input="#include <uuid/uuid.h>\n"
                               "#include <stdio.h>\n", capture_output=True, text=True)
        if probe.returncode != 0:
            missing.append("uuid-dev (and libc6-dev)")
    return missing


def build(source_dir: Path, headers: Path, out: Path, jobs: int, lock: str | None,
          timeout: int) -> None:
    multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                               text=True).stdout.strip() or "x86_64-linux-gnu"
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["make", "-C", str(source_dir / "tools/testing/selftests/vfio"), f"OUTPUT={out}",
           f"KHDR_INCLUDES=-isystem {headers} -isystem {headers / multiarch}", f"-j{jobs}"]
    if lock:
        cmd = ["flock", lock] + cmd
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SourceError(f"building the selftests took more than {timeout} s") from e
    if r.returncode != 0:
        raise SourceError("building the selftests failed:\n" + (r.stdout + r.stderr)[-3000:])


def binaries(source_dir: Path) -> list[str]:
    makefile = (source_dir / "tools/testing/selftests/vfio/Makefile").read_text()
    return re.findall(r"^TEST_GEN_PROGS\s*\+=\s*(\S+)", makefile, re.M)


def run_one(tool: str, binary: Path, bdfs: list[str], timeout: int
            ) -> tuple[str, int | None, float]:
    """Output (stdout+stderr), exit status (None: timed out), seconds."""
    cmd = ["timeout", "--kill-after=10", str(timeout), tool, "run", "--", str(binary), *bdfs]
    start = time.monotonic()
    # Its own session: if even `timeout` does not end it, the whole group is ended by its id.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout + 30)
        code: int | None = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        code = None
    elapsed = time.monotonic() - start
    if code in (124, 137) and elapsed >= timeout:
        code = None
    return out.decode(errors="replace"), code, elapsed


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", required=True, help="the vfio-emu binary")
    ap.add_argument("--cache", default=None,
                    help="download/build cache (default: $VFIO_EMU_CACHE, else ./linux-selftests-cache)")
    ap.add_argument("--expectations", default=str(here / "expectations.txt"))
    ap.add_argument("--device", action="append", default=[], metavar="NAME=BDF[,BDF...]",
                    help="several BDFs: only for the binaries that take several devices")
    ap.add_argument("--binary", action="append", default=[], help="run only these binaries")
    ap.add_argument("--timeout", type=int,
                    default=int(os.environ.get("VFIO_EMU_SELFTESTS_TIMEOUT", "300")),
                    help="seconds per binary (default 300)")
    ap.add_argument("--build-lock", default=os.environ.get("VFIO_EMU_BUILD_LOCK"),
                    help="flock this file around the build (shared machines)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()

    if platform.machine() != "x86_64":
        log(f"SKIP: vfio-emu run serves GET_DEVICE_FD for x86_64 programs only "
            f"(this is {platform.machine()})")
        return SKIP_EXIT
    missing = preflight()
    if missing:
        log("FAIL: the selftests' build needs: " + ", ".join(missing) +
            " (scripts/setup.sh installs them)")
        return 1
    devices = dict(d.split("=", 1) for d in args.device) if args.device else DEFAULT_DEVICES
    cache = Path(os.environ.get("VFIO_EMU_CACHE") or args.cache or "linux-selftests-cache")
    cache = cache.resolve()
    try:
        table = exp_file.load(Path(args.expectations))
    except (OSError, exp_file.ExpectationsError) as e:
        log(f"FAIL: {e}")
        return 1

    # 1. the sources
    t0 = time.monotonic()
    try:
        tree = DebianLinux(cache, SERIES, SUITE, mirror=os.environ.get("VFIO_EMU_DEBIAN_MIRROR"),
                           keyring=os.environ.get("VFIO_EMU_DEBIAN_KEYRING"), log=log).obtain()
    except Unreachable as e:
        log(f"SKIP: the Debian archive is unreachable, and nothing is cached in {cache}: {e}")
        return SKIP_EXIT
    except SourceError as e:
        log(f"FAIL: {e}")
        return 1
    t_obtain = time.monotonic() - t0
    log(f"{tree.note}: {tree.downloaded_bytes / 1e6:.1f} MB downloaded in {tree.download_s:.1f} s "
        f"(apt), extracted in {tree.extract_s:.1f} s; cache {cache}")

    # 2. the build
    out = cache / tree.version / "build"
    t0 = time.monotonic()
    try:
        build(tree.source_dir, tree.headers_dir, out, args.jobs, args.build_lock, 1800)
    except SourceError as e:
        log(f"FAIL: {e}")
        return 1
    names = binaries(tree.source_dir)
    if args.binary:
        unknown = set(args.binary) - set(names)
        if unknown:
            log(f"FAIL: no such selftest: {', '.join(sorted(unknown))} (have: {', '.join(names)})")
            return 1
        names = [n for n in names if n in args.binary]
    for n in names:
        if not os.access(out / n, os.X_OK):
            log(f"FAIL: the build made no {out / n}")
            return 1
    t_build = time.monotonic() - t0  # with the wait for --build-lock, if any
    log(f"built the selftests in {t_build:.1f} s; running {' '.join(names)}")

    # 3. the runs
    logs = cache / tree.version / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows = []
    t_runs = time.monotonic()
    for device, bdf in devices.items():
        for name in names:
            bdfs = bdf.split(",")
            if len(bdfs) > 1 and name not in MULTI_DEVICE_BINARIES:
                continue
            output, code, secs = run_one(args.tool, out / name, bdfs, args.timeout)
            (logs / f"{device}-{name}.log").write_text(output)
            result = parse(name, output, code, args.timeout)
            new = exp_file.compare(device, result, table)
            rows += new
            status = "timed out" if code is None else f"exit {code}"
            log(f"ran {name} on {device} ({bdf}): {status}, {len(result.cases)} cases, "
                f"{secs:.1f} s; output in {logs / f'{device}-{name}.log'}")
            if any(r.verdict == "MISMATCH" for r in new):
                log("---- its output (last 60 lines):")
                log("\n".join(output.splitlines()[-60:]))
                log("----")
    t_runs = time.monotonic() - t_runs

    # 4. the table
    log("")
    log(f"{'device':12} {'result':7} {'expected':8} {'verdict':8} case (binary / name): reason")
    for r in rows:
        expected = r.expected.expect if r.expected else "-"
        reason = r.case.reason or (r.expected.reason if r.expected and r.case.status != "pass"
                                   else "")
        extra = f"  <-- {r.why}" if r.why else ""
        log(f"{r.device:12} {r.case.status:7} {expected:8} {r.verdict:8} {r.binary} / "
            f"{r.case.name}{': ' + reason if reason else ''}{extra}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.case.status] = counts.get(r.case.status, 0) + 1
    mismatches = [r for r in rows if r.verdict == "MISMATCH"]
    log("")
    log(f"{len(rows)} results: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) +
        f"; {len(mismatches)} differ from {args.expectations}")
    log(f"time: sources {t_obtain:.1f} s, build {t_build:.1f} s, runs {t_runs:.1f} s "
        f"({len(names)} binaries, {len(devices)} devices)")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
