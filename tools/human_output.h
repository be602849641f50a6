// How each `vfio-emu` command shows the daemon's result to a person (without --json). Each
// function takes the "result" object of its command (tools/control-protocol.md) and prints it to
// `out`. Missing fields print as "-"; these functions never throw on odd input.
#pragma once

#include <cstdio>
#include <string>

#include "tools/text_output.h"

namespace vfio_emu::tools {

void print_status(const Json& status, std::FILE* out);
void print_list(const Json& list, std::FILE* out);
void print_maps(const Json& maps, std::FILE* out);
// VT-d: the layout of Linux's intel-iommu debugfs domain_translation_struct; TCE: per window, a
// header line and one line per present TCE.
void print_page_table(const Json& pt, std::FILE* out);
void print_translation(const Json& translation, std::FILE* out);
void print_stats(const Json& stats, std::FILE* out);
void print_faults(const Json& faults, std::FILE* out);
void print_trace(const Json& trace, std::FILE* out);
// One trace record on one line, in fixed-width columns (for `trace --follow`).
void print_trace_line(const Json& record, bool heading, std::FILE* out);
void print_check(const Json& check, std::FILE* out);

}  // namespace vfio_emu::tools
