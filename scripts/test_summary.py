#!/usr/bin/env python3
"""Reads meson's testlog.json files (plus extra results) and prints the closing `N passed, N failed`.

    test_summary.py LOG.json [LOG.json...] [NAME:ok|NAME:fail...]

Every meson test of every log counts once (the g++ build's whole suite, the clang build's fuzz
suite). A skipped test (exit 77: e.g. the real-CUSE tests on a kernel without /dev/cuse) is
neither passed nor failed: it is listed by name above the closing line. Extra results
("name:ok" / "name:fail") come from steps outside meson, such as the clang build.
"""
import json
import sys


def main() -> int:
    logs = [a for a in sys.argv[1:] if a.endswith(".json")]
    extra = [a for a in sys.argv[1:] if not a.endswith(".json")]
    passed, failed, skipped = [], [], []
    for log in logs:
        try:
            with open(log) as f:
                for line in f:
                    if not line.strip():
                        continue
                    t = json.loads(line)
                    name = t.get("name", "?")
                    result = t.get("result", "ERROR")
                    if result == "SKIP":
                        skipped.append(name)
                    elif result in ("OK", "EXPECTEDFAIL"):
                        passed.append(name)
                    else:
                        failed.append(f"{name} ({result})")
        except FileNotFoundError:
            failed.append(f"{log} missing: the test suite did not run")
    for e in extra:
        name, _, result = e.rpartition(":")
        (passed if result == "ok" else failed).append(name)
    for s in skipped:
        print(f"SKIPPED (not counted): {s}")
    for f in failed:
        print(f"FAILED: {f}")
    print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
