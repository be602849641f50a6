#!/usr/bin/env python3
"""`vfio-emu --json`, field by field, against what the mapping client mapped: list, maps,
translate (mapped and unmapped), pt (4K/2M/1G leaves at levels 1/2/3, TCE entries), check,
status, stats (locked memory too), faults and trace."""

import json
import time

from harness import GIB, KIB, MIB, hexs, main

ADDR_MASK = 0x000FFFFFFFFFF000  # VT-d second-level entry: address bits 51:12
VTD_PS = 1 << 7                  # VT-d: page-size bit of a superpage leaf


def u(text):
    return int(text, 16)


def find(items, **fields):
    for item in items:
        if all(item.get(k) == v for k, v in fields.items()):
            return item
    return None


def check_list(rig, check, ready):
    pid = ready["pid"]
    lst = rig.tool_json(check, "list")
    if lst is None:
        return None, None
    vtd_c = find(lst["containers"], groups=[1])
    tce_c = find(lst["containers"], groups=[3])
    check.expect(len(lst["containers"]), 2, "list: containers")
    if not check.true(vtd_c and tce_c, "list: a container with group 1 and one with group 3"):
        return None, None
    check.expect(vtd_c["iommu"], "type1v2", "list: VT-d container iommu")
    check.expect(vtd_c["mappings"], 3, "list: VT-d container mappings")
    check.expect(vtd_c["iova_pgsizes"], hexs(4 * KIB | 2 * MIB | GIB), "list: iova_pgsizes")
    check.expect([f["pid"] for f in vtd_c["files"]], [pid], "list: VT-d container opened by")
    check.expect(len(vtd_c["domains"]), 1, "list: VT-d container domains")
    check.expect(tce_c["iommu"], "spapr-tce-v2", "list: TCE container iommu")
    check.expect(tce_c["owner_pid"], pid, "list: TCE container owner pid")
    check.expect(tce_c["enabled"], True, "list: TCE container enabled")
    tce = ready["tce"]
    win = find(tce_c["windows"], slot=1)
    check.expect(win, {"slot": 1, "start": tce["window_start"], "size": tce["window_size"],
                       "page_shift": tce["page_shift"], "levels": tce["levels"]},
                 "list: the created TCE window")
    check.expect(tce_c["registered"], [{"vaddr": tce["registered"]["vaddr"],
                                        "size": tce["registered"]["size"], "listed": True}],
                 "list: TCE registered memory")
    vtd_domain, tce_domain = vtd_c["domains"][0], tce_c["domains"][0]

    for gid, container, model in ((1, vtd_c["id"], "vtd"), (3, tce_c["id"], "tce")):
        g = find(lst["groups"], id=gid)
        if check.true(g, f"list: group {gid}"):
            check.expect(g["container"], container, f"list: group {gid} container")
            check.expect(g["model"], model, f"list: group {gid} model")
            check.expect((g["open_by"] or {}).get("pid"), pid, f"list: group {gid} open by")
            check.expect(g["viable"], True, f"list: group {gid} viable")
    g2 = find(lst["groups"], id=2)
    check.expect((g2["open_by"], g2["container"]), (None, None), "list: group 2 is free")

    d = find(lst["domains"], id=vtd_domain)
    if check.true(d, f"list: VT-d domain {vtd_domain}"):
        check.expect((d["unit"], d["model"], d["owner"], d["levels"], d["entries"]),
                     ("dmar0", "vtd", f"container {vtd_c['id']}", 4, 5), "list: VT-d domain")
        check.expect(d["mapped_bytes"], 12 * KIB + 2 * MIB + GIB, "list: VT-d mapped bytes")
    d = find(lst["domains"], id=tce_domain)
    if check.true(d, f"list: TCE domain {tce_domain}"):
        check.expect((d["unit"], d["model"], d["owner"], d["entries"], d["mapped_bytes"]),
                     ("phb0", "tce", f"container {tce_c['id']}", tce_entries(tce), MIB),
                     "list: TCE domain")
    check.expect(sorted(f["node"] for f in lst["files"]),
                 ["vfio/1", "vfio/3", "vfio/vfio", "vfio/vfio"], "list: open files")
    check.expect({f["pid"] for f in lst["files"]}, {pid}, "list: open files' pid")
    return (vtd_c["id"], vtd_domain), (tce_c["id"], tce_domain)


def tce_entries(tce):
    """TCEs of the client's mapping: 64K ones with hugetlb pages behind it, else 4K ones."""
    return tce["maps"][0]["size"] >> tce["page_shift"]


def expected_row(source, m, pid):
    return {"source": source, "iova": m["iova"], "last": hexs(u(m["iova"]) + m["size"] - 1),
            "size": m["size"], "vaddr": m["vaddr"], "pid": pid, "prot": m["prot"],
            "state": "mapped"}


def check_maps(rig, check, ready, vtd, tce):
    pid = ready["pid"]
    want_vtd = [expected_row(f"container {vtd[0]}", m, pid) for m in ready["vtd"]]
    want_tce = [expected_row(f"container {tce[0]}", m, pid) for m in ready["tce"]["maps"]]
    r = rig.tool_json(check, "maps")
    if r is not None:
        check.expect(r["mappings"], want_vtd + want_tce, "maps: every mapping")
    r = rig.tool_json(check, "maps", "--container", vtd[0])
    if r is not None:
        check.expect(r["mappings"], want_vtd, "maps --container (VT-d)")
    r = rig.tool_json(check, "maps", "--domain", tce[1])
    if r is not None:
        want = [dict(row, source=f"domain {tce[1]}", pid=0) for row in want_tce]
        check.expect(r["mappings"], want, "maps --domain (TCE)")
    r = rig.tool_json(check, "maps", "--pid", pid)
    if r is not None:
        check.expect(len(r["mappings"]), 4, "maps --pid (the client)")
    r = rig.tool_json(check, "maps", "--pid", 1)
    if r is not None:
        check.expect(r["mappings"], [], "maps --pid 1")


def translate(rig, check, domain, iova, *extra):
    return rig.tool_json(check, "translate", "--domain", domain, hexs(iova), *extra)


def check_translate(rig, check, ready, vtd_domain, tce_domain):
    m4k, m2m, m1g = ready["vtd"]
    for m, offset, levels in ((m4k, 0x1010, [4, 3, 2, 1]), (m2m, 0x1234, [4, 3, 2]),
                              (m1g, 0x12345678, [4, 3])):
        iova = u(m["iova"]) + offset
        t = translate(rig, check, vtd_domain, iova)
        if t is None:
            continue
        what = f"translate {hexs(iova)}"
        page = 4 * KIB if len(levels) == 4 else 2 * MIB if len(levels) == 3 else GIB
        check.expect((t["ok"], t["output"], t["page_size"], t["prot"]),
                     (True, hexs(u(m["vaddr"]) + offset), page, m["prot"]), what)
        check.expect([s["level"] for s in t["steps"]], levels, f"{what}: walk levels")
        check.expect((t["domain"], t["iova"], t["access"], t["model"]),
                     (vtd_domain, hexs(iova), "read", "vtd"), f"{what}: echo")

    # Unmapped: the PDE slot of 0x500000 is empty (level 2); nothing at all under 2 GiB-3 GiB
    # (level 3); a write to the read-only 4K pages; beyond the 48-bit address width.
    for iova, extra, reason, level, code in (
            (0x500000, [], "not-present", 2, "0x6"),
            (0x80000000, [], "not-present", 3, "0x6"),
            (u(m4k["iova"]) + 0x1000, ["--write"], "no-permission", 1, "0x5"),
            (1 << 48, [], "out-of-aperture", 0, "0x4")):
        t = translate(rig, check, vtd_domain, iova, *extra)
        if t is None:
            continue
        what = f"translate {hexs(iova)} {' '.join(extra)}"
        check.expect(t["ok"], False, f"{what}: ok")
        check.expect(t.get("fault"), {"reason": reason, "level": level, "vtd_fault_reason": code},
                     f"{what}: fault")
        check.true("output" not in t, f"{what}: no output on a fault")
        if level > 0:
            check.expect(t["steps"][-1]["level"], level, f"{what}: the walk ends at the fault")

    tce = ready["tce"]
    start, vaddr = u(tce["window_start"]), u(tce["maps"][0]["vaddr"])
    shift = tce["page_shift"]  # 16 with hugetlb pages behind the client's memory, else 12
    t = translate(rig, check, tce_domain, start + 0x10010, "--write")
    if t is not None:
        check.expect((t["ok"], t["output"], t["page_size"], t["prot"], t["access"]),
                     (True, hexs(vaddr + 0x10010), 1 << shift, "rw", "write"), "translate TCE")
        check.expect([s["level"] for s in t["steps"]], [2, 1], "translate TCE: walk levels")
        per_table = 1 << -(-(30 - shift) // 2)  # a 1G window in 2 levels
        check.expect(t["steps"][-1]["index"], (0x10010 >> shift) % per_table,
                     "translate TCE: TCE index")
    # 2M past the start: in the first leaf table (64K TCEs: present, the TCE is not), or past
    # it (4K TCEs: 512 per table, the second table was never allocated).
    beyond = 2 if (2 * MIB >> shift) >= (1 << -(-(30 - shift) // 2)) else 1
    for iova, reason, level in ((start + 2 * MIB, "not-present", beyond),
                                (0x40000000, "out-of-aperture", 0)):
        t = translate(rig, check, tce_domain, iova)
        if t is not None:
            check.expect((t["ok"], t.get("fault")), (False, {"reason": reason, "level": level}),
                         f"translate TCE {hexs(iova)}")


def check_pt(rig, check, ready, vtd_domain, tce_domain):
    m4k, m2m, m1g = ready["vtd"]
    pt = rig.tool_json(check, "pt", "--domain", vtd_domain)
    if pt is not None:
        check.expect((pt["domain"], pt["model"], pt["levels"], pt["truncated"]),
                     (vtd_domain, "vtd", 4, False), "pt VT-d")
        want = [(u(m4k["iova"]) + i * 4 * KIB, 1, 4 * KIB, u(m4k["vaddr"]) + i * 4 * KIB, "r-")
                for i in range(3)]
        want += [(u(m2m["iova"]), 2, 2 * MIB, u(m2m["vaddr"]), "rw"),
                 (u(m1g["iova"]), 3, GIB, u(m1g["vaddr"]), "rw")]
        rows = pt["rows"]
        check.expect([(u(r["iova"]), r["level"], r["size"], u(r["output"]), r["prot"])
                      for r in rows], want, "pt VT-d: leaves (iova, level, size, output, prot)")
        for r in rows:
            what = f"pt VT-d row {r['iova']}"
            entries = [u(e) for e in r["entries"]]
            check.expect(len(entries), 4, f"{what}: one entry per level")
            check.expect(r["iova_pfn"], hexs(u(r["iova"]) >> 12), f"{what}: iova_pfn")
            leaf = 4 - r["level"]  # entries[0] is the top level (4)
            check.expect(entries[leaf] & ADDR_MASK, u(r["output"]), f"{what}: leaf address")
            check.expect(bool(entries[leaf] & VTD_PS), r["level"] > 1, f"{what}: PS bit")
            check.expect(entries[leaf + 1:], [0] * (3 - leaf), f"{what}: nothing below the leaf")
            check.true(all(e & 1 for e in entries[:leaf]), f"{what}: tables above are present")
        check.expect(len({r["entries"][0] for r in rows}), 1, "pt VT-d: one PML4E for all")

    pt = rig.tool_json(check, "pt", "--domain", vtd_domain, "--iova",
                       f"{m2m['iova']}..{hexs(u(m2m['iova']) + m2m['size'] - 1)}")
    if pt is not None:
        check.expect([(r["iova"], r["level"]) for r in pt["rows"]], [(m2m["iova"], 2)],
                     "pt VT-d --iova A..B: the 2M leaf")
    pt = rig.tool_json(check, "pt", "--domain", vtd_domain, "--iova", hexs(u(m4k["iova"]) + 0x1800))
    if pt is not None:
        check.expect([r["iova"] for r in pt["rows"]], [hexs(u(m4k["iova"]) + 0x1000)],
                     "pt VT-d --iova A: the leaf covering A")

    tce = ready["tce"]
    pt = rig.tool_json(check, "pt", "--domain", tce_domain)
    if pt is not None:
        check.expect((pt["domain"], pt["model"]), (tce_domain, "tce"), "pt TCE")
        wins = {w["slot"]: w for w in pt["windows"]}
        check.expect(sorted(wins), [0, 1], "pt TCE: window slots")
        check.expect(wins.get(0, {}).get("entries"), [], "pt TCE: the default window is empty")
        w = wins.get(1, {})
        check.expect((w.get("start"), w.get("size"), w.get("page_shift"), w.get("levels")),
                     (tce["window_start"], tce["window_size"], tce["page_shift"], tce["levels"]),
                     "pt TCE: the created window")
        start, vaddr = u(tce["window_start"]), u(tce["maps"][0]["vaddr"])
        page = 1 << tce["page_shift"]  # 64K with hugetlb pages, else 4K (mapping_client.c)
        want = [{"index": i, "bus": hexs(start + i * page), "output": hexs(vaddr + i * page),
                 "prot": "rw"} for i in range(tce_entries(tce))]
        got = w.get("entries", [])
        check.expect([{k: e[k] for k in ("index", "bus", "output", "prot")} for e in got], want,
                     "pt TCE: one TCE per page (index, bus, output, prot)")
        for e in got:
            check.expect((u(e["tce"]) & ~0xFFF, u(e["tce"]) & 3), (u(e["output"]), 3),
                         f"pt TCE index {e['index']}: raw TCE = output | read | write")


def check_rest(rig, check, ready, vtd, tce):
    r = rig.tool("--json", "check")
    check.expect(r.rc, 0, "check: exit code")
    check.expect(json.loads(r.out) if r.rc == 0 else None,
                 {"ok": True, "checked": 2, "differences": []}, "check: result")
    s = rig.tool_json(check, "status")
    if s is not None:
        check.expect((s["transport"], s["node_dir"], s["counts"]["domains"]),
                     ("fuse", rig.dev, 2), "status")
    s = rig.tool_json(check, "stats")
    if s is not None:
        maps = find(s["ioctls"], command="VFIO_IOMMU_MAP_DMA", backend="type1")
        check.expect(maps and (maps["calls"], maps["errors"]), (3, 0), "stats: type1 MAP_DMA")
        d = find(s["domains"], id=tce[1])
        check.expect(d and d["entries"], tce_entries(ready["tce"]), "stats: TCE domain entries")
    f = rig.tool_json(check, "faults")
    if f is not None:
        check.expect(f, {"faults": [], "last_seq": 0}, "faults: none yet")
    t = rig.tool_json(check, "trace")
    if t is not None:
        maps = [r for r in t["records"] if r["command"] == "VFIO_IOMMU_MAP_DMA"]
        check.expect(len(maps), 4, "trace: MAP_DMA records")
        check.expect({(r["pid"], r["result"]) for r in maps}, {(ready["pid"], 0)},
                     "trace: MAP_DMA by the client, successful")
        check.expect(t["last_seq"], t["records"][-1]["seq"] if t["records"] else 0,
                     "trace: last_seq")
    t = rig.tool_json(check, "trace", "--since", 2, "--max", 3)
    if t is not None:
        check.expect([r["seq"] for r in t["records"]], [3, 4, 5], "trace --since 2 --max 3")


def test(rig, check):
    ready = rig.ready
    vtd, tce = check_list(rig, check, ready)
    if vtd is None:
        return
    check_maps(rig, check, ready, vtd, tce)
    check_translate(rig, check, ready, vtd[1], tce[1])
    check_pt(rig, check, ready, vtd[1], tce[1])
    check_rest(rig, check, ready, vtd, tce)
    check_locked_memory(rig, check, ready, tce)


def check_locked_memory(rig, check, ready, tce):
    """The client's charge: the VT-d pages it mapped and what its sPAPR container charged
    (registered memory and TCE tables); nothing once it has exited."""
    lst = rig.tool_json(check, "list")
    s = rig.tool_json(check, "stats")
    if lst is None or s is None:
        return
    tce_c = find(lst["containers"], id=tce[0])
    vtd_mapped = 12 * KIB + 2 * MIB + GIB
    check.expect(s["locked_memory"],
                 [{"pid": ready["pid"], "bytes": vtd_mapped + tce_c["locked_bytes"]}],
                 "stats: locked_memory while the client holds its mappings")
    rig.stop_client()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        s = rig.tool_json(check, "stats")
        if s is None or s["locked_memory"] == []:
            break
        time.sleep(0.05)
    check.expect(s and s["locked_memory"], [], "stats: locked_memory after the client exited")


if __name__ == "__main__":
    main(test)
