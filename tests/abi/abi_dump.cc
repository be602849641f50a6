// Prints the uAPI as vfio-emu defines it, in the stable text format of tests/abi/uapi.golden:
//
//   struct NAME size N
//     MEMBER offset O size S
//
// one struct line, then one line per member in declaration order; a flexible array member is
// printed as `NAME[]` with the size of one element. The abi-golden test diffs this output with the
// committed golden file, so any change to a number or layout has to be made on purpose.
//
// The output is a sequence of sections, each added at the end so existing lines stay put: the
// struct layouts, then the dispatcher's command table, one line per command it serves:
//
//   command NAME number 0xNNNN node KIND backend BACKEND arg ARG min_size N kernel_size N
#include <fmt/core.h>

#include "core/command.h"
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

const char* arg_kind_name(vfio_emu::core::ArgKind a) {
  switch (a) {
    case vfio_emu::core::ArgKind::kNone: return "none";
    case vfio_emu::core::ArgKind::kValue: return "value";
    case vfio_emu::core::ArgKind::kInt: return "int-pointer";
    case vfio_emu::core::ArgKind::kString: return "string-pointer";
    case vfio_emu::core::ArgKind::kStruct: return "struct-pointer";
  }
  return "?";
}

void print_commands() {
  for (const vfio_emu::core::Command& c : vfio_emu::core::all_commands()) {
    const std::string_view backend = vfio_emu::core::backend_name(c.backend);
    fmt::print("command {} number {:#06x} node {} backend {} arg {} min_size {} kernel_size {}\n",
               c.name, c.cmd, vfio_emu::core::node_kind_name(c.node),
               backend.empty() ? "-" : backend, arg_kind_name(c.arg), c.min_size, c.kernel_size);
  }
}

}  // namespace

int main() {
  print_struct_layouts();
  print_commands();
  return 0;
}
