// A program's mapping of a device's BAR memory in the unit tests: the memfd of a
// devices::BarFile mapped again at the BAR's region offset, as mmap of the device fd maps it
// through FUSE passthrough.
#pragma once

#include <sys/mman.h>

#include <cstring>
#include <stdexcept>

#include "base/ints.h"

namespace vfio_emu::devices::testing {

class ProgramMapping {
 public:
  ProgramMapping(int fd, u32 bar, u64 size) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                     static_cast<off_t>(u64{bar} << 40));
    if (p == MAP_FAILED) throw std::runtime_error("mmap of the BAR memfd failed");
    p_ = static_cast<u8*>(p);
  }
  ~ProgramMapping() { ::munmap(p_, size_); }
  ProgramMapping(const ProgramMapping&) = delete;
  ProgramMapping& operator=(const ProgramMapping&) = delete;

  // Single stores and loads, as a driver's writeX()/readX().
  template <typename T>
  void store(u64 off, T v) {
    __atomic_store_n(reinterpret_cast<T*>(p_ + off), v, __ATOMIC_RELEASE);
  }
  template <typename T>
  T load(u64 off) const {
    return __atomic_load_n(reinterpret_cast<const T*>(p_ + off), __ATOMIC_ACQUIRE);
  }
  u8* data() { return p_; }

 private:
  u8* p_;
  u64 size_;
};

}  // namespace vfio_emu::devices::testing
