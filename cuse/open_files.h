// What a transport keeps per open file, and the close/reopen handshake.
//
// A FUSE file's handle (fi->fh) points straight at its Handle, so an ioctl needs no lookup and
// no global lock. The registry below is used only on open, flush and release.
//
// FUSE sends RELEASE asynchronously: close() returns before the daemon hears of it. A program
// that closes a group and reopens it at once would then meet its own old open file (EBUSY).
// FLUSH, though, is synchronous on every close(). So: a flush marks the file as "closing", and
// an open that finds the node busy with a closing file waits (briefly) for its release.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/objects.h"

namespace vfio_emu::cuse {

using core::u64;

struct Handle {
  std::shared_ptr<core::File> file;
  std::string node_name;  // "vfio/1", for logs
};

class OpenFiles {
 public:
  void opened(const core::File& f);
  void flushed(const core::File& f);
  void released(const core::File& f);
  // Waits up to `timeout` for file `id` to be released, if it was flushed (closed by someone)
  // and is not released yet. Returns true if it is gone.
  bool wait_release_after_flush(u64 id, std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable released_;
  std::unordered_map<u64, bool> open_;  // id -> flushed since open
};

}  // namespace vfio_emu::cuse
