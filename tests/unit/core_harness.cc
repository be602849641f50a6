#include "tests/unit/core_harness.h"

#include <sys/mman.h>

#include <stdexcept>

namespace vfio_emu::test {

Buffer::Buffer(u64 size, int prot) : size_(size) {
  // Aligned to 2 MiB so that type1 maps of it can use superpages.
  const u64 align = u64{2} << 20;
  void* raw = mmap(nullptr, size + align, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) throw std::runtime_error("mmap");
  const u64 base = (reinterpret_cast<u64>(raw) + align - 1) & ~(align - 1);
  if (base > reinterpret_cast<u64>(raw)) munmap(raw, base - reinterpret_cast<u64>(raw));
  const u64 tail = reinterpret_cast<u64>(raw) + size + align - (base + size);
  if (tail) munmap(reinterpret_cast<void*>(base + size), tail);
  p_ = reinterpret_cast<void*>(base);
}

Buffer::~Buffer() { munmap(p_, size_); }

}  // namespace vfio_emu::test
