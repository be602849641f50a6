// What the emulator remembers for the tools: the decoded ioctl stream (trace), the IOMMU fault
// log, and per-command call and error counts. Bounded rings: the oldest records fall out.
//
// A trace record owns no heap memory (its strings are inline, cut to fit) and the ring is one
// array allocated up front: recording an ioctl allocates nothing, and the 4096 records the trace
// keeps do not pin pages all over the heap (which kept the daemon's RSS at its high-water mark
// after mappings were freed).
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "iommu/types.h"

namespace vfio_emu::core {

using iommu::u64;
using iommu::u8;

// A string of at most N - 1 bytes kept inline; a longer one is cut and ends in "...".
template <std::size_t N>
class InlineString {
  static_assert(N > 4 && N <= 65536);

 public:
  InlineString() = default;
  explicit InlineString(std::string_view s) { assign(s); }
  void assign(std::string_view s) {
    if (s.size() < N) {
      len_ = static_cast<std::uint16_t>(s.size());
      std::memcpy(buf_, s.data(), s.size());
    } else {
      len_ = static_cast<std::uint16_t>(N - 1);
      std::memcpy(buf_, s.data(), N - 4);
      std::memcpy(buf_ + N - 4, "...", 3);
    }
  }
  std::string_view view() const { return {buf_, len_}; }
  std::string str() const { return std::string(view()); }
  bool empty() const { return len_ == 0; }

 private:
  std::uint16_t len_ = 0;
  char buf_[N];
};

// One ioctl as the trace shows it.
struct TraceRecord {
  u64 seq = 0;
  double time = 0;  // seconds since the epoch
  pid_t pid = 0;
  pid_t tid = 0;
  InlineString<40> node;     // "vfio/vfio"
  std::string_view command;  // "VFIO_IOMMU_MAP_DMA" (the command table's), empty when unknown
  std::uint32_t cmd = 0;
  u64 arg = 0;
  InlineString<256> detail;  // decoded operands, "iova=0x1000 size=0x2000 ..."
  long result = 0;           // >= 0, or -errno
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

// A bounded log that readers can follow: `capacity` slots allocated at construction, the record
// with sequence number s in slot (s - 1) % capacity.
template <class Record>
class RingLog {
 public:
  explicit RingLog(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)), slots_(capacity_) {}

  void record(const Record& r) {
    {
      std::lock_guard lock(mu_);
      Record& slot = slots_[last_seq_ % capacity_];
      slot = r;
      slot.seq = ++last_seq_;
    }
    cv_.notify_all();
  }
  // Records with seq > `after`, oldest first, at most `max`.
  std::vector<Record> since(u64 after, size_t max) const {
    std::lock_guard lock(mu_);
    const u64 oldest = last_seq_ > capacity_ ? last_seq_ - capacity_ + 1 : 1;
    const u64 first = std::max(after + 1, oldest);
    std::vector<Record> out;
    for (u64 seq = first; seq <= last_seq_ && out.size() < max; ++seq)
      out.push_back(slots_[(seq - 1) % capacity_]);
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
  std::vector<Record> slots_;
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
