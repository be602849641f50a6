// The memory a program maps for a device's BARs (mmap of the device fd at a region offset), and
// the daemon's view of it.
//
// One memfd per device holds every mappable BAR at its VFIO region offset (BAR n at n << 40,
// sparse: only the BARs' pages exist). The FUSE transport hands the memfd to the kernel as the
// device file's passthrough backing file, so a program's mmap of the device fd maps these pages
// (no request reaches the daemon, see docs/DESIGN-NOTES.md "BAR mmap"); the daemon maps each BAR
// too. Both sides see every store at once: the model keeps the window coherent with its state
// (devices/register_mirror.h for a register file, plain memory for testdev).
//
// What the program wrote is untrusted input like any other: the daemon reads the window with
// single naturally aligned loads and never follows a pointer in it.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "base/ints.h"
#include "base/result.h"

namespace vfio_emu::devices {

// One BAR's pages as the daemon maps them.
class BarWindow {
 public:
  BarWindow(u8* base, u64 size) : base_(base), size_(size) {}
  ~BarWindow();
  BarWindow(const BarWindow&) = delete;
  BarWindow& operator=(const BarWindow&) = delete;

  u64 size() const { return size_; }
  u8* data() { return base_; }

  // Single-copy atomic accesses of 1, 2, 4 or 8 bytes at a naturally aligned `offset` inside the
  // window (as the CPU makes a program's MMIO of that width). The caller guarantees alignment
  // and bounds.
  u64 load(u64 offset, u32 width) const;
  void store(u64 offset, u32 width, u64 value);
  // Replaces `expected` by `desired` unless the program changed the value meanwhile.
  bool compare_exchange(u64 offset, u32 width, u64 expected, u64 desired);

 private:
  u8* base_;
  u64 size_;
};

class BarFile {
 public:
  static constexpr u32 kBars = 6;
  // A memfd named `name` (shown in /proc/<pid>/maps of a program that maps it) holding BAR n of
  // bar_sizes[n] bytes at n << 40 for every nonzero size, mapped into the daemon.
  // Errors: errno of memfd_create/ftruncate/mmap.
  static Result<std::unique_ptr<BarFile>> create(const std::string& name,
                                                  const std::array<u64, kBars>& bar_sizes);
  ~BarFile();
  BarFile(const BarFile&) = delete;
  BarFile& operator=(const BarFile&) = delete;

  int fd() const { return fd_; }
  // BAR `bar`'s window, null if that BAR is not in the file.
  BarWindow* window(u32 bar) const { return bar < kBars ? windows_[bar].get() : nullptr; }

 private:
  explicit BarFile(int fd) : fd_(fd) {}
  int fd_;
  std::array<std::unique_ptr<BarWindow>, kBars> windows_;
};

}  // namespace vfio_emu::devices
