#!/usr/bin/env python3
"""The selftests runner's own parts, without network or Linux sources: the TAP reader, the
expectations comparison (each way a result can differ from the file must be a mismatch), the
choice of mirror from apt's sources, and "unreachable archive" -> skip."""
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import expectations as ex  # noqa: E402
from debian_source import DebianLinux, SourceError, Unreachable, machine_debian_sources  # noqa: E402
from kselftest_tap import parse  # noqa: E402

HARNESS_OUTPUT = """\
TAP version 13
1..4
# Starting 4 tests from 2 test cases.
#  RUN           fix.mode_a.works ...
#            OK  fix.mode_a.works
ok 1 fix.mode_a.works
#  RUN           fix.mode_a.breaks ...
/src/lib/drivers/ioat/ioat.c:45: Assertion Failure

  Expression: ((void *)0) != device->bars[0].vaddr
  Observed: 0 != 0
  [errno: 0 - Success]

# breaks: Test failed
#          FAIL  fix.mode_a.breaks
not ok 2 fix.mode_a.breaks
#  RUN           fix.mode_a.skips ...
#      SKIP      MSI-x: not supported
ok 3 fix.mode_a.skips # SKIP MSI-x: not supported
#  RUN           other.errno ...
/src/lib/vfio_pci_device.c:327: Assertion Failure
  Expression: device->fd >= 0
  Observed: 0xffffffffffffffff >= 0
  [errno: 3 - No such process]
not ok 4 other.errno
# FAILED: 2 / 4 tests passed.
"""


def table(text: str):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        return ex.load(Path(f.name))
    finally:
        Path(f.name).unlink()


class TapTest(unittest.TestCase):
    def test_cases_and_reasons(self):
        r = parse("bin", HARNESS_OUTPUT, 1)
        self.assertEqual(r.planned, 4)
        self.assertIsNone(r.whole)
        self.assertEqual([(c.name, c.status) for c in r.cases],
                         [("fix.mode_a.works", "pass"), ("fix.mode_a.breaks", "fail"),
                          ("fix.mode_a.skips", "skip"), ("other.errno", "fail")])
        self.assertEqual(r.cases[1].reason,
                         "ioat.c:45: ((void *)0) != device->bars[0].vaddr (observed 0 != 0)")
        self.assertEqual(r.cases[2].reason, "MSI-x: not supported")
        self.assertIn("[errno: 3 - No such process]", r.cases[3].reason)

    def test_whole_binary(self):
        self.assertEqual(parse("b", "1..0 # SKIP SR-IOV may not be supported\n", 4).whole.status,
                         "skip")
        w = parse("b", "No driver found for device 0000:00:01.0\n", 4).whole
        self.assertEqual((w.status, w.reason), ("skip", "No driver found for device 0000:00:01.0"))
        w = parse("b", "x.c:1: Assertion Failure\n Expression: a\n Observed: b\n", 1).whole
        self.assertEqual(w.status, "fail")
        self.assertIn("x.c:1:", w.reason)

    def test_stopped_early(self):
        r = parse("b", "1..3\nok 1 a\n", None, 300)
        self.assertEqual(len(r.cases), 1)
        self.assertEqual(r.whole.status, "fail")
        self.assertIn("timed out after 300 s after 1 of 3", r.whole.reason)


class CompareTest(unittest.TestCase):
    RESULT = parse("bin", HARNESS_OUTPUT, 1)

    def verdicts(self, text: str):
        rows = ex.compare("dev", self.RESULT, table(text))
        return {r.case.name: (r.verdict, r.why) for r in rows}

    def test_as_expected(self):
        v = self.verdicts("""
dev bin fix.mode_a.works pass
dev bin fix.mode_a.breaks fail needs BAR mmap | bars[0].vaddr
dev bin fix.mode_a.skips skip no MSI-X
dev bin other.errno fail threads | No such process
""")
        self.assertTrue(all(verdict == "ok" for verdict, _ in v.values()), v)

    def test_every_difference_is_a_mismatch(self):
        v = self.verdicts("""
dev bin fix.mode_a.works fail it used to fail
dev bin fix.mode_a.breaks pass
dev bin fix.mode_a.skips pass
dev bin not.run.any.more pass
""")
        self.assertIn("now passes", v["fix.mode_a.works"][1])  # expected failure fixed
        self.assertEqual(v["fix.mode_a.breaks"][0], "MISMATCH")  # expected pass fails
        self.assertEqual(v["fix.mode_a.skips"][0], "MISMATCH")  # expected pass skips
        self.assertIn("not in the expectations", v["other.errno"][1])  # unlisted case
        self.assertIn("did not run", v["not.run.any.more"][1])

    def test_failing_for_another_reason(self):
        v = self.verdicts("dev bin fix.mode_a.breaks fail needs BAR mmap | something else\n")
        self.assertIn("not with `something else`", v["fix.mode_a.breaks"][1])

    def test_skips(self):
        passing = parse("bin", "1..1\nok 1 a\n", 0)
        rows = ex.compare("dev", passing, table("dev bin a skip no hugetlb pages\n"))
        self.assertEqual(rows[0].verdict, "MISMATCH")
        rows = ex.compare("dev", passing, table("dev bin a skip-or-pass no hugetlb pages\n"))
        self.assertEqual(rows[0].verdict, "ok")
        failing = parse("bin", "1..1\nnot ok 1 a\n", 1)
        rows = ex.compare("dev", failing, table("dev bin a skip-or-pass no hugetlb pages\n"))
        self.assertEqual(rows[0].verdict, "MISMATCH")

    def test_pass_with_signature_needs_it_in_the_output(self):
        # A check the case skips silently (vfio_dma_mapping_test without Intel IOMMU debugfs)
        # must show in its output.
        out = ("1..2\n# Searching for IOVA 0x0\n# Found IOMMU mappings for IOVA 0x0:\nok 1 a\n"
               "# Searching for IOVA 0x0\nok 2 b\n")
        result = parse("bin", out, 0)
        self.assertIn("Found IOMMU mappings", result.cases[0].output)
        self.assertNotIn("Found IOMMU mappings", result.cases[1].output)
        rows = ex.compare("dev", result, table(
            "dev bin a pass page tables checked | Found IOMMU mappings\n"
            "dev bin b pass page tables checked | Found IOMMU mappings\n"))
        self.assertEqual([r.verdict for r in rows], ["ok", "MISMATCH"])
        self.assertIn("lacks `Found IOMMU mappings`", rows[1].why)
        rows = ex.compare("dev", result, table(
            "dev bin a skip-or-pass hugetlb | Found IOMMU mappings\n"
            "dev bin b skip-or-pass hugetlb | Found IOMMU mappings\n"))
        self.assertEqual([r.verdict for r in rows], ["ok", "MISMATCH"])

    def test_whole_binary_now_runs(self):
        rows = ex.compare("dev", parse("bin", "1..1\nok 1 a\n", 0),
                          table("dev bin - fail needs BAR mmap\ndev bin a pass\n"))
        self.assertEqual([r.verdict for r in rows], ["ok", "MISMATCH"])

    def test_bad_files(self):
        for text in ("dev bin a maybe\n", "dev bin a fail\n", "dev bin a pass\ndev bin a pass\n"):
            with self.assertRaises(ex.ExpectationsError):
                table(text)


class AptSourcesTest(unittest.TestCase):
    def test_mirror_from_machine_sources(self):
        with tempfile.TemporaryDirectory() as d:
            etc = Path(d)
            (etc / "sources.list.d").mkdir()
            (etc / "sources.list").write_text(
                "# nothing\ndeb http://security.debian.org/debian-security bookworm-security main\n")
            (etc / "sources.list.d/a.sources").write_text(
                "Types: deb\n# comment\nURIs: http://mirror.example/debian/\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                "Types: deb\nURIs: http://mirror.example/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n")
            (etc / "sources.list.d/b.sources.disabled").write_text(
                "Types: deb\nURIs: http://other.example/debian\nSuites: bookworm\n")
            (etc / "sources.list.d/c.list").write_text(
                "deb [arch=amd64 signed-by=/k.gpg] https://vendor.example/apt nodistro main\n"
                "deb https://vendor.example/apt cloud-sdk-bookworm main\n")
            found = machine_debian_sources(etc, codename="bookworm")
            self.assertEqual([(s.uri, s.signed_by) for s in found],
                             [("http://mirror.example/debian",
                               "/usr/share/keyrings/debian-archive-keyring.gpg")])

    def test_unreachable_archive_is_a_skip(self):
        with tempfile.TemporaryDirectory() as d:
            src = DebianLinux(Path(d), "7.3", "trixie-backports",
                              mirror="http://127.0.0.1:9/debian", timeout=60, log=lambda *a: None)
            with self.assertRaises(Unreachable):
                src.obtain()

    def test_missing_keyring_is_a_failure(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(SourceError):
                DebianLinux(Path(d), "7.3", "trixie-backports", mirror="http://127.0.0.1:9/debian",
                            keyring=str(Path(d) / "no-such-keyring.gpg"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
