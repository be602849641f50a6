"""The expectations file: per device, binary and case, what must happen, and the comparison.

One line per case, fields separated by blanks; a line starting with `#` is a comment:
    DEVICE  BINARY  CASE  pass|fail|skip|skip-or-pass  REASON... [| SIGNATURE]
CASE `-` is the binary as a whole, for a binary that runs no case (it exits before the harness
starts: no driver for the device, SR-IOV absent, a library assertion in main()).

    pass  must pass. A failure, a skip or a missing case is a mismatch. If SIGNATURE is given,
          the case's output must contain it (a check the case can skip silently, such as
          vfio_dma_mapping_test's page-table lookup through Intel IOMMU debugfs, must have run).
    fail  must fail, for REASON. If SIGNATURE is given, it must occur in the failure's reason, so
          that a case failing for another cause is noticed. A pass is a mismatch too: the case
          has been fixed, the line must say `pass` now.
    skip  must be skipped (the device lacks what the case needs). A failure or a pass is a
          mismatch (a pass: the device has it now, the line must say `pass`).
    skip-or-pass
          skipped on a machine that lacks what the case needs (hugetlb pages: the host's
          vm.nr_hugepages), must pass on one that has it. A failure is a mismatch.
Every case that runs must be listed: a new case is a mismatch until it is added.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from kselftest_tap import FAIL, PASS, SKIP, BinaryResult, Case

WHOLE = "-"
SKIP_OR_PASS = "skip-or-pass"
EXPECTS = (PASS, FAIL, SKIP, SKIP_OR_PASS)


@dataclasses.dataclass
class Expectation:
    expect: str
    reason: str
    signature: str
    line: int


class ExpectationsError(Exception):
    pass


def load(path: Path) -> dict[tuple[str, str, str], Expectation]:
    table: dict[tuple[str, str, str], Expectation] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split(None, 4)
        if len(fields) < 4 or fields[3] not in EXPECTS:
            raise ExpectationsError(f"{path}:{n}: want DEVICE BINARY CASE "
                                    f"{'|'.join(EXPECTS)} REASON")
        device, binary, case, expect = fields[:4]
        rest = fields[4] if len(fields) > 4 else ""
        reason, _, signature = rest.partition("|")
        if (expect != PASS or signature.strip()) and not reason.strip():
            raise ExpectationsError(f"{path}:{n}: a `{expect}` line needs a reason")
        key = (device, binary, case)
        if key in table:
            raise ExpectationsError(f"{path}:{n}: {device} {binary} {case} listed twice "
                                    f"(first on line {table[key].line})")
        table[key] = Expectation(expect, reason.strip(), signature.strip(), n)
    return table


@dataclasses.dataclass
class Row:
    device: str
    binary: str
    case: Case
    expected: Expectation | None
    verdict: str  # "ok" or "MISMATCH"
    why: str = ""


def _judge(case: Case, exp: Expectation | None) -> tuple[str, str]:
    if exp is None:
        return "MISMATCH", "not in the expectations file: add it"
    if exp.expect == PASS:
        if case.status != PASS:
            return "MISMATCH", f"must pass, {case.status}s"
        if exp.signature and exp.signature not in case.output:
            return "MISMATCH", f"passes, but its output lacks `{exp.signature}`"
        return "ok", ""
    if exp.expect == FAIL:
        if case.status == PASS:
            return "MISMATCH", "expected to fail, now passes: change the line to `pass`"
        if case.status != FAIL:
            return "MISMATCH", f"expected to fail, {case.status}s"
        if exp.signature and exp.signature not in case.reason:
            return "MISMATCH", f"fails, but not with `{exp.signature}`"
        return "ok", ""
    if case.status == SKIP:
        return "ok", ""
    if case.status == PASS and exp.expect == SKIP_OR_PASS:
        if exp.signature and exp.signature not in case.output:
            return "MISMATCH", f"passes, but its output lacks `{exp.signature}`"
        return "ok", ""
    if case.status == PASS:
        return "MISMATCH", "expected to skip, now passes: change the line to `pass`"
    return "MISMATCH", f"expected to skip, {case.status}s"


def compare(device: str, result: BinaryResult,
            table: dict[tuple[str, str, str], Expectation]) -> list[Row]:
    rows: list[Row] = []
    seen = set()
    for case in result.cases:
        exp = table.get((device, result.binary, case.name))
        verdict, why = _judge(case, exp)
        rows.append(Row(device, result.binary, case, exp, verdict, why))
        seen.add(case.name)
    whole_exp = table.get((device, result.binary, WHOLE))
    if result.whole is not None:
        verdict, why = _judge(result.whole, whole_exp)
        rows.append(Row(device, result.binary, result.whole, whole_exp, verdict, why))
        seen.add(WHOLE)
    elif whole_exp is not None:
        rows.append(Row(device, result.binary, Case(WHOLE, PASS, "ran its cases"), whole_exp,
                        "MISMATCH", f"expected the whole binary to {whole_exp.expect}, it ran its "
                        "cases: list them instead"))
        seen.add(WHOLE)
    for (d, b, c), exp in sorted(table.items(), key=lambda kv: kv[1].line):
        if d == device and b == result.binary and c not in seen:
            missing = Case(c, "missing", "did not run")
            # A binary that stopped early already failed as a whole; still name what is missing.
            rows.append(Row(device, result.binary, missing, exp, "MISMATCH",
                            f"expected to {exp.expect}, did not run"))
    return rows
