#!/usr/bin/env python3
"""Long answers come in pages (issue 12): `maps` and `pt` replies hold at most "max" rows
(default 1000, at most 10000) and name the "next" page, and the `vfio-emu` tool fetches page
after page, so that what it prints is the whole answer, as before. Before the fix one `maps`
reply held every mapping (300,000 of them took the daemon to 575 MB).

The mapping client adds 20,000 small type1 mappings and an IOAS with 3 areas (--small), so the
pages cross from one source to the next (VT-d container, TCE container, IOAS)."""

import json
import time

from harness import KIB, hexs, main

SMALL = 20000


def u(text):
    return int(text, 16)


def pages(c, check, request, cursor, max_pages=100000, seconds=60):
    """Every page of `request` over connection c; the rows of each page."""
    out = []
    request = dict(request)
    deadline = time.monotonic() + seconds
    while len(out) < max_pages and time.monotonic() < deadline:
        reply = c.request(request)
        if not check.true(reply and reply.get("ok") is True, f"{request}: {reply!r}"[:300]):
            return None
        out.append(reply["result"])
        nxt = reply["result"].get("next")
        if nxt is None:
            return out
        check.true(isinstance(nxt, str), f"{request}: next is a string ({nxt!r})")
        request[cursor] = nxt
    check.true(False, f"{request}: more than {len(out)} pages or {seconds} s")
    return None


def check_maps(rig, check, ready):
    pid = ready["pid"]
    small = ready["small"]
    r = rig.tool_json(check, "maps")
    if r is None:
        return
    rows = r["mappings"]
    check.expect(list(r), ["mappings"], "maps --json: the result as one answer (no \"next\")")
    check.expect(len(rows), 3 + SMALL + 1 + 3, "maps --json: every mapping")
    small_rows = [m for m in rows if u(m["iova"]) >= u(small["iova"])
                  and m["source"].startswith("container") and m["size"] == 4 * KIB]
    want = [{"iova": hexs(u(small["iova"]) + i * small["stride"]),
             "vaddr": hexs(u(small["vaddr"]) + i * 4 * KIB)} for i in range(SMALL)]
    check.expect([{"iova": m["iova"], "vaddr": m["vaddr"]} for m in small_rows], want,
                 f"maps --json: the {SMALL} small mappings, in order")
    check.expect({(m["pid"], m["prot"], m["state"]) for m in small_rows}, {(pid, "rw", "mapped")},
                 "maps --json: the small mappings' pid, prot, state")
    ioas_rows = [m for m in rows if m["source"].startswith("iommufd")]
    check.expect([(m["iova"], m["state"]) for m in ioas_rows],
                 [(a["iova"], "recorded") for a in ready["ioas"]["areas"]], "maps --json: IOAS areas")
    check.expect(rows[-3:], ioas_rows, "maps --json: the IOAS areas come last")

    # The text output too: a heading and one line per mapping.
    t = rig.tool("maps")
    check.expect((t.rc, len(t.out.splitlines())), (0, 1 + len(rows)), "maps: lines")

    c = rig.control(timeout=30)
    # A small page: at most that many rows, and a cursor.
    reply = c.request({"cmd": "maps", "max": 7})
    res = reply and reply.get("result") or {}
    check.expect(len(res.get("mappings", [])), 7, "maps max 7: rows")
    check.true(isinstance(res.get("next"), str), f"maps max 7: a cursor ({res.get('next')!r})")
    check.expect(res.get("mappings"), rows[:7], "maps max 7: the first rows")
    # No max: a bounded default; a huge max: the daemon's cap.
    for req, n in (({"cmd": "maps"}, 1000), ({"cmd": "maps", "max": 10**12}, 10000)):
        reply = c.request(req)
        res = reply and reply.get("result") or {}
        check.expect(len(res.get("mappings", [])), n, f"{req}: rows")
        check.true(isinstance(res.get("next"), str), f"{req}: a cursor")

    # Page by page, with page sizes that end pages inside and at the end of every source: the
    # same rows, each once.
    for size in (997, 10000, 20003, 20004):
        got = pages(c, check, {"cmd": "maps", "max": size}, "after")
        if got is not None:
            check.true(all(len(p["mappings"]) <= min(size, 10000) for p in got),
                       f"maps max {size}: page sizes")
            check.expect([m for p in got for m in p["mappings"]], rows, f"maps max {size}: pages")
    # The last rows one by one: from the VT-d container to the TCE one to the IOAS.
    cursor = None
    for _ in range(2):
        reply = c.request({"cmd": "maps", "max": 10000, "after": cursor})
        cursor = reply and reply.get("result", {}).get("next")
    got = pages(c, check, {"cmd": "maps", "max": 1, "after": cursor}, "after", max_pages=20)
    if got is not None:
        check.expect([m for p in got for m in p["mappings"]], rows[20000:],
                     "maps max 1: the last rows across sources")
        check.expect([len(p["mappings"]) for p in got], [1] * 7, "maps max 1: one row per page")

    # Filters page too.
    vtd_container = int(rows[0]["source"].split()[1])
    for args, req, want in (
            (["--container", vtd_container], {"container": vtd_container}, rows[:3 + SMALL]),
            (["--ioas", ready["ioas"]["id"]], {"ioas": ready["ioas"]["id"]}, ioas_rows),
            (["--pid", pid], {"pid": pid}, rows)):
        r = rig.tool_json(check, "maps", *args)
        check.expect(r and r["mappings"], want, f"maps {args}")
        got = pages(c, check, dict(req, cmd="maps", max=4999), "after")
        check.expect(got and [m for p in got for m in p["mappings"]], want, f"maps {req} in pages")

    # A domain's runs: the 20,000 small pages are not contiguous, each is a run.
    lst = rig.tool_json(check, "list")
    domain = next(d["domains"][0] for d in lst["containers"] if d["id"] == vtd_container)
    r = rig.tool_json(check, "maps", "--domain", domain)
    runs = r and r["mappings"] or []
    check.expect(len([m for m in runs if m["size"] == 4 * KIB and u(m["iova"]) >= u(small["iova"])]),
                 SMALL, "maps --domain: a run per small mapping")
    got = pages(c, check, {"cmd": "maps", "domain": domain, "max": 333}, "after")
    check.expect(got and [m for p in got for m in p["mappings"]], runs, "maps --domain in pages")

    # Cursors that are not ones, or of another request's pages.
    first_cursor = c.request({"cmd": "maps", "max": 1})["result"]["next"]
    domain_cursor = c.request({"cmd": "maps", "domain": domain, "max": 1})["result"]["next"]
    for what, req in (("garbage", {"cmd": "maps", "after": "zzz"}),
                      ("empty", {"cmd": "maps", "after": ""}),
                      ("a number", {"cmd": "maps", "after": 5}),
                      ("too long", {"cmd": "maps", "after": "c1:" + "f" * 100}),
                      ("overflow", {"cmd": "maps", "after": "c1:0x1" + "0" * 20}),
                      ("a domain's, without domain", {"cmd": "maps", "after": domain_cursor}),
                      ("not a domain's, with domain",
                       {"cmd": "maps", "domain": domain, "after": first_cursor}),
                      ("another domain's",
                       {"cmd": "maps", "domain": domain, "after": "d999:0x0"}),
                      ("max 0", {"cmd": "maps", "max": 0})):
        reply = c.request(req)
        check.expect(reply and (reply.get("ok"), reply.get("errno")), (False, "EINVAL"),
                     f"maps with a bad cursor ({what})")
    # Past the end: nothing more.
    reply = c.request({"cmd": "maps", "after": "i" + "9" * 19 + ":0:0x0"})
    check.expect(reply and reply.get("result"), {"mappings": [], "next": None},
                 "maps after the last source")
    return domain


def check_pt(rig, check, ready, domain):
    small = ready["small"]
    pt = rig.tool_json(check, "pt", "--domain", domain)
    if pt is None:
        return
    rows = pt["rows"]
    check.expect(pt["truncated"], False, "pt --json: not truncated")
    check.true("next" not in pt, "pt --json: the result as one answer (no \"next\")")
    # 3 4K pages, a 2M and a 1G leaf, and the small ones.
    check.expect(len(rows), 5 + SMALL, "pt --json: every leaf")
    check.expect([r["iova"] for r in rows[5:]],
                 [hexs(u(small["iova"]) + i * small["stride"]) for i in range(SMALL)],
                 "pt --json: the small leaves")
    t = rig.tool("pt", "--domain", domain)
    check.expect((t.rc, sum(" |\t0x" in l for l in t.out.splitlines())), (0, len(rows)),
                 "pt: a line per leaf")

    c = rig.control(timeout=30)
    reply = c.request({"cmd": "pt", "domain": domain, "max": 5})
    res = reply and reply.get("result") or {}
    check.expect((len(res.get("rows", [])), res.get("truncated"), res.get("next")),
                 (5, True, small["iova"]), "pt max 5: rows, truncated, next")
    got = pages(c, check, {"cmd": "pt", "domain": domain, "max": 4096}, "first")
    check.expect(got and [r for p in got for r in p["rows"]], rows, "pt in pages")
    # A range: pages stop at its end.
    last = hexs(u(small["iova"]) + 99 * small["stride"])
    got = pages(c, check, {"cmd": "pt", "domain": domain, "first": small["iova"], "last": last,
                           "max": 7}, "first")
    check.expect(got and len([r for p in got for r in p["rows"]]), 100, "pt A..B in pages of 7")

    # TCE: the client's entries (16 64K TCEs with hugetlb memory, else 256 4K ones:
    # mapping_client.c) in pages of 3, every window listed on every page.
    tce = ready["tce"]
    n = tce["maps"][0]["size"] >> tce["page_shift"]
    tce_domain = next(d["id"] for d in rig.tool_json(check, "list")["domains"]
                      if d["model"] == "tce")
    got = pages(c, check, {"cmd": "pt", "domain": tce_domain, "max": 3}, "first")
    if got is not None:
        check.expect(len(got), -(-n // 3), "pt TCE max 3: pages")
        entries = [e for p in got for w in p["windows"] for e in w["entries"]]
        whole = rig.tool_json(check, "pt", "--domain", tce_domain)
        want = [e for w in whole["windows"] for e in w["entries"]] if whole else None
        check.expect(entries, want, "pt TCE in pages: the same entries")
        check.expect(len(entries), n, "pt TCE: one entry per TCE")


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))


def test(rig, check):
    start = time.monotonic()
    ready = rig.start_client("--small", SMALL, timeout=120)
    print(f"{SMALL} mappings in {time.monotonic() - start:.1f} s")
    pid = rig.daemon.pid
    before = vm_hwm_kib(pid)
    domain = check_maps(rig, check, ready)
    print(f"daemon VmHWM {before} KiB before maps, {vm_hwm_kib(pid)} KiB after")
    if domain is not None:
        check_pt(rig, check, ready, domain)
    rig.daemon_alive(check, "after the paged answers")


if __name__ == "__main__":
    main(test, with_client=False)
