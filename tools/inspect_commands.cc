#include "tools/inspect_commands.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>

#include "tools/control_client.h"
#include "tools/human_output.h"

namespace vfio_emu::tools {
namespace {

using Printer = void (*)(const Json&, std::FILE*);

const CLI::Validator kNumber(
    [](std::string& s) {
      return parse_u64(s) ? std::string() : "'" + s + "' is not a number (decimal or 0x... hex)";
    },
    "");  // the option's type name says what it wants

// An IOAS as the daemon names it: "CTX:IOAS" or, when only one context has it, "IOAS".
const CLI::Validator kIoasId(
    [](std::string& s) {
      const size_t colon = s.find(':');
      const bool ok = colon == std::string::npos
                          ? parse_u64(s).has_value()
                          : parse_u64(s.substr(0, colon)) && parse_u64(s.substr(colon + 1));
      return ok ? std::string() : "'" + s + "' is not an IOAS id (CTX:IOAS or IOAS)";
    },
    "");  // the option's type name says what it wants

// "A" (the one address), "A..B" (inclusive), "A.." (to the end), "..B" (from 0).
std::optional<std::pair<u64, u64>> parse_iova_range(const std::string& s) {
  const size_t dots = s.find("..");
  if (dots == std::string::npos) {
    const auto a = parse_u64(s);
    if (!a) return std::nullopt;
    return std::pair{*a, *a};
  }
  const std::string a = s.substr(0, dots), b = s.substr(dots + 2);
  const auto first = a.empty() ? std::optional<u64>(0) : parse_u64(a);
  const auto last = b.empty() ? std::optional<u64>(~u64{0}) : parse_u64(b);
  if (!first || !last || *first > *last) return std::nullopt;
  return std::pair{*first, *last};
}

const CLI::Validator kIovaRange(
    [](std::string& s) {
      return parse_iova_range(s) ? std::string()
                                 : "'" + s + "' is not an IOVA or range A..B with A <= B";
    },
    "");  // the option's type name says what it wants

std::string hex(u64 v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::chrono::milliseconds timeout_of(const GlobalOptions& g) {
  return std::chrono::milliseconds(static_cast<long long>(g.timeout_s * 1000 + 0.5));
}

// One line on stderr. `subject` names the id the request was about, for "unknown domain 7".
int report_failure(const char* command, const Outcome& o, const std::string& subject) {
  std::string message = o.message;
  if (o.code == kExitUnknownId && !subject.empty()) message += " " + subject;
  if (!o.err_no.empty()) message += " (" + o.err_no + ")";
  if (o.code == kExitUnknownId) message += "; `vfio-emu list` shows the ids";
  std::fprintf(stderr, "vfio-emu: %s: %s\n", command, message.c_str());
  return o.code;
}

void print_json(const Json& j, int indent) {
  const std::string text = j.dump(indent, ' ', false, Json::error_handler_t::replace);
  std::fprintf(stdout, "%s\n", text.c_str());
}

// How a command's result is fetched: one request, or page after page.
using Fetch = Outcome (*)(ControlClient&, Json);

Outcome fetch_one(ControlClient& client, Json request) { return client.request(request); }

// Requests page after page while the reply names a "next" one, for the request's `cursor`
// argument; `append` adds a page to the result so far. The result is the first page with the
// others appended, without "next": what the whole answer in one reply would have been.
template <class Append>
Outcome fetch_pages(ControlClient& client, Json request, const char* cursor, Append append) {
  Outcome all = client.request(request);
  if (!all.ok()) return all;
  Json next = field(all.result, "next");
  if (all.result.is_object()) all.result.erase("next");
  while (next.is_string()) {
    if (request.contains(cursor) && request[cursor] == next)
      return Outcome::failure(kExitProtocol, "bad reply: the same \"next\" page twice");
    request[cursor] = next;
    Outcome page = client.request(request);
    if (!page.ok()) return page;
    next = field(page.result, "next");
    if (!append(all.result, page.result)) break;
  }
  return all;
}

// Appends the elements of page[key] to into[key].
void append_array(Json& into, Json& page, const char* key) {
  if (!into.contains(key) || !into[key].is_array() || !page.contains(key) || !page[key].is_array())
    return;
  for (Json& e : page[key]) into[key].push_back(std::move(e));
}

Outcome fetch_maps(ControlClient& client, Json request) {
  return fetch_pages(client, std::move(request), "after", [](Json& all, Json& page) {
    append_array(all, page, "mappings");
    return true;
  });
}

// The tool keeps at most this many page-table rows (a table can have 2^36 leaves).
constexpr size_t kMaxPageTableRows = size_t{1} << 20;

Outcome fetch_page_table(ControlClient& client, Json request) {
  size_t rows = 0;
  auto count = [](const Json& pt) {
    size_t n = array_field(pt, "rows").size();
    for (const Json& w : array_field(pt, "windows")) n += array_field(w, "entries").size();
    return n;
  };
  return fetch_pages(client, std::move(request), "first", [&](Json& all, Json& page) {
    if (rows == 0) rows = count(all);
    if (rows >= kMaxPageTableRows) {  // as the daemon once cut it: narrow it with --iova
      all["truncated"] = true;
      return false;
    }
    rows += count(page);
    append_array(all, page, "rows");
    // TCE: each page lists every window, with its entries in that page's range.
    if (all.contains("windows") && all["windows"].is_array())
      for (Json& w : page.value("windows", Json::array()))
        for (Json& have : all["windows"])
          if (have.value("slot", -1) == w.value("slot", -2)) append_array(have, w, "entries");
    all["truncated"] = page.value("truncated", false);
    return true;
  });
}

// Sends `request` (through `fetch`), prints the result; *result (if given) receives it.
int run(const GlobalOptions& g, const char* command, const Json& request, Printer print,
        const std::string& subject = "", Json* result = nullptr, Fetch fetch = fetch_one) {
  ControlClient client(g.control, timeout_of(g));
  Outcome o = fetch(client, request);
  if (!o.ok()) return report_failure(command, o, subject);
  if (g.json)
    print_json(o.result, 2);
  else
    print(o.result, stdout);
  std::fflush(stdout);
  if (result != nullptr) *result = std::move(o.result);
  return kExitOk;
}

// `trace --follow`: records as they come, until Ctrl-C (or SIGTERM/SIGHUP), a reader of stdout
// that goes away (`| head`), or the daemon going away. The signals are taken through a signalfd
// and consumed, so stopping is an ordinary return with the socket closed and exit code 0.
int follow_trace(const GlobalOptions& g, const Json& request) {
  sigset_t stop_signals, old_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  sigprocmask(SIG_BLOCK, &stop_signals, &old_mask);
  const int sfd = signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
  std::vector<pollfd> stop_when = {{STDOUT_FILENO, 0, 0}};  // POLLERR: a pipe's reader is gone
  if (sfd >= 0) stop_when.push_back({sfd, POLLIN, 0});
  bool heading = !g.json;
  ControlClient client(g.control, timeout_of(g));
  const Outcome o = client.follow(
      request,
      [&](const Json& record) {
        if (g.json) {
          print_json(record, -1);
        } else {
          if (heading) print_trace_line(record, true, stdout);
          heading = false;
          print_trace_line(record, false, stdout);
        }
        std::fflush(stdout);
        return !std::ferror(stdout);
      },
      stop_when);
  if (sfd >= 0) {
    signalfd_siginfo info;
    while (read(sfd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
    }
    close(sfd);
  }
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  return o.ok() ? kExitOk : report_failure("trace", o, "");
}

}  // namespace

InspectCommands::InspectCommands(CLI::App& app, const GlobalOptions& global, int* exit_code)
    : global_(global), exit_code_(exit_code) {
  // The commands without arguments: one request, one result to print.
  auto simple = [&](const char* name, const char* help, Printer print) {
    app.add_subcommand(name, help)->callback([this, name, print] {
      *exit_code_ = run(global_, name, Json{{"cmd", name}}, print);
    });
  };
  simple("status", "daemon version, transport, uptime, node directory, counts", print_status);
  simple("list",
         "IOMMU units, groups, devices, containers, iommufd contexts, IOAS, domains: who holds "
         "what; the ids the other commands take",
         print_list);
  add_maps(app);
  add_pt(app);
  add_translate(app);
  simple("stats",
         "per unit and domain: entries, tables, table memory; ioctl counts and errors by command",
         print_stats);
  add_log(app, "faults", "the IOMMU fault log");
  add_log(app, "trace", "the decoded ioctl stream: time, pid, node, command, operands, result");
  app.add_subcommand("check", "cross-check every domain's page table against the record of "
                              "what is mapped; exit 1 if anything differs")
      ->callback([this] {
        Json result;
        int rc = run(global_, "check", Json{{"cmd", "check"}}, print_check, "", &result);
        if (rc == kExitOk && field(result, "ok") != true) rc = kExitDifferences;
        *exit_code_ = rc;
      });
}

void InspectCommands::add_maps(CLI::App& app) {
  auto* maps = app.add_subcommand("maps", "the mappings: IOVA first..last, size, vaddr, owner "
                                          "pid, prot");
  auto* container = maps->add_option("--container", args_.container, "only this container")
                        ->type_name("ID")
                        ->check(kNumber);
  auto* ioas = maps->add_option("--ioas", args_.ioas, "only this IOAS (CTX:IOAS, or IOAS)")
                   ->type_name("CTX:IOAS")
                   ->check(kIoasId);
  auto* domain = maps->add_option("--domain", args_.domain,
                                  "the leaves of this domain's page table, merged into runs")
                     ->type_name("ID")
                     ->check(kNumber);
  auto* pid = maps->add_option("--pid", args_.pid, "only mappings owned by this process")
                  ->type_name("PID")
                  ->check(kNumber);
  const std::vector<CLI::Option*> filters = {container, ioas, domain, pid};
  for (auto* a : filters)
    for (auto* b : filters)
      if (a != b) a->excludes(b);
  maps->callback([this] {
    Json request{{"cmd", "maps"}};
    std::string subject;
    if (!args_.container.empty()) {
      request["container"] = *parse_u64(args_.container);
      subject = args_.container;
    } else if (!args_.ioas.empty()) {
      request["ioas"] = args_.ioas;
      subject = args_.ioas;
    } else if (!args_.domain.empty()) {
      request["domain"] = *parse_u64(args_.domain);
      subject = args_.domain;
    } else if (!args_.pid.empty()) {
      request["pid"] = *parse_u64(args_.pid);
    }
    *exit_code_ = run(global_, "maps", request, print_maps, subject, nullptr, fetch_maps);
  });
}

void InspectCommands::add_domain_option(CLI::App& sub) {
  sub.add_option("--domain", args_.domain, "the domain (an id from `list`)")
      ->required()
      ->type_name("ID")
      ->check(kNumber);
}

void InspectCommands::add_pt(CLI::App& app) {
  auto* pt = app.add_subcommand("pt", "the page table: VT-d in the layout of intel-iommu's "
                                      "debugfs domain_translation_struct; TCE per window");
  add_domain_option(*pt);
  pt->add_option("--iova", args_.iova, "only the leaf covering A, or those in A..B (inclusive)")
      ->type_name("A[..B]")
      ->check(kIovaRange);
  pt->callback([this] {
    Json request{{"cmd", "pt"}, {"domain", *parse_u64(args_.domain)}};
    if (!args_.iova.empty()) {
      const auto range = *parse_iova_range(args_.iova);
      request["first"] = hex(range.first);
      request["last"] = hex(range.second);
    }
    *exit_code_ = run(global_, "pt", request, print_page_table, args_.domain, nullptr,
                      fetch_page_table);
  });
}

void InspectCommands::add_translate(CLI::App& app) {
  auto* tr = app.add_subcommand("translate", "walk the page table for IOVA as a DMA would: each "
                                             "level, then the output address or the fault");
  add_domain_option(*tr);
  tr->add_option("iova", args_.iova, "the IOVA to translate")
      ->required()
      ->type_name("IOVA")
      ->check(kNumber);
  tr->add_flag("--write", args_.write, "translate a DMA write (default: a read)");
  tr->callback([this] {
    const Json request{{"cmd", "translate"},
                       {"domain", *parse_u64(args_.domain)},
                       {"iova", hex(*parse_u64(args_.iova))},
                       {"access", args_.write ? "write" : "read"}};
    *exit_code_ = run(global_, "translate", request, print_translation, args_.domain);
  });
}

// faults and trace: records after --since, at most --max; trace can also --follow.
void InspectCommands::add_log(CLI::App& app, const char* name, const char* help) {
  const bool is_trace = std::string(name) == "trace";
  auto* sub = app.add_subcommand(name, help);
  sub->add_option("--since", args_.since, "only records after this sequence number")
      ->type_name("SEQ")
      ->check(kNumber);
  sub->add_option("--max", args_.max, "at most this many records (default 1000)")
      ->type_name("N")
      ->check(kNumber);
  if (is_trace)
    sub->add_flag("--follow,-f", args_.follow,
                  "keep printing records as they come (one JSON object per line with --json) "
                  "until Ctrl-C");
  sub->callback([this, name, is_trace] {
    Json request{{"cmd", name}};
    if (!args_.since.empty()) request["since"] = *parse_u64(args_.since);
    if (!args_.max.empty()) request["max"] = *parse_u64(args_.max);
    if (is_trace && args_.follow) {
      request["follow"] = true;
      *exit_code_ = follow_trace(global_, request);
      return;
    }
    *exit_code_ = run(global_, name, request, is_trace ? print_trace : print_faults);
  });
}

}  // namespace vfio_emu::tools
