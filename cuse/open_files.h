// The close/reopen handshake of the transports.
//
// A FUSE file's handle (fi->fh) points straight at its Handle, so an ioctl needs no lookup and
// no global lock. The registry below is used only on open, flush, release and conflicts.
//
// FUSE sends RELEASE asynchronously: close() returns before the daemon hears of it, while Linux
// releases a VFIO file before close() returns. A program that closes a group and at once opens it
// again, binds its device, or closes a bound cdev and opens its group, would meet its own old
// file (EBUSY, EINVAL). FLUSH, though, is synchronous on every close(), and a RELEASE that is
// coming follows it within moments. So: an operation that fails on a conflict while some file was
// flushed moments ago waits for that file's release (at most kSettleWindow after its flush) and
// is tried once more. A file flushed by a close() that was not its last (a dup, a forked child)
// is simply not released in that window, and the conflict stands.
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
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kSettleWindow{250};

  void opened(const core::File& f);
  void flushed(const core::File& f);
  void released(const core::File& f);

  // After an attempt failed on a conflict with open file `conflict` (0: none named): waits for
  // that file's release if it was flushed within kSettleWindow, but not past kSettleWindow after
  // that flush. Returns true if the file is released (now, or already since the attempt), i.e.
  // if trying again may succeed.
  bool settle(u64 conflict);

 private:
  std::mutex mu_;
  std::condition_variable released_;
  std::unordered_map<u64, Clock::time_point> flushed_at_;  // open files; time of the last flush
};

}  // namespace vfio_emu::cuse
