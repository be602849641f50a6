#include "devices/bar_window.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace vfio_emu::devices {

namespace {
constexpr u64 kRegionShift = 40;  // VFIO_PCI_OFFSET_SHIFT
}  // namespace

BarWindow::~BarWindow() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

u64 BarWindow::load(u64 offset, u32 width) const {
  u8* p = base_ + offset;
  switch (width) {
    case 1: return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    case 2: return __atomic_load_n(reinterpret_cast<u16*>(p), __ATOMIC_ACQUIRE);
    case 4: return __atomic_load_n(reinterpret_cast<u32*>(p), __ATOMIC_ACQUIRE);
    default: return __atomic_load_n(reinterpret_cast<u64*>(p), __ATOMIC_ACQUIRE);
  }
}

void BarWindow::store(u64 offset, u32 width, u64 value) {
  u8* p = base_ + offset;
  switch (width) {
    case 1: return __atomic_store_n(p, static_cast<u8>(value), __ATOMIC_RELEASE);
    case 2: return __atomic_store_n(reinterpret_cast<u16*>(p), static_cast<u16>(value),
                                    __ATOMIC_RELEASE);
    case 4: return __atomic_store_n(reinterpret_cast<u32*>(p), static_cast<u32>(value),
                                    __ATOMIC_RELEASE);
    default: return __atomic_store_n(reinterpret_cast<u64*>(p), value, __ATOMIC_RELEASE);
  }
}

namespace {
template <typename T>
bool cas(u8* p, u64 expected, u64 desired) {
  T e = static_cast<T>(expected);
  return __atomic_compare_exchange_n(reinterpret_cast<T*>(p), &e, static_cast<T>(desired), false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
}  // namespace

bool BarWindow::compare_exchange(u64 offset, u32 width, u64 expected, u64 desired) {
  u8* p = base_ + offset;
  switch (width) {
    case 1: return cas<u8>(p, expected, desired);
    case 2: return cas<u16>(p, expected, desired);
    case 4: return cas<u32>(p, expected, desired);
    default: return cas<u64>(p, expected, desired);
  }
}

Result<std::unique_ptr<BarFile>> BarFile::create(const std::string& name,
                                                 const std::array<u64, kBars>& bar_sizes) {
  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return err(errno);
  std::unique_ptr<BarFile> file(new BarFile(fd));
  u64 end = 0;
  for (u32 bar = 0; bar < kBars; ++bar)
    if (bar_sizes[bar] != 0) end = (u64{bar} << kRegionShift) + bar_sizes[bar];
  if (::ftruncate(fd, static_cast<off_t>(end)) != 0) return err(errno);
  for (u32 bar = 0; bar < kBars; ++bar) {
    if (bar_sizes[bar] == 0) continue;
    void* p = ::mmap(nullptr, bar_sizes[bar], PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                     static_cast<off_t>(u64{bar} << kRegionShift));
    if (p == MAP_FAILED) return err(errno);
    file->windows_[bar] = std::make_unique<BarWindow>(static_cast<u8*>(p), bar_sizes[bar]);
  }
  return file;
}

BarFile::~BarFile() {
  for (auto& w : windows_) w.reset();
  ::close(fd_);
}

}  // namespace vfio_emu::devices
