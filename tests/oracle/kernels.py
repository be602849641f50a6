"""The kernels the oracle boots: Debian's stock images, and one built from Debian's source.

Everything comes from Debian with `apt-get download` (tests/linux_selftests/debian_source.py: a
private apt state, the machine's own mirror, signature and hash checks); nothing is installed on
the host. Everything is cached under CACHE (outside the repository):

  CACHE/<suite>/apt, debs       apt's private state and the downloaded .debs
  CACHE/kernels/<name>/         vmlinuz, lib/modules/<release>/... (the modules the guest needs),
                                release (uname -r), package (the Debian package and version)
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "linux_selftests"))
from debian_source import DebianLinux, SourceError, Unreachable  # noqa: E402,F401


@dataclasses.dataclass
class KernelSpec:
    name: str          # the golden's name: 6.1, 6.12, 7.3
    suite: str         # the Debian suite that has it
    source: str | None  # linux-source-X.Y to build from, or None for the stock image


KERNELS = [
    KernelSpec("6.1", "bookworm", None),
    KernelSpec("6.12", "trixie", None),
    KernelSpec("7.3", "trixie-backports", "linux-source-7.3"),
]


@dataclasses.dataclass
class Kernel:
    name: str
    vmlinuz: Path
    modules: Path | None  # CACHE/kernels/<name>/lib/modules (None: everything built in)
    release: str          # uname -r
    package: str          # "<package> <version>" it came from


# The modules the guest loads, stock kernels (the rest of their dependencies follow from
# `depends=` in each module's modinfo).
MODULE_DIRS = ["kernel/drivers/vfio", "kernel/fs/fuse", "kernel/virt/lib"]

# The self-built kernel: tinyconfig plus these (all =y; checked after olddefconfig).
# CROSS_MEMORY_ATTACH: process_vm_readv, which vfio-emud --arg-access direct needs over CUSE;
# MEMFD_CREATE: the transcript's IOMMU_IOAS_MAP_FILE.
BUILT_IN = """64BIT PCI PCI_MSI ACPI X86_X2APIC INTEL_IOMMU IRQ_REMAP VFIO VFIO_PCI
VFIO_IOMMU_TYPE1 VFIO_NOIOMMU IOMMUFD VFIO_DEVICE_CDEV TRANSPARENT_HUGEPAGE FUSE_FS CUSE
BLK_DEV_INITRD RD_GZIP DEVTMPFS SERIAL_8250 SERIAL_8250_CONSOLE PRINTK TTY BINFMT_ELF
BINFMT_SCRIPT PROC_FS SYSFS MULTIUSER FUTEX EPOLL EVENTFD SIGNALFD TIMERFD SHMEM MMU
UNIX FILE_LOCKING POSIX_TIMERS PCI_QUIRKS EXPERT IOMMU_SUPPORT NET SMP
CROSS_MEMORY_ATTACH MEMFD_CREATE""".split()


def log(*args) -> None:
    print("oracle:", *args, flush=True)


def _run(cmd, what: str, timeout: int = 3600, **kw) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        raise SourceError(f"{what}: no end in {timeout} s") from e
    if r.returncode != 0:
        raise SourceError(f"{what} failed ({r.returncode}): {(r.stdout + r.stderr).strip()[-1500:]}")
    return r


def _apt(cache: Path, suite: str) -> DebianLinux:
    apt = DebianLinux(cache / suite, "-", suite, mirror=os.environ.get("VFIO_EMU_DEBIAN_MIRROR"))
    unreachable = apt.update()
    if unreachable and not any((apt.apt_dir / "lists").glob("*_Packages*")):
        raise Unreachable(f"{apt.source.uri} {suite}: {unreachable}")
    return apt


def _modinfo_depends(ko: Path) -> list[str]:
    data = ko.read_bytes()
    m = re.search(rb"\x00depends=([^\x00]*)\x00", b"\x00" + data)
    if not m or not m.group(1):
        return []
    return [d.decode() for d in m.group(1).split(b",") if d]


def stock(spec: KernelSpec, cache: Path) -> Kernel:
    out = cache / "kernels" / spec.name
    stamp = out / "package"
    if stamp.exists():
        release = (out / "release").read_text().strip()
        return Kernel(spec.name, out / "vmlinuz", out / "lib" / "modules", release,
                      stamp.read_text().strip())
    apt = _apt(cache, spec.suite)
    image = next((d for d in apt.depends("linux-image-amd64") if d.startswith("linux-image-")),
                 None)
    if not image:
        raise SourceError(f"{spec.suite}: linux-image-amd64 depends on no linux-image-*")
    log(f"{spec.name}: downloading {image} from {spec.suite}")
    deb = apt.download(image, cache / spec.suite / "debs")
    version = deb.name.split("_")[1].replace("%3a", ":")
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(["bash", "-c", f"set -o pipefail; dpkg-deb --fsys-tarfile {shlex.quote(str(deb))} | "
          f"tar -x -C {shlex.quote(str(tmp))} --wildcards './boot/vmlinuz-*' "
          + " ".join(f"'*/{d}/*'" for d in MODULE_DIRS) + " '*/modules.builtin*' '*/modules.order'"],
         "extracting " + deb.name)
    vmlinuz = sorted(tmp.glob("boot/vmlinuz-*"))
    if not vmlinuz:
        raise SourceError(f"{deb.name}: no boot/vmlinuz-*")
    release = vmlinuz[0].name[len("vmlinuz-"):]
    moddir = next((p for p in (tmp / "lib/modules" / release, tmp / "usr/lib/modules" / release)
                   if p.exists()), None)
    if moddir is None:
        raise SourceError(f"{deb.name}: no modules for {release}")
    # Debian compresses modules (.ko.xz on 6.12+): the guest's busybox modprobe reads plain .ko.
    for xz in list(moddir.rglob("*.ko.xz")):
        _run(["xz", "-d", str(xz)], f"xz -d {xz.name}")
    for zst in list(moddir.rglob("*.ko.zst")):
        _run(["zstd", "-q", "-d", "--rm", str(zst)], f"zstd -d {zst.name}")
    shutil.move(str(vmlinuz[0]), tmp / "vmlinuz")
    final_mod = tmp / "lib" / "modules" / release
    if moddir != final_mod:
        final_mod.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(moddir), final_mod)
        shutil.rmtree(tmp / "usr", ignore_errors=True)
    shutil.rmtree(tmp / "boot", ignore_errors=True)
    # modules.dep for busybox modprobe, from each module's depends= (the .deb has none).
    names = {p.name.removesuffix(".ko").replace("-", "_"): p for p in final_mod.rglob("*.ko")}
    lines = []
    direct = {name: [d.replace("-", "_") for d in _modinfo_depends(ko)
                     if d.replace("-", "_") in names] for name, ko in names.items()}

    def closure(name: str, seen: list[str]) -> list[str]:  # kmod's order: nearest first
        for d in direct[name]:
            if d not in seen:
                seen.append(d)
                closure(d, seen)
        return seen

    rel = lambda p: str(p.relative_to(final_mod))  # noqa: E731
    for name, ko in sorted(names.items()):
        deps = closure(name, [])
        lines.append(f"{rel(ko)}: {' '.join(rel(names[d]) for d in deps)}".rstrip())
    (final_mod / "modules.dep").write_text("\n".join(lines) + "\n")
    (tmp / "release").write_text(release + "\n")
    (tmp / "package").write_text(f"{image} {version}\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return stock(spec, cache)


def built(spec: KernelSpec, cache: Path, jobs: int = 2, lock: str | None = "/tmp/vfio-build.lock") -> Kernel:
    out = cache / "kernels" / spec.name
    stamp = out / "package"
    if stamp.exists():
        return Kernel(spec.name, out / "vmlinuz", None, (out / "release").read_text().strip(),
                      stamp.read_text().strip())
    apt = _apt(cache, spec.suite)
    log(f"{spec.name}: obtaining {spec.source} from {spec.suite} (167 MB; apt-get download keeps a good copy)")
    deb = apt.download(spec.source, cache / spec.suite / "debs")
    version = deb.name.split("_")[1].replace("%3a", ":")
    src = cache / "build" / spec.name
    top = src / spec.source
    if not (top / "Makefile").exists():
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        log(f"{spec.name}: unpacking {deb.name}")
        _run(["bash", "-c", f"set -o pipefail; dpkg-deb --fsys-tarfile {shlex.quote(str(deb))} | "
              f"tar -xO ./usr/src/{spec.source}.tar.xz | xz -dc -T0 | tar -x -C {shlex.quote(str(src))}"],
             "unpacking " + deb.name)
    _run(["make", "-C", str(top), "tinyconfig"], "make tinyconfig")
    _run([str(top / "scripts/config"), "--file", str(top / ".config")]
         + [a for o in BUILT_IN for a in ("--enable", o)], "scripts/config")
    _run(["make", "-C", str(top), "olddefconfig"], "make olddefconfig")
    config = (top / ".config").read_text()
    missing = [o for o in BUILT_IN if f"CONFIG_{o}=y\n" not in config]
    if missing:
        raise SourceError(f"{spec.source}: olddefconfig left these not =y: {missing}")
    log(f"{spec.name}: building bzImage (make -j{jobs}, about 8 min on two idle cores)")
    t = time.monotonic()
    cmd = ["nice", "-n", "10", "make", "-C", str(top), f"-j{jobs}", "bzImage"]
    if lock:
        cmd = ["flock", lock] + cmd
    _run(cmd, "make bzImage", timeout=7200)
    log(f"{spec.name}: built in {time.monotonic() - t:.0f} s")
    release = _run(["make", "-s", "-C", str(top), "kernelrelease"], "kernelrelease").stdout.strip()
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(top / "arch/x86/boot/bzImage", tmp / "vmlinuz")
    shutil.copy(top / ".config", tmp / "config")
    (tmp / "release").write_text(release + "\n")
    (tmp / "package").write_text(f"{spec.source} {version} (tinyconfig + {' '.join(BUILT_IN)})\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return built(spec, cache, jobs, lock)


def obtain(spec: KernelSpec, cache: Path) -> Kernel:
    return built(spec, cache) if spec.source else stock(spec, cache)


if __name__ == "__main__":
    # By hand: kernels.py CACHE [NAME...]
    cache = Path(sys.argv[1])
    for spec in KERNELS:
        if len(sys.argv) > 2 and spec.name not in sys.argv[2:]:
            continue
        t = time.monotonic()
        print(obtain(spec, cache), f"{time.monotonic() - t:.0f} s")
