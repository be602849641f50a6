#!/usr/bin/env python3
"""`vfio-emu` without --json: the tables print and are aligned, sizes are human, `pt` of a VT-d
domain has the layout of Linux's intel-iommu debugfs domain_translation_struct, `pt` of a TCE
domain a header line per window and a line per TCE, `translate` shows the walk and the result
or the fault."""

import json
import re

from harness import hexs, main

# Linux 7.3 drivers/iommu/intel/debugfs.c: the header
# "%-17s\t%-18s\t%-18s\t%-18s\t%-18s\t%-s\n" and dump_page_info()'s
# "0x%013lx |\t0x%016llx\t0x%016llx\t0x%016llx", then "\t0x%016llx" for the PDE if it is set
# and, after it, for the PTE if it is set.
DEBUGFS_HEADER = "IOVA_PFN         \tPML5E             \tPML4E             \tPDPE              \tPDE               \tPTE"
DEBUGFS_ROW = re.compile(r"^0x([0-9a-f]{13}) \|\t" + r"\t".join(["0x([0-9a-f]{16})"] * 3) +
                         r"(?:\t0x([0-9a-f]{16}))?(?:\t0x([0-9a-f]{16}))?$")


def columns_align(check, lines, header_words, what):
    """Every row's cells start where the header's titles start (left-aligned columns)."""
    header = lines[0]
    starts = [header.index(w) for w in header_words]
    for line in lines[1:]:
        for s in starts[1:]:
            check.true(s < len(line) and line[s - 1] == " " and line[s - 2] == " ",
                       f"{what}: a column starts at {s} in {line!r} (header {header!r})")


def test(rig, check):
    ready = rig.ready
    ids = json.loads(rig.tool("--json", "list").out)
    vtd_domain = next(d["id"] for d in ids["domains"] if d["model"] == "vtd")
    tce_domain = next(d["id"] for d in ids["domains"] if d["model"] == "tce")
    m4k, m2m, m1g = ready["vtd"]

    r = rig.tool("status")
    check.expect(r.rc, 0, "status: exit code")
    check.true(re.search(r"^transport +fuse$", r.out, re.M), f"status: transport line in {r.out!r}")
    check.true(f"nodes      {rig.dev}" in r.out, "status: node directory")

    r = rig.tool("list")
    check.expect(r.rc, 0, "list: exit code")
    for title in ("IOMMU units", "Groups", "Devices", "Containers", "sPAPR DMA windows",
                  "sPAPR registered memory", "iommufd contexts", "Domains", "Open files"):
        check.true(re.search(f"^{title}$", r.out, re.M), f"list: section {title!r}")
    groups = r.out.split("Groups\n", 1)[1].split("\n\n", 1)[0].splitlines()
    check.expect(len(groups), 6, "list: groups table: header + 5 groups")
    columns_align(check, groups, ["GROUP", "UNIT", "MODEL", "DEVICES", "OPEN BY"], "list groups")
    check.true(re.search(rf"^  1 +dmar0 +vtd +0000:00:01.0 +pid {ready['pid']} \(file \d+\)",
                         "\n".join(groups), re.M), f"list: group 1 row in {groups!r}")

    r = rig.tool("maps")
    check.expect(r.rc, 0, "maps: exit code")
    lines = r.out.splitlines()
    check.expect(len(lines), 5, "maps: header + 4 mappings")
    columns_align(check, lines, ["SOURCE", "IOVA", "LAST", "SIZE", "VADDR"], "maps")
    for m, size in ((m4k, "12K"), (m2m, "2M"), (m1g, "1G")):
        check.true(re.search(rf"^container \d+ +{m['iova']} +{hexs(int(m['iova'], 16) + m['size'] - 1)}"
                             rf" +{size} +{m['vaddr']} +{ready['pid']} +{m['prot']} +mapped$",
                             r.out, re.M), f"maps: row for {m['iova']} ({size}) in {r.out!r}")

    r = rig.tool("pt", "--domain", vtd_domain)
    check.expect(r.rc, 0, "pt VT-d: exit code")
    lines = r.out.splitlines()
    check.true(lines and lines[0].startswith(f"Domain {vtd_domain} on dmar0 (vtd, 4 levels)"),
               f"pt VT-d: title line {lines[:1]!r}")
    check.expect(lines[1] if len(lines) > 1 else None, DEBUGFS_HEADER, "pt VT-d: debugfs header")
    rows = [DEBUGFS_ROW.match(line) for line in lines[2:] if line]
    check.expect(len(rows), 5, "pt VT-d: one row per leaf")
    check.true(all(rows), f"pt VT-d: rows in the debugfs format: {lines[2:]!r}")
    if len(rows) == 5 and all(rows):
        pfns = [int(m.group(1), 16) for m in rows]
        check.expect(pfns, [0x100, 0x101, 0x102, 0x200, 0x40000], "pt VT-d: IOVA_PFN column")
        nonzero = [tuple(int(m.group(i) or "0", 16) != 0 for i in range(2, 7)) for m in rows]
        # PML5E is 0 (a 4-level domain); the levels below a superpage leaf are 0.
        check.expect(nonzero, [(False, True, True, True, True)] * 3 +
                     [(False, True, True, True, False), (False, True, True, False, False)],
                     "pt VT-d: which of PML5E..PTE are present for 4K, 2M, 1G leaves")
        check.expect(int(rows[4].group(4), 16) & ~0xFFF & ((1 << 52) - 1), int(m1g["vaddr"], 16),
                     "pt VT-d: the 1G leaf's PDPE holds its address")

    r = rig.tool("pt", "--domain", tce_domain)
    check.expect(r.rc, 0, "pt TCE: exit code")
    tce = ready["tce"]
    start = int(tce["window_start"], 16)
    # 64K TCEs when the client found hugetlb pages, 4K TCEs otherwise (mapping_client.c).
    page = {12: "4K", 16: "64K"}[tce["page_shift"]]
    present = tce["maps"][0]["size"] >> tce["page_shift"]
    check.true(re.search(rf"^Window 1: bus {hexs(start)}\.\.{hexs(start + tce['window_size'] - 1)}"
                         rf" \(1G\), {page} pages, 2 levels of \d+ entries, table \S+: "
                         rf"{present} TCEs present$",
                         r.out, re.M), f"pt TCE: window 1 header line in {r.out!r}")
    check.true(re.search(r"^Window 0: .*: no TCE present$", r.out, re.M), "pt TCE: empty window 0")
    tces = re.findall(r"^ +(\d+)  (0x[0-9a-f]+) +(0x[0-9a-f]+) +(0x[0-9a-f]+) +rw$", r.out, re.M)
    check.expect([int(t[0]) for t in tces], list(range(present)), "pt TCE: one line per TCE")
    check.expect(tces[0][1:] if tces else None,
                 (hexs(start), hexs(int(tce["maps"][0]["vaddr"], 16) | 3), tce["maps"][0]["vaddr"]),
                 "pt TCE: index 0 (bus, raw TCE, output)")

    iova = int(m2m["iova"], 16) + 0x1234
    r = rig.tool("translate", "--domain", vtd_domain, hexs(iova))
    check.expect(r.rc, 0, "translate: exit code")
    check.true(re.search(r"^ +4 +PML4E .*\n +3 +PDPE .*\n +2 +PDE +0x[0-9a-f]+ +1 +0x[0-9a-f]+$",
                         r.out, re.M), f"translate: the walk, level by level, in {r.out!r}")
    check.true(f"result: {hexs(int(m2m['vaddr'], 16) + 0x1234)} (2M page, rw)" in r.out,
               f"translate: the result in {r.out!r}")
    r = rig.tool("translate", "--domain", vtd_domain, "0x500000")
    check.true("fault: not present at level 2 (PDE); VT-d fault reason 0x6" in r.out,
               f"translate: not present in {r.out!r}")
    r = rig.tool("translate", "--domain", vtd_domain, "--write", m4k["iova"])
    check.true("fault: no write permission at level 1 (PTE); VT-d fault reason 0x5" in r.out,
               f"translate: no permission in {r.out!r}")
    r = rig.tool("translate", "--domain", tce_domain, "0x40000000")
    check.true("fault: outside the aperture\n" in r.out, f"translate: out of aperture in {r.out!r}")

    r = rig.tool("check")
    check.expect((r.rc, r.out), (0, "check: 2 page tables checked, no differences\n"), "check")
    for cmd in ("stats", "faults", "trace"):
        r = rig.tool(cmd)
        check.true(r.rc == 0 and r.out and not r.err, f"{cmd}: prints, exit 0: {r!r}")
    r = rig.tool("trace")
    check.true(re.search(r"^ +\d+  \d\d:\d\d:\d\d\.\d{3} +\d+ +vfio/vfio +VFIO_IOMMU_MAP_DMA +0 +"
                         rf"flags=0x3 vaddr={m2m['vaddr']} iova={m2m['iova']} size=0x200000$",
                         r.out, re.M), f"trace: the 2M MAP_DMA in {r.out!r}")


if __name__ == "__main__":
    main(test)
