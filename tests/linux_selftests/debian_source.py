"""Obtains Linux's VFIO selftests and the matching uAPI headers from Debian, at test time.

Nothing of Linux is kept in the repository: `linux-source-X.Y` and `linux-libc-dev` (same
version) are fetched with `apt-get download` from the suite that carries them (trixie-backports
for 7.3) and extracted, never installed. apt runs with a private state (its own sources list,
lists and cache directories under CACHE/apt), so the machine's apt configuration and package
database are not touched; the mirror is the one the machine's own apt sources name, and apt
checks each .deb against the hash in the Packages index, whose InRelease it verifies with the
keyring that source names (Signed-By).

Only a part of the 167 MB source tarball is unpacked: tools/include, the kselftest harness, the
vfio selftests, and what their symbolic links point to outside tools/ (Linux's own driver
register headers, include/linux/pci_ids.h). Everything lands in CACHE/<version>/ and is reused.
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

# apt's words for "the mirror could not be reached" (apt 2.6's messages). Anything else that
# fails (a bad signature, a hash mismatch, a missing package) is a real failure.
NETWORK_ERRORS = re.compile(
    r"Could not resolve|Temporary failure resolving|Could not connect|Failed to connect|"
    r"Connection timed out|Connection failed|Connection refused|Network is unreachable|"
    r"No route to host|Unable to connect|Could not wait for server fd|Read error|"
    r"Something wicked happened resolving")

# What the selftests' build reads from the source tree (besides the link targets found after).
EXTRACTED = ["tools/include", "tools/arch", "tools/testing/selftests/lib.mk",
             "tools/testing/selftests/kselftest*", "tools/testing/selftests/vfio",
             "scripts/subarch.include"]

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class Unreachable(Exception):
    """The Debian archive could not be reached (the caller skips, exit 77)."""


class SourceError(Exception):
    """Anything else that went wrong obtaining the sources (the caller fails)."""


@dataclasses.dataclass
class AptSource:
    uri: str
    signed_by: str | None  # a keyring file, or None (apt's trusted keys)
    where: str             # the file it came from, for messages


def _deb822_stanzas(text: str):
    stanza: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, None
            continue
        if line[0] in " \t" and key:
            stanza[key] += "\n" + line.strip()
            continue
        if ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            stanza[key] = value.strip()
    if stanza:
        yield stanza


def machine_codename(os_release: Path = Path("/etc/os-release")) -> str | None:
    try:
        for line in os_release.read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"') or None
    except OSError:
        pass
    return None


def _is_debian_main_suite(suite: str, codename: str | None) -> bool:
    # The machine's own release in the main archive: "bookworm", "bookworm-updates",
    # "bookworm-backports" (or "stable" & co.). Not "bookworm-security" (another archive), nor
    # a vendor's repository ("nodistro", "cloud-sdk-bookworm").
    names = {"stable", "oldstable", "testing", "unstable", "sid"}
    if codename:
        names |= {codename} | {f"{codename}-{s}" for s in ("updates", "backports",
                                                         "proposed-updates")}
    return suite.rstrip("/") in names


def machine_debian_sources(etc: Path = Path("/etc/apt"),
                           codename: str | None = None) -> list[AptSource]:
    """The machine's `deb` sources that serve its own Debian release from the main archive, in
    apt's file order."""
    found: list[AptSource] = []
    codename = codename or machine_codename()

    def consider(uri: str, suites: list[str], signed_by: str | None, where: str) -> None:
        uri = uri.rstrip("/")
        if "security" in uri or not uri.startswith(("http://", "https://", "file:", "mirror")):
            return
        if not any(_is_debian_main_suite(s, codename) for s in suites):
            return
        if signed_by and "\n" in signed_by:
            signed_by = None  # an inline key block: use the default keyring instead
        found.append(AptSource(uri, signed_by, where))

    one_line = [etc / "sources.list"] + sorted(etc.glob("sources.list.d/*.list"))
    for path in one_line:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line.startswith("deb "):
                continue
            options = {}
            m = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
            rest = line[4:].strip()
            if m:
                for opt in m.group(1).split():
                    if "=" in opt:
                        k, v = opt.split("=", 1)
                        options[k.lower()] = v
                rest = m.group(2)
            words = rest.split()
            if len(words) >= 2:
                consider(words[0], [words[1]], options.get("signed-by"), str(path))
    for path in sorted(etc.glob("sources.list.d/*.sources")):
        try:
            text = path.read_text()
        except OSError:
            continue
        for st in _deb822_stanzas(text):
            if st.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in st.get("types", "").split():
                continue
            for uri in st.get("uris", "").split():
                consider(uri, st.get("suites", "").split(), st.get("signed-by"), str(path))
    return found


@dataclasses.dataclass
class LinuxTree:
    version: str        # the Debian version of both packages, e.g. 7.3.4-1~bpo13+1
    source_dir: Path    # the extracted linux-source-X.Y tree (partial)
    headers_dir: Path   # linux-libc-dev's usr/include
    debs: list[Path]
    downloaded_bytes: int
    download_s: float   # apt-get update + download (index check only, when cached)
    extract_s: float
    note: str           # how it was obtained (for the log)


class DebianLinux:
    """`linux-source-<series>` and `linux-libc-dev` of one series from one suite."""

    def __init__(self, cache: Path, series: str, suite: str, mirror: str | None = None,
                 keyring: str | None = None, timeout: int = 1200, log=print):
        self.cache = cache
        self.series = series
        self.suite = suite
        self.timeout = timeout
        self.log = log
        self.apt_dir = cache / "apt"
        if mirror:
            self.source = AptSource(mirror.rstrip("/"), keyring, "VFIO_EMU_DEBIAN_MIRROR")
        else:
            sources = machine_debian_sources()
            if not sources:
                raise SourceError("no Debian mirror for this machine's release in /etc/apt/"
                                  "sources.list{,.d/*.list,.d/*.sources} (set "
                                  "VFIO_EMU_DEBIAN_MIRROR=URI)")
            self.source = sources[0]
            if keyring:
                self.source.signed_by = keyring
        if not self.source.signed_by and Path(DEFAULT_KEYRING).exists():
            self.source.signed_by = DEFAULT_KEYRING
        if self.source.signed_by and not Path(self.source.signed_by).exists():
            raise SourceError(f"keyring {self.source.signed_by} (from {self.source.where}) is "
                              "missing: install debian-archive-keyring")

    # --- apt with a private state ---------------------------------------------------------
    def _apt_options(self) -> list[str]:
        a = self.apt_dir
        options = [
            "-o", f"Dir::Etc::sourcelist={a / 'sources.list'}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={a / 'lists'}",
            "-o", f"Dir::Cache={a / 'cache'}",
            "-o", "Dir::State::status=/dev/null",
            "-o", "Acquire::Retries=2",
            "-o", "Acquire::http::Timeout=30",
            "-o", "Acquire::https::Timeout=30",
        ]
        if os.geteuid() == 0:
            # The files are ours, in our cache: apt's _apt sandbox user may not reach them.
            options += ["-o", "APT::Sandbox::User=root"]
        return options

    def _apt(self, tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [tool, *self._apt_options(), *args]
        try:
            return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise Unreachable(f"{tool} {' '.join(args)} did not finish in {self.timeout} s "
                              "(network too slow or stalled)") from e
        except FileNotFoundError as e:
            raise SourceError(f"{tool} not found (install apt)") from e

    def _prepare_apt_dir(self) -> None:
        for d in ("lists/partial", "cache/archives/partial"):
            (self.apt_dir / d).mkdir(parents=True, exist_ok=True)
        opt = f" [signed-by={self.source.signed_by}]" if self.source.signed_by else ""
        (self.apt_dir / "sources.list").write_text(
            f"# written by tests/linux_selftests (mirror from {self.source.where})\n"
            f"deb{opt} {self.source.uri} {self.suite} main\n")

    def update(self) -> str | None:
        """Refreshes the private index. Returns None, or why the archive was unreachable (the
        index of an earlier run, if any, is then kept)."""
        self._prepare_apt_dir()
        r = self._apt("apt-get", "-q", "--error-on=any", "update")
        if r.returncode == 0:
            return None
        errors = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith(("E:", "Err:", "  "))]
        hard = [l for l in errors if l.startswith("E:") and not NETWORK_ERRORS.search(l)
                and "Some index files failed to download" not in l]
        if hard or not any(NETWORK_ERRORS.search(l) for l in errors):
            raise SourceError("apt-get update failed:\n" + (r.stdout + r.stderr).strip())
        return "; ".join(l.strip() for l in errors if l.startswith("E:"))[:400]

    def _versions(self, package: str) -> list[str]:
        r = self._apt("apt-cache", "madison", package)
        versions = []
        for line in r.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 3 and parts[0] == package and parts[2].endswith("Packages"):
                versions.append(parts[1])
        return versions

    def _newest(self, versions: list[str]) -> str:
        newest = versions[0]
        for v in versions[1:]:
            if subprocess.run(["dpkg", "--compare-versions", v, "gt", newest]).returncode == 0:
                newest = v
        return newest

    # --- any package (tests/oracle: kernel images, linux-source) ----------------------------
    def depends(self, package: str) -> list[str]:
        """The names `package` (newest version in the suite) depends on, in control-file order."""
        r = self._apt("apt-cache", "depends", "--no-recommends", "--no-suggests",
                      "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", package)
        if r.returncode != 0:
            raise SourceError(f"apt-cache depends {package}: {(r.stdout + r.stderr).strip()}")
        return [l.split(":", 1)[1].strip() for l in r.stdout.splitlines()
                if l.strip().startswith("Depends:")]

    def _apt_download(self, specs: list, dest: Path) -> None:
        """`apt-get download` of package=version specs into `dest`: Unreachable when the
        network fails (not a bad hash or signature), SourceError otherwise."""
        r = self._apt("apt-get", "-q", "download", *specs, cwd=dest)
        if r.returncode != 0:
            text = (r.stdout + r.stderr).strip()
            if NETWORK_ERRORS.search(text) and not re.search(r"Hash Sum mismatch|verif", text):
                raise Unreachable(f"apt-get download: {text[-400:]}")
            raise SourceError(f"apt-get download failed:\n{text}")

    def download(self, package: str, dest: Path) -> Path:
        """Downloads the newest `package` of the suite into `dest` (already updated index;
        `update()` first), checked against the signed index's hash. Returns the .deb."""
        versions = self._versions(package)
        if not versions:
            raise SourceError(f"{self.suite} has no {package}")
        version = self._newest(versions)
        dest.mkdir(parents=True, exist_ok=True)
        self._apt_download([f"{package}={version}"], dest)
        quoted = version.replace(":", "%3a")
        found = sorted(dest.glob(f"{package}_{quoted}_*.deb"))
        if not found:
            raise SourceError(f"apt-get download left no {package}_{quoted}_*.deb in {dest}")
        return found[0]

    # --- the whole job --------------------------------------------------------------------
    def obtain(self) -> LinuxTree:
        t0 = time.monotonic()
        unreachable = self.update()
        have_index = any((self.apt_dir / "lists").glob("*_Packages*"))
        if unreachable and not have_index:
            raise Unreachable(f"{self.source.uri} {self.suite}: {unreachable}")
        if unreachable:
            self.log(f"note: {self.source.uri} unreachable ({unreachable}); using the index and "
                     "packages of an earlier run")

        source_pkg = f"linux-source-{self.series}"
        src_versions = self._versions(source_pkg)
        if not src_versions:
            others = sorted(set(self._versions("linux-source")))
            raise SourceError(f"{self.suite} has no {source_pkg}; linux-source versions there: "
                              f"{', '.join(others) or 'none'}")
        version = self._newest(src_versions)
        hdr_versions = self._versions("linux-libc-dev")
        if version not in hdr_versions:
            raise SourceError(f"{self.suite} has {source_pkg} {version} but linux-libc-dev only in "
                              f"{', '.join(hdr_versions) or 'no version'}: not mixing versions")

        debs_dir = self.cache / "debs"
        debs_dir.mkdir(parents=True, exist_ok=True)
        before = {p.name: p.stat().st_size for p in debs_dir.glob("*.deb")}
        # apt-get download checks each file against the index's SHA256 (and skips a file that
        # is already there with the right hash).
        self._apt_download([f"{source_pkg}={version}", f"linux-libc-dev={version}"], debs_dir)
        quoted = version.replace(":", "%3a")
        debs = [debs_dir / f"{source_pkg}_{quoted}_all.deb", debs_dir / f"linux-libc-dev_{quoted}_all.deb"]
        for d in debs:
            if not d.exists():
                found = sorted(p.name for p in debs_dir.glob("*.deb"))
                raise SourceError(f"apt-get download left no {d.name} (have: {found})")
        downloaded = sum(d.stat().st_size for d in debs if before.get(d.name) != d.stat().st_size)

        t1 = time.monotonic()
        tree = self.cache / version
        source_dir = self._extract_source(debs[0], tree)
        headers_dir = self._extract_headers(debs[1], tree)
        how = "downloaded" if downloaded else "cached"
        return LinuxTree(version, source_dir, headers_dir, debs, downloaded, t1 - t0,
                         time.monotonic() - t1,
                         f"{source_pkg} and linux-libc-dev {version} from {self.source.uri} "
                         f"{self.suite} ({how})")

    def _extract_headers(self, deb: Path, tree: Path) -> Path:
        out = tree / "linux-libc-dev"
        stamp = out / ".complete"
        if not stamp.exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            self._run(["dpkg-deb", "-x", str(deb), str(out)], "dpkg-deb -x")
            stamp.touch()
        include = out / "usr" / "include"
        if not (include / "linux" / "vfio.h").exists():
            raise SourceError(f"{deb.name} has no usr/include/linux/vfio.h")
        return include

    def _extract_source(self, deb: Path, tree: Path) -> Path:
        out = tree / "linux-source"
        stamp = out / ".complete"
        top = f"linux-source-{self.series}"
        members = [f"{top}/{m}" for m in EXTRACTED]
        # The stamp names what was extracted: a changed list extracts again.
        if stamp.exists() and stamp.read_text() == "\n".join(members):
            return out / top
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        self._untar(deb, out, members)
        # Links out of tools/ (the drivers' register headers, pci_ids.h): a second pass.
        for _ in range(3):
            dangling = sorted({str(Path(os.path.normpath(p.parent / os.readlink(p))).relative_to(out))
                               for p in (out / top).rglob("*")
                               if p.is_symlink() and not p.exists()})
            if not dangling:
                break
            self._untar(deb, out, dangling)
        else:
            raise SourceError(f"links still dangling after extraction: {dangling}")
        if not (out / top / "tools/testing/selftests/vfio/Makefile").exists():
            raise SourceError(f"{deb.name}: no tools/testing/selftests/vfio/Makefile")
        stamp.write_text("\n".join(members))
        return out / top

    def _untar(self, deb: Path, out: Path, members: list[str]) -> None:
        tarball = f"./usr/src/linux-source-{self.series}.tar.xz"
        script = (f"set -o pipefail; dpkg-deb --fsys-tarfile {shlex.quote(str(deb))} | "
                  f"tar -xO {shlex.quote(tarball)} | xz -dc -T0 | "
                  f"tar -x -C {shlex.quote(str(out))} --wildcards "
                  + " ".join(shlex.quote(m) for m in members))
        self._run(["bash", "-c", script], "extracting " + deb.name)

    def _run(self, cmd: list[str], what: str) -> None:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise SourceError(f"{what}: no end in {self.timeout} s") from e
        if r.returncode != 0:
            raise SourceError(f"{what} failed ({r.returncode}): {r.stderr.strip()[-800:]}")


if __name__ == "__main__":
    # By hand: debian_source.py CACHE_DIR  (prints what it obtained)
    t = time.monotonic()
    try:
        tree = DebianLinux(Path(sys.argv[1]), "7.3", "trixie-backports",
                           mirror=os.environ.get("VFIO_EMU_DEBIAN_MIRROR")).obtain()
    except Unreachable as e:
        print(f"unreachable: {e}")
        sys.exit(77)
    print(tree, f"{time.monotonic() - t:.1f} s")
