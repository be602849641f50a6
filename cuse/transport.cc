#include "cuse/transport.h"

#include <linux/capability.h>

#include <cerrno>
#include <cstdint>

#include "core/cleanup.h"
#include "cuse/caller_process.h"
#include "core/log.h"

namespace vfio_emu::cuse {
namespace {

Result<std::shared_ptr<core::File>> open_node(core::Emulator& emu, OpenFiles& files,
                                              const core::NodeInfo& node,
                                              const core::Caller& caller) {
  u64 conflict = 0;
  auto r = emu.open(node, caller, &conflict);
  // A group held by a file that was just closed (its RELEASE on the way): once more after it.
  if (!r && r.error() == EBUSY && files.settle(conflict)) r = emu.open(node, caller);
  if (r) files.opened(**r);
  return r;
}

}  // namespace

Handle* handle_of(const fuse_file_info* fi) { return reinterpret_cast<Handle*>(fi->fh); }

void serve_open(core::Emulator& emu, OpenFiles& files, fuse_req_t req, fuse_file_info* fi,
                const core::NodeInfo& node, const core::Caller& opener) {
  core::Caller caller = opener;
  caller.cap_sys_rawio = caller.tid > 0 && has_capability(caller.tid, CAP_SYS_RAWIO);
  auto r = open_node(emu, files, node, caller);
  if (!r) return (void)fuse_reply_err(req, r.error());
  const std::shared_ptr<core::File> file = r.take();
  // Until the kernel holds the file, every way out (an interrupted caller, bad_alloc) undoes the
  // open.
  core::Cleanup unopen([&] {
    files.released(*file);
    emu.release(file);
  });
  auto handle = std::make_unique<Handle>(Handle{file, node.path});
  fi->fh = reinterpret_cast<uint64_t>(handle.get());
  // The caller was interrupted and is gone: the kernel will send no release for the file.
  if (fuse_reply_open(req, fi) == -ENOENT) return;
  handle.release();  // the kernel's now, until serve_release
  unopen.cancel();
}

void serve_release(core::Emulator& emu, OpenFiles& files, fuse_req_t req, fuse_file_info* fi) {
  std::unique_ptr<Handle> h(handle_of(fi));
  emu.release(h->file);
  files.released(*h->file);
  h.reset();
  fuse_reply_err(req, 0);
}

namespace {


}  // namespace

Status cuse_rw_check(core::Emulator& emu, core::File& file, const std::string& node_name,
                     std::size_t size, core::u64 off, bool write) {
  auto probe = write ? emu.write(file, 0, nullptr, 0) : emu.read(file, 0, nullptr, 0);
  if (!probe) return Err{probe.error()};
  if (size == 0) return {};
  logger("cuse")->info("{} {} of {:#x} bytes at {:#x}: CUSE carries no file position, so device "
                       "regions are reached only through the FUSE transport: ESPIPE",
                       node_name, write ? "write" : "read", size, off);
  return Err{ESPIPE};
}

}  // namespace vfio_emu::cuse
