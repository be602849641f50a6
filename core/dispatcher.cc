// The front door: one ioctl from a transport to its handler. The command table (core/commands.cc)
// says what each number is on each node kind; the node kind (core/node_type.h) routes the call
// to a backend and admits it; the argument rule of the row reads the struct; the handler does the
// rest. Every call is counted and traced here, whatever its end.
#include <algorithm>
#include <cstring>
#include <new>

#include "core/command.h"
#include "core/emulator.h"
#include "core/log.h"
#include "core/node_type.h"
#include "core/reject.h"
#include "iommu/table_memory.h"

namespace vfio_emu::core {

IommuDriver& container_driver(File& file) {
  return *static_cast<ContainerFile&>(file).container->driver;
}

Status read_argsz_struct(IoctlCall& call, u32 min_size) {
  call.ucmd.fill(0);
  const std::size_t len = std::min<std::size_t>(min_size, call.ucmd.size());
  if (Status st = call.mem->read(call.arg, call.ucmd.data(), len); !st) {
    if (is_internal_code(st.error())) return st;
    return reject(call, st.error(), "cannot read {:#x} bytes of the argument at {:#x}", len,
                  call.arg);
  }
  u32 argsz = 0;
  std::memcpy(&argsz, call.ucmd.data(), sizeof(argsz));
  if (argsz < min_size) return reject(call, EINVAL, "argsz {:#x} < {:#x}", argsz, min_size);
  call.user_size = argsz;
  return {};
}

Status read_sized_struct(IoctlCall& call, u32 min_size, u32 kernel_size) {
  // The common case in one access: the whole kernel struct read ahead, holding a `size` no
  // larger than it. Otherwise (a fault on the way, a larger struct, a transport that cannot read
  // ahead) Linux's two steps: get_user(size), then copy_struct_from_user.
  decltype(call.ucmd) ahead;
  const std::size_t got = call.mem->read_ahead(
      call.arg, ahead.data(), std::min<std::size_t>(kernel_size, ahead.size()));
  u32 size = 0;
  if (got >= sizeof(size)) {
    std::memcpy(&size, ahead.data(), sizeof(size));
  } else {
    TRY(call.mem->read(call.arg, &size, sizeof(size)));
  }
  if (size < min_size) return reject(call, EINVAL, "size {:#x} < {:#x}", size, min_size);
  call.user_size = size;
  call.ucmd.fill(0);
  if (size <= got) {
    std::memcpy(call.ucmd.data(), ahead.data(), size);
    return call.mem->will_write(call.arg, size);
  }
  // Replies copy back min(size, kernel size) bytes: announced before the read, so the CUSE retry
  // protocol fetches the struct and makes room for the reply in one round.
  TRY(call.mem->will_write(call.arg, std::min<u64>(size, kernel_size)));
  TRY(call.mem->read(call.arg, call.ucmd.data(), std::min<u64>(size, kernel_size)));
  // copy_struct_from_user: bytes the kernel does not know must be zero.
  u8 chunk[512];
  for (u64 off = kernel_size; off < size;) {
    const u64 n = std::min<u64>(sizeof(chunk), size - off);
    TRY(call.mem->read(call.arg + off, chunk, n));
    for (u64 i = 0; i < n; ++i)
      if (chunk[i] != 0)
        return reject(call, E2BIG, "size {:#x}: byte {:#x} past the {:#x}-byte struct is not zero",
                      size, off + i, kernel_size);
    off += n;
  }
  return {};
}

namespace {

// The argument prologue of `c`'s rule.
Status read_argument(IoctlCall& call, const Command& c) {
  switch (c.rule) {
    case ArgRule::kArgsz: return read_argsz_struct(call, c.min_size);
    case ArgRule::kSize: return read_sized_struct(call, c.min_size, c.kernel_size);
    case ArgRule::kNone:
    case ArgRule::kHandler: return {};
  }
  return {};
}

}  // namespace

Result<long> Emulator::ioctl(File& file, IoctlCall& call) {
  (void)iommu::TableBudget::take_refusal();  // a refusal seen from here on is this call's
  const Command* c = nullptr;
  Result<long> result = err(ENOTTY);
  try {
    result = dispatch(file, call, &c);
  } catch (const std::bad_alloc&) {
    // Linux's errno for a failed allocation. The handlers undo what they did on every error
    // path, this one included, so the call has changed nothing.
    result = err(ENOMEM);
    try {
      result = reject(call, ENOMEM, "cmd {:#x} arg {:#x}: out of memory", call.cmd, call.arg);
    } catch (const std::bad_alloc&) {
    }
  }
  // Only a command that may wait for a just-closed file names the file it conflicted with.
  if (c == nullptr || !c->has(kWaitsForClosedFile)) call.conflict = 0;
  try {
    account(c, call, result);
  } catch (const std::bad_alloc&) {
    // The call's result stands; only its trace record or log line is lost.
  }
  return result;
}

Result<long> Emulator::dispatch(File& file, IoctlCall& call, const Command** command) {
  const NodeType& kind = node_type(file.kind());
  Route route = TRY(kind.route(*this, file, call));
  const Command* c = find_command(file.kind(), route.backend, call.cmd);
  *command = c;
  call.command = c;
  TRY(kind.admit(*this, file, call, c, route));
  if (c == nullptr) return err(ENOTTY);
  TRY(read_argument(call, *c));
  return c->handler(*this, file, call);
}

void Emulator::account(const Command* c, IoctlCall& call, const Result<long>& result) {
  if (!result && is_internal_code(result.error())) return;  // the same ioctl comes again
  auto log = logger("core");
  if (!result && result.error() == ENOTTY && c == nullptr &&
      rejection_log_allowed(*log, call.caller.pid))
    log->info("{} pid {} ioctl {:#x} arg {:#x}: unknown command: ENOTTY", call.node_name,
              call.caller.pid, call.cmd, call.arg);
  const auto all = all_commands();
  CommandCounters::Count& count =
      c != nullptr && static_cast<size_t>(c - all.data()) < CommandCounters::kMaxCommands
          ? counters_.by_command[static_cast<size_t>(c - all.data())]
          : counters_.unknown;
  count.calls.fetch_add(1, std::memory_order_relaxed);
  if (!result) count.errors.fetch_add(1, std::memory_order_relaxed);
  const long value = result ? *result : -static_cast<long>(result.error());
  if (log->should_log(spdlog::level::debug))
    log->debug("{} pid {} {} {}: {}", call.node_name, call.caller.pid,
               c ? c->name : std::string_view("ioctl"), call.detail,
               result ? fmt::format("{}", value)
                      : fmt::format("{} ({})", errno_name(result.error()), result.error()));
  TraceRecord r;
  // Copied: the caller may still want the decoded operands.
  r.time = now_seconds();
  r.pid = call.caller.pid;
  r.tid = call.caller.tid;
  r.node.assign(call.node_name);
  r.command = c ? c->name : std::string_view();  // the table's names are static
  r.cmd = call.cmd;
  r.arg = call.arg;
  r.detail.assign(call.detail);
  r.result = value;
  trace_.record(r);
}

}  // namespace vfio_emu::core
