// What `vfio-emu run`'s supervisor answers for an mmap of a sysfs resource file
// (tools/resource_mmap_check.h): pci_mmap_fits's EINVAL, and 0 for what the kernel checks itself.
#include <fcntl.h>
#include <sys/mman.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdint>

#include "tools/resource_mmap_check.h"

namespace vfio_emu::tools {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kBar = 16 * 1024;  // the testdev's BAR0
constexpr int kRw = PROT_READ | PROT_WRITE;

int check(std::uint64_t len, std::uint64_t offset, int flags = MAP_SHARED, int prot = kRw,
          int open_flags = O_RDWR, std::uint64_t bar = kBar) {
  return resource_mmap_errno(bar, len, prot, flags, offset, open_flags, kPage);
}

TEST_CASE("resource mmap: pages within the BAR go to the kernel", "[run]") {
  CHECK(check(kBar, 0) == 0);
  CHECK(check(kPage, 3 * kPage) == 0);
  CHECK(check(1, 3 * kPage) == 0);           // a partial page is a page
  CHECK(check(kBar - 1, 0) == 0);
  CHECK(check(kPage, 0, MAP_PRIVATE) == 0);  // pci_mmap_resource does not look at the type
  CHECK(check(kPage, 0, MAP_SHARED_VALIDATE) == 0);
  // A BAR smaller than a page: its one page maps.
  CHECK(check(kPage, 0, MAP_SHARED, kRw, O_RDWR, 256) == 0);
  CHECK(check(2 * kPage, 0, MAP_SHARED, kRw, O_RDWR, 256) == EINVAL);
}

TEST_CASE("resource mmap: pages past the BAR are EINVAL (pci_mmap_fits)", "[run]") {
  CHECK(check(kBar + 1, 0) == EINVAL);
  CHECK(check(kBar + kPage, 0) == EINVAL);
  CHECK(check(kPage, kBar) == EINVAL);        // at the end
  CHECK(check(kPage, 1ull << 40) == EINVAL);  // far past it
  CHECK(check(2 * kPage, 3 * kPage) == EINVAL);
  CHECK(check(kBar + kPage, 0, MAP_PRIVATE) == EINVAL);
  CHECK(check(kPage, kBar, MAP_SHARED, PROT_READ, O_RDONLY) == EINVAL);
}

TEST_CASE("resource mmap: what do_mmap refuses first is left to the kernel", "[run]") {
  CHECK(check(0, kBar) == 0);                           // EINVAL: zero length
  CHECK(check(kPage, kBar + 1) == 0);                   // EINVAL: unaligned offset
  CHECK(check(1ull << 48, 0) == 0);                     // ENOMEM: no room for it
  CHECK(check(kPage, ~std::uint64_t{0} & ~(kPage - 1)) == 0);  // EOVERFLOW
  CHECK(check(kPage, kBar, 0) == 0);                    // EINVAL: no mapping type
  CHECK(check(kPage, kBar, MAP_SHARED, kRw, O_RDONLY) == 0);   // EACCES: not open for writing
  CHECK(check(kPage, kBar, MAP_PRIVATE, PROT_READ, O_WRONLY) == 0);  // EACCES: not for reading
  // A private writable mapping of a read-only fd is allowed: then the BAR check answers.
  CHECK(check(kPage, kBar, MAP_PRIVATE, kRw, O_RDONLY) == EINVAL);
}

}  // namespace
}  // namespace vfio_emu::tools

namespace vfio_emu::tools {
namespace {

constexpr std::uint64_t kBar0 = 0;                         // region 0's offset
constexpr std::uint64_t kConfig = std::uint64_t{7} << 40;  // VFIO_PCI_CONFIG_REGION_INDEX

int device(std::uint64_t len, std::uint64_t offset, int flags = MAP_SHARED, bool info = true,
           bool mappable = true, std::uint64_t size = 16 * 1024) {
  return device_mmap_errno(info, size, mappable, len, flags, offset, 4096);
}

TEST_CASE("device mmap: what vfio_pci_core_mmap refuses", "[run]") {
  CHECK(device(16 * 1024, kBar0) == 0);
  CHECK(device(4096, kBar0 + 3 * 4096) == 0);
  CHECK(device(1, kBar0 + 3 * 4096) == 0);               // a partial page is a page
  CHECK(device(16 * 1024 + 1, kBar0) == EINVAL);         // past the BAR
  CHECK(device(4096, kBar0 + 16 * 1024) == EINVAL);
  CHECK(device(4096, kBar0, MAP_PRIVATE) == EINVAL);     // VM_SHARED
  CHECK(device(4096, kBar0, MAP_SHARED, false) == EINVAL);  // not bound: access not granted
  CHECK(device(4096, kConfig) == EINVAL);                // config space, ROM, VGA
  CHECK(device(4096, std::uint64_t{6} << 40) == EINVAL);
  CHECK(device(4096, std::uint64_t{9} << 40) == EINVAL);  // no such region
  // A BAR the daemon does not map (no passthrough): its own answer stands.
  CHECK(device(4096, kBar0, MAP_SHARED, true, false) == 0);
  // A small BAR maps its whole page (PAGE_ALIGN of the BAR's length).
  CHECK(device(4096, std::uint64_t{1} << 40, MAP_SHARED, true, true, 256) == 0);
  // do_mmap's own checks stay the kernel's.
  CHECK(device(0, kBar0) == 0);
  CHECK(device(4096, kBar0 + 1) == 0);
  CHECK(device(4096, kBar0, 0) == 0);
}

}  // namespace
}  // namespace vfio_emu::tools
