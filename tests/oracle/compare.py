#!/usr/bin/env python3
"""vfio-emu's transcript against real Linux's (the committed goldens), line by line.

    compare.py --tool build/tools/vfio-emu --transcript build/tests/oracle/oracle-transcript
               [--config TOPOLOGY] [--golden-dir DIR] [--differences FILE] [--readme README.md]
               [--emu-output FILE]   (read vfio-emu's transcript from FILE instead of running it)

Runs the transcript program under `vfio-emu run --config pci_testdev_machine.toml` (the built-in
machine with the pci-testdev model at 0000:00:01.0 in group 1, /dev/vfio/devices/vfio0, as QEMU's
pci-testdev is in the VM), then compares its lines with every golden/<kernel>.txt. Each
line that differs (a different answer, or a line only one side has) must be explained by an
entry of differences.toml, which names the README subsection of "Where vfio-emu differs from
Linux" that explains it. Fails on:
  - a difference no entry explains (printed as a ready-to-edit entry);
  - an entry that explains nothing (stale: the difference is gone, remove the entry), unless it
    is `optional` (an answer that depends on the machine running the test);
  - an entry whose `follows` kernel does not give vfio-emu's answer;
  - an entry naming a README subsection that does not exist (unless `readme_pending = true`).
Needs no QEMU and no network: only the committed goldens (tests/oracle/README.md).
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = 77


def parse(text: str) -> dict[str, str]:
    """KEY -> the rest of the line. Comment (#) and `@@` lines are not transcript lines."""
    lines: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "@@")):
            continue
        key, _, rest = line.partition(" ")
        if key in lines:
            raise ValueError(f"key {key} appears twice")
        lines[key] = rest
    return lines


@dataclass
class Difference:
    kernel: str
    key: str
    linux: str | None  # None: Linux has no such line
    emu: str | None    # None: vfio-emu has no such line

    def show(self) -> str:
        return (f"  [{self.kernel}] {self.key}\n"
                f"      linux: {self.linux if self.linux is not None else '<no line>'}\n"
                f"      emu:   {self.emu if self.emu is not None else '<no line>'}")


@dataclass
class Entry:
    index: int
    keys: list[str]
    readme: str
    why: str
    kernels: list[str] | None = None
    linux: str | None = None    # regex on Linux's line ("<no line>" when it has none)
    emu: str | None = None      # regex on vfio-emu's line
    follows: str | None = None  # kernels disagree: vfio-emu gives this kernel's answer
    readme_pending: bool = False
    optional: bool = False      # depends on the machine running the test: never stale
    matched: list[Difference] = field(default_factory=list)

    def matches(self, d: Difference) -> bool:
        if self.kernels is not None and d.kernel not in self.kernels:
            return False
        if not any(fnmatch.fnmatchcase(d.key, k) for k in self.keys):
            return False
        if self.linux is not None and not re.search(self.linux, d.linux if d.linux is not None
                                                     else "<no line>"):
            return False
        if self.emu is not None and not re.search(self.emu, d.emu if d.emu is not None
                                                   else "<no line>"):
            return False
        return True

    def name(self) -> str:
        return f"entry {self.index} (keys {self.keys[0]}{' ...' if len(self.keys) > 1 else ''})"


ENTRY_FIELDS = {"keys", "readme", "why", "kernels", "linux", "emu", "follows", "readme_pending",
                "optional"}


def load_entries(path: Path, table: str = "difference") -> list[Entry]:
    """`[[difference]]`: vfio-emu (emu) against a kernel (linux). `[[transport]]`: vfio-emud over
    real CUSE (linux = the CUSE line, kernels = "cuse-direct"/"cuse-retry") against FUSE (emu),
    used by oracle.py."""
    data = tomllib.loads(path.read_text())
    entries = []
    for i, e in enumerate(data.get(table, []), 1):
        unknown = set(e) - ENTRY_FIELDS
        if unknown:
            raise ValueError(f"{path}: entry {i}: unknown fields {sorted(unknown)}")
        for required in ("keys", "readme", "why"):
            if required not in e:
                raise ValueError(f"{path}: entry {i}: no `{required}`")
        keys = e["keys"] if isinstance(e["keys"], list) else [e["keys"]]
        entries.append(Entry(i, keys, e["readme"], e["why"], e.get("kernels"), e.get("linux"),
                             e.get("emu"), e.get("follows"), e.get("readme_pending", False),
                             e.get("optional", False)))
    return entries


def readme_titles(readme: Path) -> set[str]:
    """The subsection titles of README's "Where vfio-emu differs from Linux", without "N. "."""
    titles, inside = set(), False
    for line in readme.read_text().splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Where vfio-emu differs from Linux"
        elif inside and line.startswith("### "):
            titles.add(re.sub(r"^\d+\.\s*", "", line[4:].strip()))
    return titles


def differences(goldens: dict[str, dict[str, str]], emu: dict[str, str]) -> list[Difference]:
    found = []
    for kernel, linux in goldens.items():
        for key in list(linux) + [k for k in emu if k not in linux]:
            a, b = linux.get(key), emu.get(key)
            if a != b:
                found.append(Difference(kernel, key, a, b))
    return found


def explain(diffs: list[Difference], entries: list[Entry]) -> list[Difference]:
    """Records each difference in the entries that match it; returns those no entry matches."""
    unexplained = []
    for d in diffs:
        hits = [e for e in entries if e.matches(d)]
        if not hits:
            unexplained.append(d)
        for e in hits:
            e.matched.append(d)
    return unexplained


# The no-IOMMU device of pci_testdev_machine.toml, as the transcript's --noiommu wants it.
NOIOMMU_ARGS = ["--noiommu", "/dev/vfio/noiommu-0", "0000:00:06.0",
                "/dev/vfio/devices/noiommu-vfio4"]


def run_emu(tool: str, transcript: str, config: Path) -> str:
    """The transcript under `vfio-emu run`, then its no-IOMMU section under `vfio-emu run
    --enable-unsafe-noiommu-mode` (the goldens' noiommu.* lines come from a second boot)."""
    if not Path("/dev/fuse").exists():
        print("skipped: no /dev/fuse (vfio-emu run needs FUSE)")
        sys.exit(SKIP)
    out = ""
    for run_args, args, last in (([], [], "end"),
                                 (["--enable-unsafe-noiommu-mode"], NOIOMMU_ARGS, "noiommu.end")):
        cmd = [tool, "run", *run_args, "--config", str(config), "--", transcript, *args]
        r = subprocess.run(["timeout", "300", *cmd], capture_output=True, text=True)
        if r.returncode != 0 or not r.stdout.rstrip().endswith(last):
            print(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                  f"{r.stderr[-3000:]}")
            sys.exit(1)
        out += r.stdout
    return out


def suggest(d: Difference) -> str:
    return ("[[difference]]\n"
            f'keys = ["{d.key}"]\n'
            f'kernels = ["{d.kernel}"]\n'
            f"linux = '{re.escape(d.linux) if d.linux is not None else '<no line>'}'\n"
            f"emu = '{re.escape(d.emu) if d.emu is not None else '<no line>'}'\n"
            'readme = "TITLE OF THE README SUBSECTION"\n'
            'why = "..."\n')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tool")
    ap.add_argument("--transcript")
    ap.add_argument("--emu-output", type=Path)
    ap.add_argument("--config", type=Path, default=HERE / "pci_testdev_machine.toml",
                    help="the topology the transcript runs on (the VM's device at 00:01.0)")
    ap.add_argument("--golden-dir", type=Path, default=HERE / "golden")
    ap.add_argument("--differences", type=Path, default=HERE / "differences.toml")
    ap.add_argument("--readme", type=Path, default=HERE.parent.parent / "README.md")
    args = ap.parse_args()

    goldens = {}
    for path in sorted(args.golden_dir.glob("*.txt")):
        if path.name.startswith("cuse-"):
            continue  # vfio-emud over real CUSE: compared by ./dev.sh oracle, not here
        goldens[path.stem] = parse(path.read_text())
    if not goldens:
        print(f"no goldens in {args.golden_dir}")
        return 1
    if args.emu_output:
        emu_text = args.emu_output.read_text()
    else:
        if not (args.tool and args.transcript):
            ap.error("--tool and --transcript, or --emu-output")
        emu_text = run_emu(args.tool, args.transcript, args.config)
    emu = parse(emu_text)

    entries = load_entries(args.differences)
    titles = readme_titles(args.readme)
    problems: list[str] = []
    pending: set[str] = set()
    diffs = differences(goldens, emu)
    unexplained = explain(diffs, entries)
    for e in entries:
        if not e.matched and not e.optional:
            problems.append(f"{e.name()} explains no difference any more (stale): remove it, and "
                            f"check README \"{e.readme}\"")
        if e.readme not in titles:
            if e.readme_pending:
                pending.add(e.readme)
            else:
                problems.append(f"{e.name()}: README has no subsection \"{e.readme}\" under "
                                "\"Where vfio-emu differs from Linux\"")
        if e.follows:
            if e.follows not in goldens:
                problems.append(f"{e.name()}: follows {e.follows}, which has no golden")
            else:
                # vfio-emu gives that kernel's answer, or differs from it in a way another
                # entry explains.
                explained = {(d.kernel, d.key) for other in entries if other is not e
                             for d in other.matched}
                for d in e.matched:
                    if (emu.get(d.key) != goldens[e.follows].get(d.key)
                            and (e.follows, d.key) not in explained):
                        problems.append(f"{e.name()}: says vfio-emu follows {e.follows}, but for "
                                        f"{d.key} vfio-emu answers {emu.get(d.key)!r} and "
                                        f"{e.follows} {goldens[e.follows].get(d.key)!r}")
    same = sum(1 for k in emu if all(g.get(k) == emu[k] for g in goldens.values()))
    print(f"compared {len(emu)} vfio-emu lines with {', '.join(goldens)}: {same} lines equal to "
          f"every kernel, {len(diffs)} differing (kernel, line) pairs, "
          f"{len(diffs) - len(unexplained)} explained by {len(entries)} entries")
    for e in entries:
        print(f"  entry {e.index}: {len(e.matched)} differences, README \"{e.readme}\"")
    if unexplained:
        print(f"\nFAIL: {len(unexplained)} differences no entry of {args.differences.name} "
              "explains:")
        for d in unexplained:
            print(d.show())
        print("\nan entry for the first one would read:\n" + suggest(unexplained[0]))
    for title in sorted(pending):
        print(f"note: README subsection \"{title}\" not written yet (readme_pending)")
    for p in problems:
        print("FAIL: " + p)
    return 1 if unexplained or problems else 0


if __name__ == "__main__":
    sys.exit(main())
