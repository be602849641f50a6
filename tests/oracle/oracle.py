#!/usr/bin/env python3
"""Real Linux as the oracle: boots each kernel under QEMU (TCG, emulated Intel IOMMU) with QEMU's
pci-testdev bound to vfio-pci, runs the transcript program against real /dev/vfio, and writes
tests/oracle/golden/<kernel>.txt (README.md here).

    oracle.py --transcript build/tests/oracle/oracle-transcript [--cache DIR] [--kernel NAME ...]
              [--daemon build/cuse/vfio-emud] [--golden-dir DIR] [--timeout SECONDS]

With --daemon, the VM of each kernel that has /dev/cuse also starts vfio-emud in CUSE mode and
runs the transcript against its character devices (`--arg-access direct`, then `retry`); those
transcripts are kept in CACHE/logs/ and compared with the same transcript over FUSE on this
machine (`vfio-emu run`, with --tool): the transports must answer alike, except where a
`[[transport]]` entry of differences.toml names the README subsection that says why.

Never touches the host's devices and needs no KVM. Exit status: 0 when every golden was
written; 1 on a failure; 2 when a prerequisite (QEMU, busybox, the archive) is missing.
"""
from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402
import kernels as kmod  # noqa: E402
from kernels import KERNELS, SourceError, Unreachable, log  # noqa: E402

BDF = "0000:00:01.0"
QEMU = "qemu-system-x86_64"
# The machine (linux-in-qemu.md): pci-testdev (1b36:0005) at 00:01.0 lands in IOMMU group 1 as
# in vfio-emu's built-in machine; edu (1234:11e8) at 00:02.0 in group 2. aw-bits=48 and
# snoop-control=on make the VT-d unit look like the built-in 48-bit dmar0. The transcript goes to
# the second serial port, so that kernel messages on the console cannot mix into it.
QEMU_ARGS = ["-nodefaults", "-machine", "q35,accel=tcg,kernel-irqchip=split", "-cpu", "max",
             "-smp", "1", "-m", "1024",
             "-device", "intel-iommu,intremap=on,caching-mode=on,aw-bits=48,snoop-control=on",
             "-device", "pci-testdev,addr=01.0", "-device", "edu,addr=02.0"]
APPEND = "console=ttyS0 intel_iommu=on panic=-1 quiet loglevel=3"
# The no-IOMMU boot: the same machine without its VT-d unit, so pci-testdev has no IOMMU group
# and, with vfio's enable_unsafe_noiommu_mode set before the bind, gets /dev/vfio/noiommu-N (and,
# on 7.3, the cdev noiommu-vfioN). The init script sees `oracle_mode=noiommu`.
_VTD = QEMU_ARGS.index(next(a for a in QEMU_ARGS if a.startswith("intel-iommu")))
NOIOMMU_QEMU_ARGS = QEMU_ARGS[:_VTD - 1] + QEMU_ARGS[_VTD + 1:]  # without `-device intel-iommu,...`
NOIOMMU_APPEND = "console=ttyS0 intel_iommu=off oracle_mode=noiommu panic=-1 quiet loglevel=3"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
out=/dev/ttyS1
if [ -d /lib/modules ]; then
  for m in vfio vfio_iommu_type1 vfio-pci cuse; do modprobe $m || echo "oracle-init: modprobe $m failed"; done
fi
BDF=@BDF@
if grep -q oracle_mode=noiommu /proc/cmdline; then
  # vfio's parameter is writable at run time; it must be set before vfio-pci probes the device.
  echo Y > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode ||
    echo "oracle-init: cannot set enable_unsafe_noiommu_mode" > $out
  echo vfio-pci > /sys/bus/pci/devices/$BDF/driver_override
  echo $BDF > /sys/bus/pci/drivers_probe
  group=$(basename "$(readlink /sys/bus/pci/devices/$BDF/iommu_group)")
  cdev=$(ls /sys/bus/pci/devices/$BDF/vfio-dev 2>/dev/null | head -1)
  echo "@@ uname $(uname -r) noiommu group $group cdev ${cdev:-none}" > $out
  echo "@@ begin linux-noiommu" > $out
  /transcript --noiommu /dev/vfio/noiommu-$group $BDF /dev/vfio/devices/${cdev:-noiommu-vfio0} \
    > $out 2>&1
  echo "@@ end linux-noiommu rc=$?" > $out
  echo "@@ done" > $out
  poweroff -f
fi
echo vfio-pci > /sys/bus/pci/devices/$BDF/driver_override
echo $BDF > /sys/bus/pci/drivers_probe
group=$(basename "$(readlink /sys/bus/pci/devices/$BDF/iommu_group)")
cdev=$(ls /sys/bus/pci/devices/$BDF/vfio-dev 2>/dev/null | head -1)
echo "@@ uname $(uname -r) group $group cdev ${cdev:-none}" > $out
echo "@@ begin linux" > $out
/transcript --group /dev/vfio/$group --bdf $BDF --cdev /dev/vfio/devices/${cdev:-vfio0} > $out 2>&1
echo "@@ end linux rc=$?" > $out
if [ -x /emu/vfio-emud ] && [ -e /dev/cuse ]; then
  for mode in direct retry; do
    LD_LIBRARY_PATH=/emu /emu/vfio-emud --transport cuse --cuse-prefix emu-$mode/ \
      --arg-access $mode --control /tmp/control-$mode.sock --foreground --log-level warn \
      2> /tmp/daemon-$mode.log &
    pid=$!
    for i in $(seq 100); do [ -e /dev/emu-$mode/vfio/devices/vfio4 ] && break; sleep 0.1; done
    echo "@@ begin cuse-$mode" > $out
    /transcript --container /dev/emu-$mode/vfio/vfio --group /dev/emu-$mode/vfio/1 --bdf $BDF \
      --iommufd /dev/emu-$mode/iommu --cdev /dev/emu-$mode/vfio/devices/vfio0 --no-group-device \
      > $out 2>&1
    echo "@@ end cuse-$mode rc=$?" > $out
    kill $pid; wait $pid
    echo "@@ daemon log cuse-$mode" > $out
    cat /tmp/daemon-$mode.log > $out
  done
fi
if [ -x /emu/vfio-emud ] && [ -e /dev/cuse ] && [ -f /emu/real_cuse_examples.sh ]; then
  echo "@@ begin cuse-examples" > $out
  LD_LIBRARY_PATH=/emu sh /emu/real_cuse_examples.sh /emu/vfio-emud /emu/examples/* > $out 2>&1
  echo "@@ end cuse-examples rc=$?" > $out
fi
echo "@@ done" > $out
poweroff -f
"""


def preflight(need_build: bool) -> list[str]:
    missing = []
    if shutil.which(QEMU) is None:
        missing.append(f"{QEMU} (apt-get install --no-upgrade qemu-system-x86)")
    if not Path("/bin/busybox").exists() or "statically" not in subprocess.run(
            ["file", "-L", "/bin/busybox"], capture_output=True, text=True).stdout:
        missing.append("a static /bin/busybox (apt-get install --no-upgrade busybox-static)")
    for tool, pkg in (("dpkg-deb", "dpkg"), ("apt-get", "apt"), ("xz", "xz-utils"),
                      ("file", "file")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} ({pkg})")
    if need_build:
        for tool, pkg in (("make", "make"), ("gcc", "gcc"), ("flex", "flex"), ("bison", "bison"),
                          ("bc", "bc"), ("flock", "util-linux")):
            if shutil.which(tool) is None:
                missing.append(f"{tool} ({pkg})")
        if not Path("/usr/include/libelf.h").exists():
            missing.append("libelf.h (libelf-dev)")
    return missing


def shared_libraries(binary: Path) -> list[Path]:
    """The shared libraries `binary` loads, and the dynamic loader (from ldd)."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    libs = []
    for line in r.stdout.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def build_initramfs(work: Path, kernel: kmod.Kernel, transcript: Path, daemon: Path | None,
                    examples: list[Path]) -> Path:
    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "proc", "sys", "dev", "tmp", "lib", "emu"):
        (root / d).mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin/busybox")
    shutil.copy(transcript, root / "transcript")
    init = root / "init"
    init.write_text(INIT.replace("@BDF@", BDF))
    init.chmod(0o755)
    if kernel.modules is not None:
        shutil.copytree(kernel.modules, root / "lib/modules")
    if daemon is not None:
        # The daemon and its shared libraries; the loader at the path the ELF names.
        shutil.copy(daemon, root / "emu/vfio-emud")
        for lib in shared_libraries(daemon):
            if lib.name.startswith("ld-linux"):
                dest = root / str(lib).lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(lib, dest)
            else:
                shutil.copy(lib, root / "emu" / lib.name)
        # The examples over real CUSE (tests/cuse/real_cuse_examples.sh, as the host's 'cuse'
        # suite runs them where /dev/cuse exists). They need only libc, copied above.
        if examples:
            shutil.copy(HERE.parent / "cuse" / "real_cuse_examples.sh", root / "emu")
            (root / "emu/examples").mkdir()
            for e in examples:
                shutil.copy(e, root / "emu/examples" / e.name)
    image = work / "initrd.gz"
    listing = subprocess.run(["find", "."], cwd=root, capture_output=True, text=True,
                             check=True).stdout
    cpio = subprocess.run(["/bin/busybox", "cpio", "-o", "-H", "newc"], cwd=root,
                          input=listing.encode(), capture_output=True, check=True).stdout
    image.write_bytes(gzip.compress(cpio, compresslevel=1))
    return image


def boot(kernel: kmod.Kernel, initrd: Path, work: Path, timeout: int,
         noiommu: bool = False) -> tuple[str, str, float]:
    """Boots (the no-IOMMU machine if `noiommu`); returns (the transcript port's text, the
    console's text, seconds)."""
    port = work / "ttyS1.txt"
    port.unlink(missing_ok=True)
    cmd = [QEMU, *(NOIOMMU_QEMU_ARGS if noiommu else QEMU_ARGS), "-kernel", str(kernel.vmlinuz),
           "-initrd", str(initrd), "-append", NOIOMMU_APPEND if noiommu else APPEND,
           "-serial", "stdio", "-serial", f"file:{port}", "-display", "none",
           "-monitor", "none", "-no-reboot"]
    t = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        console = r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise SourceError(f"{kernel.name}: no power-off in {timeout} s; console:\n{out[-3000:]}")
    text = port.read_text(errors="replace") if port.exists() else ""
    return text, console, time.monotonic() - t


def sections(text: str) -> dict[str, list[str]]:
    """The transcript port's `@@ begin NAME` ... `@@ end NAME rc=R` blocks."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.replace("\r", "").splitlines():
        m = re.match(r"@@ begin (\S+)$", line)
        if m:
            current = m.group(1)
            found[current] = []
            continue
        m = re.match(r"@@ end (\S+) rc=(\d+)$", line)
        if m and m.group(1) == current:
            found[current].append(f"@@ rc={m.group(2)}")
            current = None
            continue
        if current is not None:
            found[current].append(line)
    return found


def header(kernel: kmod.Kernel, uname_line: str) -> list[str]:
    qemu_version = subprocess.run([QEMU, "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0]

    def command(args: list[str], append: str) -> str:
        return " ".join(shlex.quote(c) for c in [
            QEMU, *args, "-kernel", "VMLINUZ", "-initrd", "INITRD", "-append", append, "-serial",
            "stdio", "-serial", "file:TRANSCRIPT", "-display", "none", "-monitor", "none",
            "-no-reboot"])
    return [f"# kernel: {kernel.release} ({kernel.package})",
            f"# guest: {uname_line}",
            f"# qemu: {qemu_version}",
            "# command: " + command(QEMU_ARGS, APPEND),
            "# noiommu.* lines (transcript --noiommu): " + command(NOIOMMU_QEMU_ARGS, NOIOMMU_APPEND),
            "# written by ./dev.sh oracle (tests/oracle/oracle.py); do not edit by hand"]


def compare_transports(kernel: str, name: str, cuse_lines: list[str], args, logs: Path) -> int:
    """vfio-emud over the VM's real CUSE against vfio-emud over FUSE here (`vfio-emu run`), the
    same transcript (device fd from the cdev: GET_DEVICE_FD needs `run`). Returns 1 on a
    difference, which is printed and kept in CACHE/logs/."""
    (logs / f"{kernel}.{name}.txt").write_text("\n".join(cuse_lines) + "\n")
    if not args.tool:
        log(f"{kernel}: {name}: {len(cuse_lines)} lines (no --tool: not compared with FUSE)")
        return 0
    r = subprocess.run(["timeout", "300", str(args.tool), "run", "--", str(args.transcript),
                        "--no-group-device"], capture_output=True, text=True)
    fuse_lines = r.stdout.splitlines() + [f"@@ rc={r.returncode}"]
    (logs / f"{kernel}.fuse.txt").write_text("\n".join(fuse_lines) + "\n")
    entries = compare.load_entries(args.differences, "transport")
    diffs = compare.differences({name: compare.parse("\n".join(cuse_lines))},
                                compare.parse("\n".join(fuse_lines)))
    unexplained = compare.explain(diffs, entries)
    log(f"{kernel}: {name}: {len(cuse_lines)} lines; {len(diffs)} differ from FUSE, "
        f"{len(diffs) - len(unexplained)} explained by [[transport]] entries of "
        f"{args.differences.name}")
    for e in entries:
        if e.matched:
            log(f"  entry {e.index}: {len(e.matched)} lines, README \"{e.readme}\"")
    if not unexplained:
        return 0
    log(f"{kernel}: {name}: unexplained (linux = CUSE, emu = FUSE; {logs}/{kernel}.{name}.txt):\n"
        + "\n".join(d.show() for d in unexplained))
    return 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transcript", type=Path, required=True)
    ap.add_argument("--daemon", type=Path, help="vfio-emud: also run over real CUSE in the VM")
    ap.add_argument("--tool", type=Path, help="vfio-emu: compare the CUSE transcript with FUSE's")
    ap.add_argument("--examples", type=Path,
                    help="with --daemon: run these example programs (a directory) over real CUSE")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "VFIO_EMU_ORACLE_CACHE", "/var/cache/vfio-emu-oracle")))
    ap.add_argument("--kernel", action="append", help="only these (6.1, 6.12, 7.3)")
    ap.add_argument("--golden-dir", type=Path, default=HERE / "golden")
    ap.add_argument("--differences", type=Path, default=HERE / "differences.toml")
    ap.add_argument("--timeout", type=int, default=600, help="per boot, seconds")
    args = ap.parse_args()

    if platform.machine() != "x86_64":
        print("oracle: needs an x86_64 host (the transcript is a static x86_64 binary)")
        return 2
    specs = [k for k in KERNELS if not args.kernel or k.name in args.kernel]
    missing = preflight(any(k.source for k in specs))
    if missing:
        print("oracle: missing on this machine: " + "; ".join(missing))
        return 2
    if not args.transcript.exists():
        print(f"oracle: no transcript program at {args.transcript} (build it first)")
        return 2
    args.golden_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for spec in specs:
        t0 = time.monotonic()
        try:
            kernel = kmod.obtain(spec, args.cache)
        except Unreachable as e:
            print(f"oracle: {spec.name}: the Debian archive cannot be reached: {e}")
            return 2
        except SourceError as e:
            print(f"oracle: {spec.name}: {e}")
            failures += 1
            continue
        log(f"{spec.name}: {kernel.release} ready in {time.monotonic() - t0:.0f} s")
        with tempfile.TemporaryDirectory(prefix="vfio-emu-oracle.") as tmp:
            work = Path(tmp)
            examples = sorted(p for p in args.examples.iterdir() if p.is_file()
                              and os.access(p, os.X_OK)) if args.examples else []
            initrd = build_initramfs(work, kernel, args.transcript, args.daemon, examples)
            try:
                text, console, seconds = boot(kernel, initrd, work, args.timeout)
                ntext, nconsole, nseconds = boot(kernel, initrd, work, args.timeout, noiommu=True)
            except SourceError as e:
                print(f"oracle: {e}")
                failures += 1
                continue
        logs = args.cache / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{spec.name}.console.txt").write_text(console)
        (logs / f"{spec.name}.ttyS1.txt").write_text(text)
        (logs / f"{spec.name}.noiommu.console.txt").write_text(nconsole)
        (logs / f"{spec.name}.noiommu.ttyS1.txt").write_text(ntext)
        found = sections(text)
        noiommu_lines = sections(ntext).get("linux-noiommu")
        if not noiommu_lines or noiommu_lines[-2:-1] != ["noiommu.end"]:
            print(f"oracle: {spec.name}: no complete no-IOMMU transcript (console in "
                  f"{logs}/{spec.name}.noiommu.console.txt):\n" + nconsole[-2000:])
            failures += 1
            noiommu_lines = []
        uname = next((l[3:] for l in text.splitlines() if l.startswith("@@ uname")), "?")
        if "linux" not in found:
            print(f"oracle: {spec.name}: no transcript (console in {logs}/{spec.name}.console.txt):\n"
                  + console[-2000:])
            failures += 1
            continue
        target = args.golden_dir / f"{spec.name}.txt"
        target.write_text("\n".join(header(kernel, uname) + found["linux"] + noiommu_lines) + "\n")
        log(f"{spec.name}: wrote {target} ({len(found['linux'])} + {len(noiommu_lines)} lines)")
        if args.daemon and not any(n.startswith("cuse-") for n in found):
            log(f"{spec.name}: no CUSE transcript (see {logs}/{spec.name}.ttyS1.txt)")
        for name, lines in found.items():
            if name == "cuse-examples":
                rc = lines[-1] if lines else "?"
                (logs / f"{spec.name}.cuse-examples.txt").write_text("\n".join(lines) + "\n")
                log(f"{spec.name}: examples over real CUSE: {rc} "
                    f"({logs}/{spec.name}.cuse-examples.txt)")
                for line in lines:  # one line per example, and the test's own verdicts
                    if line.startswith(("== ", "FAIL", "SKIP", "NOTE")) and " /dev/" not in line:
                        log("  " + line)
                if rc != "@@ rc=0":
                    failures += 1
            elif name.startswith("cuse-"):
                failures += compare_transports(spec.name, name, lines, args, logs)
        log(f"{spec.name}: boot to power-off {seconds:.1f} s (no-IOMMU boot {nseconds:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
