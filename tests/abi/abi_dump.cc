// Prints the uAPI as vfio-emu defines it, in the stable text format of tests/abi/uapi.golden:
//
//   struct NAME size N
//     MEMBER offset O size S
//
// one struct line, then one line per member in declaration order; a flexible array member is
// printed as `NAME[]` with the size of one element. The abi-golden test diffs this output with the
// committed golden file, so any change to a number or layout has to be made on purpose.
//
// The output is a sequence of sections, each added at the end so existing lines stay put. The
// struct layouts are the first; the dispatcher's command table (name, number, node kind, minimum
// size) is meant to follow as the next section, printed by a function next to print_struct_layouts.
#include <fmt/core.h>

#include "core/uapi/layout.h"

namespace {

void print_struct_layouts() {
  for (const vfio_emu::uapi::StructLayout& layout : vfio_emu::uapi::uapi_struct_layouts()) {
    fmt::print("struct {} size {}\n", layout.name, layout.size);
    for (const vfio_emu::uapi::MemberLayout& member : layout.members) {
      fmt::print("  {}{} offset {} size {}\n", member.name, member.flexible_array ? "[]" : "", member.offset,
                 member.size);
    }
  }
}

}  // namespace

int main() {
  print_struct_layouts();
  return 0;
}
