// The command table's row: what vfio-emu knows of one ioctl. The table itself, every ioctl of
// every node kind in one place, is core/commands.cc, which also serves a call from it.
#pragma once

#include <span>
#include <string_view>

#include "core/context.h"
#include "core/objects.h"

namespace vfio_emu::core {

// Which IOMMU backend of a container (or iommufd's VFIO compatibility layer) serves a command.
// The same number can mean different commands under different backends (0x3B75 is DIRTY_PAGES
// for type1 and SPAPR_REGISTER_MEMORY for sPAPR), exactly as in Linux.
enum class Backend : u8 { kNone, kType1, kSpapr, kIommufdCompat };
constexpr size_t kBackends = 4;
std::string_view backend_name(Backend b);

// How the ioctl argument is used (what the ABI snapshot prints).
enum class ArgKind : u8 {
  kNone,    // ignored
  kValue,   // the argument itself is the value (CHECK_EXTENSION, SET_IOMMU)
  kInt,     // a pointer to an int (SET_CONTAINER's fd)
  kString,  // a pointer to a NUL-terminated string (GET_DEVICE_FD)
  kStruct,  // a pointer to an argsz/size-prefixed struct
};

// Who reads a struct argument, and by which rule.
enum class ArgRule : u8 {
  kNone,     // not a struct, or the handler reads what it needs
  // VFIO: the dispatcher copies min_size bytes into IoctlCall::ucmd (zero-extended) and refuses
  // an argsz below min_size with EINVAL, as every VFIO handler starts (copy_from_user(minsz),
  // then `argsz < minsz`). A handler sees only a struct that passed.
  kArgsz,
  // VFIO, where Linux checks something of the file or driver before it copies the argument
  // (sPAPR's "not enabled", type1's "v1 has no dirty tracking", BIND's extensible struct): the
  // handler makes those checks, then reads with read_argsz_struct / read_sized_struct.
  kHandler,
  // iommufd: the dispatcher applies the `size` rules of iommufd_fops_ioctl (too small: EINVAL;
  // non-zero bytes past the kernel struct: E2BIG) and reads the struct into ucmd.
  kSize,
};

// Facts about a command that the layers around the handler act on.
enum CommandFlag : u8 {
  // Allowed on a device file before a successful BIND (everything else is EINVAL there).
  kBeforeBind = 1u << 0,
  // Fails with EBUSY/EINVAL while another open file holds what it wants, and changes nothing
  // then: a transport whose closes are asynchronous (FUSE) may run it once more after that
  // file's release (IoctlCall::conflict).
  kWaitsForClosedFile = 1u << 1,
};

using Handler = Result<long> (*)(Emulator& emu, File& file, IoctlCall& call);
// The type of a handler, for declaring several at once.
using IoctlHandler = Result<long>(Emulator& emu, File& file, IoctlCall& call);

struct Command {
  u32 cmd;
  std::string_view name;
  NodeKind node;
  Backend backend;
  ArgKind arg;
  ArgRule rule;
  u32 min_size;     // VFIO: minsz the kernel copies first; iommufd: offsetofend(last mandatory)
  u32 kernel_size;  // iommufd: sizeof the kernel struct (copy_struct_from_user); else 0
  u8 flags;         // CommandFlag bits
  Handler handler;

  bool has(CommandFlag f) const { return (flags & f) != 0; }
};

// Every command, in a stable order (node, backend, number).
std::span<const Command> all_commands();

// The command `cmd` on `node` under `backend`, or nullptr. An index lookup, not a scan.
const Command* find_command(NodeKind node, Backend backend, u32 cmd);

// The readers of struct arguments (the dispatcher's prologue uses them; ArgRule::kHandler
// handlers call them after their own first checks). Both leave the struct, zero-extended, in
// call.ucmd.
//
// VFIO: copies `min_size` bytes. Errors: EFAULT, kNeedRetry; EINVAL if argsz < min_size.
Status read_argsz_struct(IoctlCall& call, u32 min_size);
// copy_struct_from_user of a struct led by its u32 size (iommufd's `size`, BIND's `argsz`).
// Errors: EFAULT, kNeedRetry; EINVAL if the size < min_size; E2BIG if a byte past
// `kernel_size` is not zero. Announces the write back of min(size, kernel_size) bytes.
Status read_sized_struct(IoctlCall& call, u32 min_size, u32 kernel_size);

// ---- the member-pointer adapter ---------------------------------------------------------------

// The container's IOMMU driver, as the dispatcher found it (container mu held).
IommuDriver& container_driver(File& file);

template <class>
struct DriverMethod;
template <class D>
struct DriverMethod<Result<long> (D::*)(IoctlCall&)> {
  using Driver = D;
};

// A handler that runs a method of the container's IOMMU driver: the table names
// driver_ioctl<&Type1Driver::map_dma>. The dispatcher holds the container's mu and has chosen
// the row by the driver's backend, so the driver is of that class.
template <auto Method>
Result<long> driver_ioctl(Emulator&, File& file, IoctlCall& call) {
  using D = typename DriverMethod<decltype(Method)>::Driver;
  return (static_cast<D&>(container_driver(file)).*Method)(call);
}

}  // namespace vfio_emu::core
