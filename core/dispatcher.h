// The command table: every ioctl the emulator implements, as data. One table drives dispatch,
// the argument prefetch of the CUSE retry protocol, tracing (names) and the ABI snapshot.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "core/context.h"
#include "core/objects.h"

namespace vfio_emu::core {

// Which IOMMU backend of a container (or iommufd's VFIO compatibility layer) serves a command.
// The same number can mean different commands under different backends (0x3B75 is DIRTY_PAGES
// for type1 and SPAPR_REGISTER_MEMORY for sPAPR), exactly as in Linux.
enum class Backend : u8 { kNone, kType1, kSpapr, kIommufdCompat };
std::string_view backend_name(Backend b);

// How the ioctl argument is used.
enum class ArgKind : u8 {
  kNone,    // ignored
  kValue,   // the argument itself is the value (CHECK_EXTENSION, SET_IOMMU)
  kInt,     // a pointer to an int (SET_CONTAINER's fd)
  kString,  // a pointer to a NUL-terminated string (GET_DEVICE_FD)
  kStruct,  // a pointer to an argsz/size-prefixed struct
};

using Handler = Result<long> (*)(Emulator& emu, File& file, IoctlCall& call);

struct Command {
  u32 cmd;
  std::string_view name;
  NodeKind node;
  Backend backend;
  ArgKind arg;
  u32 min_size;     // VFIO: minsz the kernel copies first; iommufd: offsetofend(last mandatory)
  u32 kernel_size;  // iommufd: sizeof the kernel struct (copy_struct_from_user); else 0
  Handler handler;
};

// Every command, in a stable order (node, backend, number).
std::span<const Command> all_commands();

// The command `cmd` on `node` under `backend`, or nullptr.
const Command* find_command(NodeKind node, Backend backend, u32 cmd);

// Tables contributed by each part of the core (each defined next to its handlers).
std::span<const Command> container_commands();
std::span<const Command> group_commands();
std::span<const Command> type1_commands();
std::span<const Command> spapr_commands();
std::span<const Command> device_commands();
std::span<const Command> iommufd_commands();
std::span<const Command> iommufd_compat_commands();

}  // namespace vfio_emu::core
