#include "tools/human_output.h"

#include "base/vtd_debugfs_format.h"

#include <fmt/core.h>

#include <cinttypes>
#include <cmath>
#include <ctime>
#include <map>

namespace vfio_emu::tools {
namespace {

using Col = TextTable::Column;
constexpr auto kRight = TextTable::Align::kRight;

void section(std::FILE* out, const char* title, const TextTable& table) {
  std::fprintf(out, "%s\n", title);
  if (table.empty())
    std::fprintf(out, "  (none)\n");
  else
    table.print(out, "  ");
  std::fprintf(out, "\n");
}

// A page-size list, from an array of sizes or from a "0x..." bitmap: "4K,2M,1G".
std::string page_sizes_cell(const Json& j, const char* key) {
  std::string s;
  auto add = [&](u64 size) { s += (s.empty() ? "" : ",") + human_size(size); };
  if (field(j, key).is_array()) {
    for (const Json& v : array_field(j, key))
      if (v.is_number_unsigned()) add(v.get<u64>());
  } else if (const auto bitmap = json_u64(j, key)) {
    for (int b = 0; b < 64; ++b)
      if (*bitmap & (u64{1} << b)) add(u64{1} << b);
  }
  return s.empty() ? "-" : s;
}

// [{"first": .., "last": ..}] -> "0xfee00000-0xfeefffff,..."
std::string ranges_cell(const Json& j, const char* key) {
  std::string s;
  for (const Json& r : array_field(j, key))
    s += (s.empty() ? "" : ",") + cell(r, "first") + "-" + cell(r, "last");
  return s.empty() ? "-" : s;
}

// {"file": 2, "pid": 123} -> "pid 123 (file 2)"
std::string holder_cell(const Json& ref) {
  if (!ref.is_object()) return "-";
  return "pid " + cell(ref, "pid") + " (file " + cell(ref, "file") + ")";
}

std::string holders_cell(const Json& j, const char* key) {
  std::string s;
  for (const Json& f : array_field(j, key)) s += (s.empty() ? "" : ", ") + holder_cell(f);
  return s.empty() ? "-" : s;
}

std::string pid_cell(const Json& j) {
  const auto pid = json_u64(j, "pid");
  return pid && *pid != 0 ? std::to_string(*pid) : "-";
}

// Seconds since the epoch -> local "HH:MM:SS.mmm".
std::string time_cell(const Json& j) {
  const Json& t = field(j, "time");
  if (!t.is_number()) return "-";
  const double secs = t.get<double>();
  const auto whole = static_cast<std::time_t>(secs);
  std::tm tm{};
  localtime_r(&whole, &tm);
  const int ms = static_cast<int>(std::fmod(secs, 1.0) * 1000);
  return fmt::format("{:02}:{:02}:{:02}.{:03}", tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

std::string uptime_text(double secs) {
  const auto s = static_cast<u64>(secs);
  if (s < 60) return fmt::format("{:.1f}s", secs);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}d{:02}h{:02}m", s / 86400, s / 3600 % 24, s / 60 % 60);
}

std::string plural(u64 n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

TextTable domains_table(const Json& domains) {
  TextTable t({{"DOMAIN"}, {"UNIT"}, {"MODEL"}, {"OWNER"}, {"LEVELS", kRight},
               {"ENTRIES", kRight}, {"TABLES", kRight}, {"TABLE MEM", kRight},
               {"MAPPED", kRight}, {"DID"}});
  for (const Json& d : domains)
    t.add({cell(d, "id"), cell(d, "unit"), cell(d, "model"), cell(d, "owner"), cell(d, "levels"),
           cell(d, "entries"), cell(d, "tables"), size_cell(d, "table_bytes"),
           size_cell(d, "mapped_bytes"), cell(d, "did")});
  return t;
}

std::string unit_details(const Json& u) {
  const std::string model = cell(u, "model");
  if (model == "vtd")
    return fmt::format("{}-bit address width, {} levels, domains {}/{}, superpage unmap: {}",
                       cell(u, "aw_bits"), cell(u, "levels"), cell(u, "domains_in_use"),
                       cell(u, "max_domains"), cell(u, "split"));
  if (model == "tce") {
    const Json& dma32 = field(u, "dma32_window");
    return fmt::format("32-bit window {} ({}), DDW at {}, up to {} windows of {} levels",
                       cell(dma32, "start"), size_cell(dma32, "size"), cell(u, "ddw_start"),
                       cell(u, "max_windows"), cell(u, "max_levels"));
  }
  return "no DMA";
}

std::string container_details(const Json& c) {
  if (field(c, "mappings").is_number())
    return fmt::format("{}, page sizes {}, IOVA {}", plural(json_u64(c, "mappings").value_or(0),
                                                           "mapping", "mappings"),
                       page_sizes_cell(c, "iova_pgsizes"), ranges_cell(c, "iova_ranges"));
  if (field(c, "windows").is_array())
    return fmt::format("owner pid {}, {}, {} windows, locked {}", cell(c, "owner_pid"),
                       field(c, "enabled") == true ? "enabled" : "not enabled",
                       array_field(c, "windows").size(), size_cell(c, "locked_bytes"));
  return "-";
}

std::string object_details(const Json& o) {
  const std::string type = cell(o, "type");
  if (field(o, "areas").is_number())
    return fmt::format("{}, HWPTs {}", plural(json_u64(o, "areas").value_or(0), "area", "areas"),
                       join_cell(o, "hwpts"));
  if (field(o, "domain").is_number() || field(o, "ioas").is_number())
    return fmt::format("IOAS {}, domain {} on {}{}", cell(o, "ioas"), cell(o, "domain"),
                       cell(o, "unit"), field(o, "auto") == true ? " (automatic)" : "");
  if (field(o, "bdf").is_string()) return fmt::format("{}, HWPT {}", cell(o, "bdf"), cell(o, "hwpt"));
  return "-";
}

// VT-d level names as the debugfs header has them.
const char* vtd_level_name(u64 level) {
  static const char* const kNames[] = {"?", "PTE", "PDE", "PDPE", "PML4E", "PML5E"};
  return level < 6 ? kNames[level] : "?";
}

std::string level_name(const std::string& model, u64 level) {
  if (model == "vtd") return vtd_level_name(level);
  if (model == "tce") return level == 1 ? "TCE" : "TCE dir";
  return "-";
}

// VT-d fault-recording reasons (VT-d spec §7.1.3, QEMU's numbering) the daemon reports.
std::string vtd_fault_reason(u64 code) {
  switch (code) {
    case 0x4: return "address beyond MGAW";
    case 0x5: return "write not permitted (W=0 in a second-level entry)";
    case 0x6: return "read not permitted (R=0 in a second-level entry)";
    case 0x7: return "second-level paging entry invalid";
  }
  return "unknown";
}

void print_vtd_page_table(const Json& pt, std::FILE* out) {
  const Json& rows = array_field(pt, "rows");
  std::map<u64, u64> by_size;
  for (const Json& r : rows) ++by_size[json_u64(r, "size").value_or(0)];
  std::string leaves;
  for (auto& [size, n] : by_size) leaves += (leaves.empty() ? "" : ", ") + fmt::format("{} x {}", n, human_size(size));
  std::fprintf(out, "Domain %s on %s (%s, %s levels): %s%s%s\n", cell(pt, "domain").c_str(),
               cell(pt, "unit").c_str(), cell(pt, "model").c_str(), cell(pt, "levels").c_str(),
               plural(rows.size(), "present leaf", "present leaves").c_str(),
               leaves.empty() ? "" : ": ", leaves.c_str());
  // Linux 7.3 drivers/iommu/intel/debugfs.c, domain_translation_struct_show() /
  // dump_page_info(): the text the emulated debugfs file has too (base/vtd_debugfs_format.h).
  std::fputs(vtd_debugfs_header().c_str(), out);
  for (const Json& r : rows) {
    const Json& entries = array_field(r, "entries");
    u64 path[6] = {};  // path[level], as Linux keeps it; levels the domain lacks stay 0
    const size_t top = entries.size();
    for (size_t i = 0; i < top && top - i <= 5; ++i)
      if (entries[i].is_string()) path[top - i] = parse_u64(entries[i].get<std::string>()).value_or(0);
    const u64 pfn = json_u64(r, "iova_pfn").value_or(json_u64(r, "iova").value_or(0) >> 12);
    std::fputs(vtd_debugfs_row(pfn << 12, path).c_str(), out);
  }
  std::fprintf(out, "\n");
}

void print_tce_page_table(const Json& pt, std::FILE* out) {
  std::fprintf(out, "Domain %s on %s (%s, %s levels)\n", cell(pt, "domain").c_str(),
               cell(pt, "unit").c_str(), cell(pt, "model").c_str(), cell(pt, "levels").c_str());
  for (const Json& w : array_field(pt, "windows")) {
    const Json& entries = array_field(w, "entries");
    const u64 start = json_u64(w, "start").value_or(0);
    const u64 size = json_u64(w, "size").value_or(0);
    const u64 levels = json_u64(w, "levels").value_or(0);
    std::fprintf(out, "Window %s: bus 0x%" PRIx64 "..0x%" PRIx64 " (%s), %s pages, %s of %s entries, "
                      "table %s: %s\n",
                 cell(w, "slot").c_str(), start, start + (size - 1), human_size(size).c_str(),
                 human_size(u64{1} << json_u64(w, "page_shift").value_or(0)).c_str(),
                 plural(levels, "level", "levels").c_str(), cell(w, "level_entries").c_str(),
                 size_cell(w, "table_bytes").c_str(),
                 entries.empty() ? "no TCE present"
                                 : plural(entries.size(), "TCE present", "TCEs present").c_str());
    if (entries.empty()) continue;
    TextTable t({{"INDEX", kRight}, {"BUS ADDRESS"}, {"TCE"}, {"OUTPUT"}, {"PROT"}});
    for (const Json& e : entries)
      t.add({cell(e, "index"), cell(e, "bus"), cell(e, "tce"), cell(e, "output"), cell(e, "prot")});
    t.print(out, "  ");
  }
}

std::vector<std::string> trace_cells(const Json& r) {
  std::string result = cell(r, "result");
  if (field(r, "errno").is_string()) result += " " + cell(r, "errno");
  return {cell(r, "seq"), time_cell(r), cell(r, "pid"), cell(r, "node"), cell(r, "command"),
          result, cell(r, "detail")};
}

std::vector<Col> trace_columns() {
  return {{"SEQ", kRight}, {"TIME"}, {"PID", kRight}, {"NODE"}, {"COMMAND"}, {"RESULT"},
          {"OPERANDS"}};
}

}  // namespace

void print_status(const Json& s, std::FILE* out) {
  const Json& counts = field(s, "counts");
  const Json& uptime = field(s, "uptime_s");
  std::fprintf(out, "daemon     vfio-emud %s, pid %s\n", cell(s, "version").c_str(),
               cell(s, "pid").c_str());
  std::fprintf(out, "transport  %s\n", cell(s, "transport").c_str());
  std::fprintf(out, "uptime     %s\n", uptime.is_number() ? uptime_text(uptime.get<double>()).c_str() : "-");
  std::fprintf(out, "nodes      %s\n", cell(s, "node_dir").c_str());
  std::fprintf(out, "counts     %s units, %s groups, %s devices, %s open files, %s domains\n",
               cell(counts, "units").c_str(), cell(counts, "groups").c_str(),
               cell(counts, "devices").c_str(), cell(counts, "open_files").c_str(),
               cell(counts, "domains").c_str());
}

void print_list(const Json& l, std::FILE* out) {
  TextTable units({{"UNIT"}, {"MODEL"}, {"PAGE SIZES"}, {"RESERVED"}, {"DETAILS"}});
  for (const Json& u : array_field(l, "units"))
    units.add({cell(u, "name"), cell(u, "model"), page_sizes_cell(u, "page_sizes"),
               ranges_cell(u, "reserved"), unit_details(u)});
  section(out, "IOMMU units", units);

  TextTable groups({{"GROUP"}, {"UNIT"}, {"MODEL"}, {"DEVICES"}, {"OPEN BY"}, {"CONTAINER"},
                    {"IOMMUFD"}, {"VIABLE"}});
  for (const Json& g : array_field(l, "groups"))
    groups.add({cell(g, "id"), cell(g, "unit"), cell(g, "model"), join_cell(g, "devices"),
                holder_cell(field(g, "open_by")), cell(g, "container"), cell(g, "iommufd"),
                cell(g, "viable")});
  section(out, "Groups", groups);

  TextTable devices({{"DEVICE"}, {"CDEV"}, {"GROUP"}, {"ID"}, {"MODEL"}, {"CDEV OPENS", kRight},
                     {"BOUND"}, {"STATE"}});
  for (const Json& d : array_field(l, "devices")) {
    const Json& b = field(d, "bound");
    const std::string bound =
        b.is_object() ? fmt::format("{}, iommufd {}, devid {}, pt {}", holder_cell(b),
                                    cell(b, "iommufd"), cell(b, "devid"), cell(b, "pt_id"))
                      : "-";
    devices.add({cell(d, "bdf"), cell(d, "cdev"), cell(d, "group"),
                 cell(d, "vendor") + ":" + cell(d, "device"), cell(d, "model"),
                 cell(d, "cdev_opens"), bound,
                 std::string(field(d, "bad_state") == true ? "bad state" : "ok") +
                     (field(d, "model_state").is_string() &&
                              !field(d, "model_state").get<std::string>().empty()
                          ? "; " + field(d, "model_state").get<std::string>()
                          : "")});
  }
  section(out, "Devices", devices);

  TextTable containers({{"CONTAINER"}, {"IOMMU"}, {"GROUPS"}, {"DOMAINS"}, {"OPEN BY"},
                        {"DETAILS"}});
  TextTable windows({{"CONTAINER"}, {"SLOT"}, {"START"}, {"SIZE", kRight}, {"PAGE", kRight},
                     {"LEVELS", kRight}});
  TextTable registered({{"CONTAINER"}, {"VADDR"}, {"SIZE", kRight}, {"LISTED"}});
  for (const Json& c : array_field(l, "containers")) {
    containers.add({cell(c, "id"), cell(c, "iommu"), join_cell(c, "groups"), join_cell(c, "domains"),
                    holders_cell(c, "files"), container_details(c)});
    for (const Json& w : array_field(c, "windows"))
      windows.add({cell(c, "id"), cell(w, "slot"), cell(w, "start"), size_cell(w, "size"),
                   human_size(u64{1} << json_u64(w, "page_shift").value_or(0)), cell(w, "levels")});
    for (const Json& r : array_field(c, "registered"))
      registered.add({cell(c, "id"), cell(r, "vaddr"), size_cell(r, "size"), cell(r, "listed")});
  }
  section(out, "Containers", containers);
  if (!windows.empty()) section(out, "sPAPR DMA windows", windows);
  if (!registered.empty()) section(out, "sPAPR registered memory", registered);

  TextTable contexts({{"IOMMUFD"}, {"OPEN BY"}, {"COMPAT IOAS"}, {"RLIMIT"}, {"OBJECTS", kRight}});
  TextTable objects({{"IOMMUFD:ID"}, {"TYPE"}, {"USERS", kRight}, {"DETAILS"}});
  for (const Json& x : array_field(l, "iommufd")) {
    contexts.add({cell(x, "id"), holders_cell(x, "files"), cell(x, "compat_ioas"),
                  cell(x, "rlimit_mode"), std::to_string(array_field(x, "objects").size())});
    for (const Json& o : array_field(x, "objects"))
      objects.add({cell(x, "id") + ":" + cell(o, "id"), cell(o, "type"), cell(o, "users"),
                   object_details(o)});
  }
  section(out, "iommufd contexts", contexts);
  if (!objects.empty()) section(out, "iommufd objects", objects);

  section(out, "Domains", domains_table(array_field(l, "domains")));

  TextTable files({{"FILE"}, {"NODE"}, {"KIND"}, {"PID", kRight}});
  for (const Json& f : array_field(l, "files"))
    files.add({cell(f, "id"), cell(f, "node"), cell(f, "kind"), cell(f, "pid")});
  section(out, "Open files", files);
}

void print_maps(const Json& m, std::FILE* out) {
  const Json& rows = array_field(m, "mappings");
  if (rows.empty()) {
    std::fprintf(out, "no mappings\n");
    return;
  }
  TextTable t({{"SOURCE"}, {"IOVA"}, {"LAST"}, {"SIZE", kRight}, {"VADDR"}, {"PID", kRight},
               {"PROT"}, {"STATE"}});
  for (const Json& r : rows)
    t.add({cell(r, "source"), cell(r, "iova"), cell(r, "last"), size_cell(r, "size"),
           cell(r, "vaddr"), pid_cell(r), cell(r, "prot"), cell(r, "state")});
  t.print(out);
}

void print_page_table(const Json& pt, std::FILE* out) {
  const std::string model = cell(pt, "model");
  if (model == "tce")
    print_tce_page_table(pt, out);
  else if (json_u64(pt, "levels").value_or(0) == 0)
    std::fprintf(out, "Domain %s on %s (%s): no page table\n", cell(pt, "domain").c_str(),
                 cell(pt, "unit").c_str(), model.c_str());
  else
    print_vtd_page_table(pt, out);
  if (field(pt, "truncated") == true)
    std::fprintf(out, "(truncated: vfio-emu shows at most 2^20 entries; narrow it with --iova)\n");
}

void print_translation(const Json& t, std::FILE* out) {
  const std::string model = cell(t, "model");
  std::fprintf(out, "Domain %s on %s (%s): %s at IOVA %s\n", cell(t, "domain").c_str(),
               cell(t, "unit").c_str(), model.c_str(), cell(t, "access").c_str(),
               cell(t, "iova").c_str());
  TextTable steps({{"LEVEL", kRight}, {"ENTRY"}, {"TABLE"}, {"INDEX", kRight}, {"VALUE"}});
  for (const Json& s : array_field(t, "steps"))
    steps.add({cell(s, "level"), level_name(model, json_u64(s, "level").value_or(0)),
               cell(s, "table"), cell(s, "index"), cell(s, "entry")});
  if (!steps.empty()) steps.print(out, "  ");
  if (field(t, "ok") == true) {
    std::fprintf(out, "result: %s (%s page, %s)\n", cell(t, "output").c_str(),
                 size_cell(t, "page_size").c_str(), cell(t, "prot").c_str());
    return;
  }
  const Json& f = field(t, "fault");
  const std::string reason = cell(f, "reason");
  const u64 level = json_u64(f, "level").value_or(0);
  std::string text;
  if (reason == "not-present")
    text = fmt::format("not present at level {} ({})", level, level_name(model, level));
  else if (reason == "no-permission")
    text = fmt::format("no {} permission at level {} ({})", cell(t, "access"), level,
                       level_name(model, level));
  else if (reason == "out-of-aperture")
    text = "outside the aperture";
  else
    text = reason;
  if (const auto code = json_u64(f, "vtd_fault_reason"))
    text += fmt::format("; VT-d fault reason {:#x}: {}", *code, vtd_fault_reason(*code));
  std::fprintf(out, "fault: %s\n", text.c_str());
}

void print_stats(const Json& s, std::FILE* out) {
  TextTable units({{"UNIT"}, {"MODEL"}, {"DOMAINS", kRight}, {"ENTRIES", kRight},
                   {"TABLES", kRight}, {"TABLE MEM", kRight}});
  for (const Json& u : array_field(s, "units"))
    units.add({cell(u, "name"), cell(u, "model"), cell(u, "domains"), cell(u, "entries"),
               cell(u, "tables"), size_cell(u, "table_bytes")});
  section(out, "IOMMU units", units);
  section(out, "Domains", domains_table(array_field(s, "domains")));
  TextTable ioctls({{"COMMAND"}, {"NODE"}, {"BACKEND"}, {"CALLS", kRight}, {"ERRORS", kRight}});
  for (const Json& c : array_field(s, "ioctls"))
    ioctls.add({cell(c, "command"), cell(c, "node"), cell(c, "backend"), cell(c, "calls"),
                cell(c, "errors")});
  section(out, "Ioctls", ioctls);
  const Json& unknown = field(s, "unknown_ioctls");
  std::fprintf(out, "Unknown ioctls: %s calls, %s errors\n", cell(unknown, "calls").c_str(),
               cell(unknown, "errors").c_str());
}

void print_faults(const Json& f, std::FILE* out) {
  const Json& faults = array_field(f, "faults");
  if (faults.empty()) {
    std::fprintf(out, "no faults recorded (last seq %s)\n", cell(f, "last_seq").c_str());
    return;
  }
  TextTable t({{"SEQ", kRight}, {"TIME"}, {"DEVICE"}, {"DOMAIN"}, {"UNIT"}, {"IOVA"}, {"ACCESS"},
               {"REASON"}, {"LEVEL", kRight}, {"HW CODE"}});
  for (const Json& r : faults)
    t.add({cell(r, "seq"), time_cell(r), cell(r, "device"), cell(r, "domain"), cell(r, "unit"),
           cell(r, "iova"), cell(r, "access"), cell(r, "reason"), cell(r, "level"),
           cell(r, "hw_code")});
  t.print(out);
}

void print_trace(const Json& tr, std::FILE* out) {
  const Json& records = array_field(tr, "records");
  if (records.empty()) {
    std::fprintf(out, "no ioctls recorded since then (last seq %s)\n", cell(tr, "last_seq").c_str());
    return;
  }
  TextTable t(trace_columns());
  for (const Json& r : records) t.add(trace_cells(r));
  t.print(out);
}

void print_trace_line(const Json& record, bool heading, std::FILE* out) {
  static constexpr int kWidths[] = {6, 12, 7, 16, 34, 12, 0};
  const std::vector<Col> columns = trace_columns();
  const std::vector<std::string> cells = heading ? std::vector<std::string>{} : trace_cells(record);
  std::string line;
  for (size_t c = 0; c < columns.size(); ++c) {
    const std::string& text = heading ? columns[c].title : cells[c];
    const int w = kWidths[c];
    if (c == columns.size() - 1)
      line += text;
    else if (columns[c].align == kRight)
      line += fmt::format("{:>{}}  ", text, w);
    else
      line += fmt::format("{:<{}}  ", text, w);
  }
  std::fprintf(out, "%s\n", line.c_str());
}

void print_check(const Json& c, std::FILE* out) {
  const u64 checked = json_u64(c, "checked").value_or(0);
  const Json& diffs = array_field(c, "differences");
  if (diffs.empty()) {
    std::fprintf(out, "check: %s checked, no differences\n",
                 plural(checked, "page table", "page tables").c_str());
    return;
  }
  TextTable t({{"WHERE"}, {"DIFFERENCE"}, {"IOVA"}, {"LAST"}, {"OUTPUT"}, {"PROT"}});
  for (const Json& d : diffs)
    t.add({cell(d, "where"), cell(d, "kind"), cell(d, "iova"), cell(d, "last"), cell(d, "output"),
           cell(d, "prot")});
  t.print(out);
  std::fprintf(out, "check: %s checked, %s\n", plural(checked, "page table", "page tables").c_str(),
               plural(diffs.size(), "difference", "differences").c_str());
}

}  // namespace vfio_emu::tools
