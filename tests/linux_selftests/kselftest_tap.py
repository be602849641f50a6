"""Reads what one kselftest binary printed (stdout and stderr merged, TAP 13 from
kselftest_harness.h) into one result per case, each with a one-line reason when it did not pass.

What the harness prints, and what it means here:
    1..N                           the plan: N cases will follow
    1..0 # SKIP why                the whole binary skipped (ksft_exit_skip)
    #  RUN  fixture.variant.test ... a case starts; its own output and assertion messages follow
    ok 3 NAME                      pass
    ok 3 NAME # SKIP why           skip
    ok 3 NAME # XFAIL why          an expected failure the harness itself knows: counted as pass
    not ok 3 NAME                  fail; the reason is taken from the lines since the last result
A binary that exits before its plan (a library assertion in main(), no driver for the device:
exit 4 = KSFT_SKIP) has no cases: its result is the binary as a whole.
"""
from __future__ import annotations

import dataclasses
import re

PASS, FAIL, SKIP = "pass", "fail", "skip"
KSFT_SKIP = 4

_RESULT = re.compile(r"^(not ok|ok) (\d+) (\S+)(?: # (SKIP|XFAIL|TODO)\b\s*(.*))?$")
_PLAN = re.compile(r"^1\.\.(\d+)(?: # SKIP\s*(.*))?$")


@dataclasses.dataclass
class Case:
    name: str
    status: str
    reason: str = ""
    output: str = ""  # what the case printed (the lines since the previous result)


@dataclasses.dataclass
class BinaryResult:
    binary: str
    exit_code: int | None     # None: killed by our timeout
    planned: int | None
    cases: list[Case]
    whole: Case | None        # set when the binary ran no case, or stopped before its plan's end


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _failure_reason(lines: list[str], name: str) -> str:
    """The assertion (file:line, expression, observed, errno) or the harness's verdict."""
    parts: list[str] = []
    for i, line in enumerate(lines):
        s = line.strip()
        if "Assertion Failure" in s:
            where = s.split(": Assertion Failure")[0].rsplit("/", 1)[-1]
            parts.append(where + ":")
        elif s.startswith("Expression:"):
            parts.append(s.split(":", 1)[1].strip())
        elif s.startswith("Observed:"):
            parts.append("(observed " + s.split(":", 1)[1].strip() + ")")
        elif s.startswith("[errno:") and not s.startswith("[errno: 0 "):
            parts.append(s)
        elif re.match(r"^# \S+:\d+:", s):  # ASSERT_* in the test: "# file.c:123:name:Expected ..."
            parts.append(s[2:])
        elif "Test terminated" in s:
            parts.append(s.lstrip("# "))
    if not parts:
        tail = [l.strip() for l in lines if l.strip() and not l.startswith("#  RUN")
                and not re.match(r"^#\s+(FAIL|OK)\s", l) and "Test failed" not in l]
        parts = tail[-2:] or ["failed, no message"]
    return _one_line(" ".join(parts))


def parse(binary: str, output: str, exit_code: int | None, timeout_s: float | None = None
          ) -> BinaryResult:
    planned: int | None = None
    cases: list[Case] = []
    whole: Case | None = None
    block: list[str] = []  # lines since the last result
    for line in output.splitlines():
        m = _PLAN.match(line)
        if m and planned is None:
            planned = int(m.group(1))
            if planned == 0:
                whole = Case("-", SKIP, _one_line(m.group(2) or "nothing to run"))
            block = []
            continue
        m = _RESULT.match(line)
        if m:
            verdict, _, name, directive, why = m.groups()
            printed = "\n".join(block)
            if verdict == "not ok":
                cases.append(Case(name, FAIL, _failure_reason(block, name), printed))
            elif directive == "SKIP":
                cases.append(Case(name, SKIP, _one_line(why or "skipped"), printed))
            else:
                cases.append(Case(name, PASS, "", printed))
            block = []
            continue
        block.append(line)

    ended = "timed out after %.0f s" % timeout_s if exit_code is None else f"exit {exit_code}"
    if whole is None and not cases:
        text = [l.strip() for l in block if l.strip()]
        if exit_code == KSFT_SKIP:
            whole = Case("-", SKIP, _one_line(text[0] if text else "skipped (exit 4)"))
        else:
            whole = Case("-", FAIL, _one_line(f"{ended}: " + _failure_reason(block, "-")))
    elif planned is not None and len(cases) < planned:
        whole = Case("-", FAIL, f"{ended} after {len(cases)} of {planned} cases")
    elif exit_code is None:
        whole = Case("-", FAIL, ended)
    return BinaryResult(binary, exit_code, planned, cases, whole)
