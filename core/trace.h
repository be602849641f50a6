// What the emulator remembers for the tools: the decoded ioctl stream (trace), the IOMMU fault
// log, and per-command call and error counts. Bounded rings: the oldest records fall out.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "iommu/types.h"

namespace vfio_emu::core {

using iommu::u64;
using iommu::u8;

// One ioctl as the trace shows it.
struct TraceRecord {
  u64 seq = 0;
  double time = 0;  // seconds since the epoch
  pid_t pid = 0;
  pid_t tid = 0;
  std::string node;     // "vfio/vfio"
  std::string_view command;  // "VFIO_IOMMU_MAP_DMA" (the command table's), empty when unknown
  std::uint32_t cmd = 0;
  u64 arg = 0;
  std::string detail;   // decoded operands, "iova=0x1000 size=0x2000 ..."
  long result = 0;      // >= 0, or -errno
};

// A DMA the IOMMU refused. Defined now, filled when emulated devices do DMA: a record names the
// device, the domain and unit, the address and access, and why (iommu::FaultReason), with the
// hardware's own fault code (VT-d fault reason; 0 for TCE).
struct FaultRecord {
  u64 seq = 0;
  double time = 0;
  std::string device;  // BDF
  u64 domain = 0;      // HwDomain id
  std::string unit;
  u64 iova = 0;
  iommu::Access access = iommu::Access::kRead;
  iommu::FaultReason reason = iommu::FaultReason::kNotPresent;
  int level = 0;
  u8 hw_code = 0;
};

// A bounded log that readers can follow.
template <class Record>
class RingLog {
 public:
  explicit RingLog(size_t capacity) : capacity_(capacity) {}

  void record(Record r) {
    {
      std::lock_guard lock(mu_);
      r.seq = ++last_seq_;
      if (records_.size() == capacity_) records_.pop_front();
      records_.push_back(std::move(r));
    }
    cv_.notify_all();
  }
  // Records with seq > `after`, oldest first, at most `max`.
  std::vector<Record> since(u64 after, size_t max) const {
    std::lock_guard lock(mu_);
    std::vector<Record> out;
    for (const Record& r : records_)
      if (r.seq > after && out.size() < max) out.push_back(r);
    return out;
  }
  // Waits up to `timeout` for a record after `after`; true if there is one.
  bool wait(u64 after, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return last_seq_ > after; });
  }
  u64 last_seq() const {
    std::lock_guard lock(mu_);
    return last_seq_;
  }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<Record> records_;
  u64 last_seq_ = 0;
};

using TraceLog = RingLog<TraceRecord>;
using FaultLog = RingLog<FaultRecord>;

// Calls and errors per command of the command table (by index into all_commands()), plus the
// commands nobody knows.
struct CommandCounters {
  struct Count {
    std::atomic<u64> calls{0};
    std::atomic<u64> errors{0};
  };
  static constexpr size_t kMaxCommands = 256;
  std::array<Count, kMaxCommands> by_command;
  Count unknown;
};

double now_seconds();

}  // namespace vfio_emu::core
