#!/usr/bin/env python3
"""compare.py's verdicts on small made-up transcripts (offline; meson test oracle-compare-rules).

Each case writes goldens, a differences file, a README and vfio-emu's transcript into a
temporary directory, runs compare.py --emu-output, and checks its exit status and what it says.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = """# x
## Where vfio-emu differs from Linux
### 1. Known thing
### 2. Other thing
## Tests
"""


def run(goldens: dict[str, str], emu: str, differences: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "golden").mkdir()
        for name, text in goldens.items():
            (t / "golden" / f"{name}.txt").write_text("# header\n" + textwrap.dedent(text))
        (t / "emu.txt").write_text(textwrap.dedent(emu))
        (t / "d.toml").write_text(textwrap.dedent(differences))
        (t / "README.md").write_text(README)
        r = subprocess.run([sys.executable, str(HERE / "compare.py"), "--emu-output",
                            str(t / "emu.txt"), "--golden-dir", str(t / "golden"),
                            "--differences", str(t / "d.toml"), "--readme",
                            str(t / "README.md")], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr


A = "a rc=0 errno=0\nb rc=-1 errno=EINVAL\n"
ENTRY_B = """
[[difference]]
keys = ["b"]
linux = 'EINVAL'
emu = 'EOVERFLOW'
readme = "Known thing"
why = "x"
"""
CASES = [
    # (name, goldens, emu, differences, expected status, text the output must hold)
    ("equal, no entries", {"k1": A}, A, "", 0, "0 differing"),
    ("unexplained difference", {"k1": A}, "a rc=0 errno=0\nb rc=-1 errno=EOVERFLOW\n", "", 1,
     "1 differences no entry"),
    ("explained difference", {"k1": A}, "a rc=0 errno=0\nb rc=-1 errno=EOVERFLOW\n", ENTRY_B, 0,
     "1 explained"),
    ("stale entry", {"k1": A}, A, ENTRY_B, 1, "stale"),
    ("optional entry is never stale", {"k1": A}, A, ENTRY_B + "optional = true\n", 0,
     "0 differing"),
    ("a line only vfio-emu has", {"k1": A}, A + "c rc=0 errno=0\n", "", 1, "<no line>"),
    ("regex that does not match", {"k1": A}, "a rc=0 errno=0\nb rc=-1 errno=ENOENT\n", ENTRY_B, 1,
     "no entry"),
    ("README title missing", {"k1": A}, "a rc=0 errno=0\nb rc=-1 errno=EOVERFLOW\n",
     ENTRY_B.replace("Known thing", "Unknown thing"), 1, "README has no subsection"),
    ("README title pending", {"k1": A}, "a rc=0 errno=0\nb rc=-1 errno=EOVERFLOW\n",
     ENTRY_B.replace("Known thing", "Unknown thing") + "readme_pending = true\n", 0,
     "not written yet"),
    ("follows the right kernel", {"k1": A, "k2": "a rc=0 errno=0\nb rc=-1 errno=EOVERFLOW\n"},
     "a rc=0 errno=0\nb rc=-1 errno=EOVERFLOW\n",
     ENTRY_B + 'kernels = ["k1"]\nfollows = "k2"\n', 0, "1 explained"),
    ("follows the wrong kernel", {"k1": A, "k2": "a rc=0 errno=0\nb rc=-1 errno=EOVERFLOW\n"},
     "a rc=0 errno=0\nb rc=-1 errno=EOVERFLOW\n",
     ENTRY_B + 'kernels = ["k1"]\nfollows = "k1"\n', 1, "says vfio-emu follows k1"),
    ("kernels restricts the entry", {"k1": A, "k2": A},
     "a rc=0 errno=0\nb rc=-1 errno=EOVERFLOW\n", ENTRY_B + 'kernels = ["k1"]\n', 1,
     "[k2] b"),
    ("unknown field", {"k1": A}, A, ENTRY_B + "typo = 1\n", 1, "unknown fields"),
]


def main() -> int:
    failed = 0
    for name, goldens, emu, differences, status, text in CASES:
        got, out = run(goldens, emu, differences)
        ok = got == status and text in out
        print(f"{'ok' if ok else 'FAIL'}: {name} (exit {got}, wanted {status}, "
              f"{'found' if text in out else 'missing'} {text!r})")
        if not ok:
            print(textwrap.indent(out, "    "))
            failed += 1
    print(f"{len(CASES) - failed} of {len(CASES)} cases as expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
