// A device's DMA through the IOMMU (core/device_dma.h): every access walks the device's real
// domain, lands in the mapping owner's memory, and a byte that does not translate is a recorded
// IOMMU fault that writes nothing.
#include <catch2/catch.hpp>
#include <fmt/core.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "core/device_dma.h"
#include "core/owner_memory.h"
#include "core/uapi/vfio_emu.h"
#include "tests/unit/iommufd/iommufd_helpers.h"

using namespace vfio_emu;
using namespace vfio_emu::test;
using namespace vfio_emu::uapi;

namespace {

constexpr u32 RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

core::Device& device_of_group(Harness& h, u32 group) {
  core::Group* g = h.emu.group_by_id(group);
  REQUIRE(g != nullptr);
  return *g->devices().front();
}

int type1_container(Harness& h, const char* group) {
  const int g = h.open(group);
  const int c = h.open("vfio/vfio");
  REQUIRE(h.ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  return c;
}

int map(Harness& h, int c, u64 vaddr, u64 iova, u64 size, u32 flags = RW) {
  vfio_iommu_type1_dma_map m{sizeof(m), flags, vaddr, iova, size};
  return h.fails(c, VFIO_IOMMU_MAP_DMA, &m);
}

int unmap(Harness& h, int c, u64 iova, u64 size) {
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof(u);
  u.iova = iova;
  u.size = size;
  return h.fails(c, VFIO_IOMMU_UNMAP_DMA, &u);
}

std::vector<core::FaultRecord> faults_since(Harness& h, u64 seq) {
  return h.emu.faults().since(seq, 100);
}

}  // namespace

TEST_CASE("device DMA through a type1 container's VT-d domain", "[dma]") {
  Harness h;
  const int c = type1_container(h, "vfio/1");
  core::Device& dev = device_of_group(h, 1);
  core::DeviceDma dma(h.emu, dev);
  Buffer buf(4 * K4);
  std::memset(buf.get(), 0, buf.size());
  REQUIRE(map(h, c, buf.addr(), 0x100000, 2 * K4) == 0);
  REQUIRE(map(h, c, buf.addr() + 2 * K4, 0x200000, K4, VFIO_DMA_MAP_FLAG_READ) == 0);

  // A write that crosses a page boundary lands in the owner's memory, at the mapped address.
  std::vector<u8> pattern(K4 + 200);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<u8>(i * 7 + 1);
  REQUIRE(dma.write(0x100000 + 100, pattern.data(), pattern.size()).ok());
  CHECK(std::memcmp(static_cast<u8*>(buf.get()) + 100, pattern.data(), pattern.size()) == 0);
  std::vector<u8> back(pattern.size());
  const u64 tseq = h.emu.trace().last_seq();
  REQUIRE(dma.read(0x100000 + 100, back.data(), back.size()).ok());
  CHECK(back == pattern);
  // The trace shows the access: device, IOVA range, owner and address, result.
  auto tr = h.emu.trace().since(tseq, 10);
  REQUIRE(tr.size() == 1);
  CHECK(tr[0].command == "DMA_READ");
  CHECK(std::string(tr[0].node.view()) == dev.spec().bdf);
  CHECK(tr[0].pid == getpid());
  CHECK(std::string(tr[0].detail.view()) ==
        fmt::format("iova=0x100064 len=0x10c8 owner={} addr={:#x}", getpid(), buf.addr() + 100));
  CHECK(tr[0].result == 0);

  // Not mapped: a fault, recorded with the device, the IOVA, the access and the VT-d reason;
  // nothing written.
  const u64 seq = h.emu.faults().last_seq();
  u8 byte = 0xaa;
  CHECK(dma.write(0x300000, &byte, 1).error() == EFAULT);
  auto f = faults_since(h, seq);
  REQUIRE(f.size() == 1);
  CHECK(f[0].device == dev.spec().bdf);
  CHECK(f[0].iova == 0x300000);
  CHECK(f[0].access == iommu::Access::kWrite);
  CHECK(f[0].reason == iommu::FaultReason::kNotPresent);
  CHECK(f[0].hw_code == 0x5);
  CHECK(f[0].unit == "dmar0");
  CHECK(h.emu.trace().since(tseq, 10).back().result == -EFAULT);

  // A read-only mapping: the device reads it, and a write faults without touching it.
  static_cast<u8*>(buf.get())[2 * K4] = 0x5a;
  REQUIRE(dma.read(0x200000, &byte, 1).ok());
  CHECK(byte == 0x5a);
  byte = 0x11;
  CHECK(dma.write(0x200000, &byte, 1).error() == EFAULT);
  CHECK(static_cast<u8*>(buf.get())[2 * K4] == 0x5a);
  f = faults_since(h, seq);
  REQUIRE(f.size() == 2);
  CHECK(f[1].reason == iommu::FaultReason::kNoPermission);
  CHECK(f[1].hw_code == 0x5);

  // A transfer that runs off the end of a mapping stops at the first byte that does not
  // translate: what came before it is written, as on hardware.
  std::memset(buf.get(), 0, 2 * K4);
  std::vector<u8> ones(2 * K4 + 16, 1);
  CHECK(dma.write(0x100000, ones.data(), ones.size()).error() == EFAULT);
  CHECK(static_cast<u8*>(buf.get())[2 * K4 - 1] == 1);
  CHECK(faults_since(h, seq).back().iova == 0x100000 + 2 * K4);

  // After UNMAP_DMA the device faults: a read of the old IOVA.
  REQUIRE(unmap(h, c, 0x100000, 2 * K4) == 0);
  CHECK(dma.read(0x100000, &byte, 1).error() == EFAULT);
  CHECK(faults_since(h, seq).back().access == iommu::Access::kRead);
  CHECK(faults_since(h, seq).back().hw_code == 0x6);
}

TEST_CASE("device DMA: no domain, no DMA; memory the owner unmapped is not reached", "[dma]") {
  Harness h;
  core::Device& dev = device_of_group(h, 1);
  core::DeviceDma dma(h.emu, dev);
  u8 byte = 0;
  CHECK(dma.read(0x1000, &byte, 1).error() == ENXIO);  // not in a container

  // An emulated group (nop unit): its mappings are only recorded; the device has no DMA.
  const int c4 = type1_container(h, "vfio/4");
  Buffer b4(K4);
  REQUIRE(map(h, c4, b4.addr(), 0x1000, K4) == 0);
  core::DeviceDma nop_dma(h.emu, device_of_group(h, 4));
  CHECK(nop_dma.read(0x1000, &byte, 1).error() == ENXIO);

  // The owner unmaps its memory while it is still DMA-mapped (vfio-emu does not pin): EFAULT, and
  // no fault is recorded (the IOMMU translated it).
  const int c = type1_container(h, "vfio/1");
  void* p = mmap(nullptr, K4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  REQUIRE(map(h, c, reinterpret_cast<u64>(p), 0x1000, K4) == 0);
  REQUIRE(munmap(p, K4) == 0);
  const u64 seq = h.emu.faults().last_seq();
  CHECK(dma.write(0x1000, &byte, 1).error() == EFAULT);
  CHECK(h.emu.faults().last_seq() == seq);
}

TEST_CASE("device DMA through an iommufd HWPT (cdev bound and attached)", "[dma]") {
  Harness h;
  int ictx = -1;
  const int dev_fd = bound_device(h, "vfio/devices/vfio0", &ictx);
  const u32 ioas = ioas_alloc(h, ictx);
  core::Device& dev = device_of_group(h, 1);
  core::DeviceDma dma(h.emu, dev);
  u8 byte = 0x42;
  CHECK(dma.write(0x10000, &byte, 1).error() == ENXIO);  // bound, not attached
  REQUIRE(attach(h, dev_fd, ioas) == 0);
  Buffer buf(2 * K4);
  std::memset(buf.get(), 0, buf.size());
  REQUIRE(ioas_map_at(h, ictx, ioas, buf.addr(), 2 * K4, 0x10000) == 0);
  REQUIRE(dma.write(0x10000 + K4 + 3, &byte, 1).ok());
  CHECK(static_cast<u8*>(buf.get())[K4 + 3] == 0x42);
  const u64 seq = h.emu.faults().last_seq();
  CHECK(dma.read(0x30000, &byte, 1).error() == EFAULT);
  REQUIRE(faults_since(h, seq).size() == 1);
  CHECK(faults_since(h, seq)[0].hw_code == 0x6);
  REQUIRE(ioas_unmap(h, ictx, ioas, 0x10000, 2 * K4) == 0);
  CHECK(dma.read(0x10000, &byte, 1).error() == EFAULT);
}

TEST_CASE("device DMA through a group set to an iommufd (compat, group path)", "[dma]") {
  // The selftests' iommufd_compat modes: SET_CONTAINER with an iommufd fd, SET_IOMMU and
  // MAP_DMA on the iommufd, the device fd from the group. The device's DMA goes through the
  // compat IOAS's HWPT (it had no path before: ENXIO).
  Harness h;
  const int g = h.open("vfio/1");
  const int ictx = h.open("iommu");
  REQUIRE(h.ioctl(g, VFIO_GROUP_SET_CONTAINER, &ictx) == 0);
  REQUIRE(h.ioctl(ictx, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0);
  core::Device& dev = device_of_group(h, 1);
  core::DeviceDma dma(h.emu, dev);
  u8 byte = 0x5a;
  CHECK(dma.write(0x10000, &byte, 1).error() == ENXIO);  // no device file through the group yet
  const long n = h.ioctl(g, VFIO_EMU_GROUP_DEVICE, "0000:00:01.0");
  REQUIRE(n >= 0);
  const int dev_fd = h.open("vfio/devices/vfio" + std::to_string(n));
  REQUIRE(h.ioctl(dev_fd, VFIO_EMU_DEVICE_USE_GROUP, static_cast<u64>(g)) == 0);
  Buffer buf(2 * K4);
  std::memset(buf.get(), 0, buf.size());
  REQUIRE(map(h, ictx, buf.addr(), 0x10000, 2 * K4) == 0);
  REQUIRE(dma.write(0x10000 + K4 + 7, &byte, 1).ok());
  CHECK(static_cast<u8*>(buf.get())[K4 + 7] == 0x5a);
  CHECK(dma.read(0x40000, &byte, 1).error() == EFAULT);  // not mapped: a fault
  h.close(dev_fd);  // the device file goes: no more DMA
  CHECK(dma.write(0x10000, &byte, 1).error() == ENXIO);
}

TEST_CASE("device DMA through an sPAPR TCE container (a POWER PHB)", "[dma][spapr]") {
  Harness h;
  const int g = h.open("vfio/3");  // 0001:00:00.0 behind phb0
  const int c = h.open("vfio/vfio");
  REQUIRE(h.ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) == 0);
  REQUIRE(h.ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU) == 0);
  REQUIRE(h.ioctl(c, VFIO_IOMMU_ENABLE) == 0);
  core::Device& dev = device_of_group(h, 3);
  core::DeviceDma dma(h.emu, dev);
  Buffer buf(4 * K4);
  std::memset(buf.get(), 0, buf.size());
  // The default 32-bit window starts at bus address 0; a TCE holds the user address.
  REQUIRE(map(h, c, buf.addr(), 0, 2 * K4) == 0);
  REQUIRE(map(h, c, buf.addr() + 2 * K4, 2 * K4, K4, VFIO_DMA_MAP_FLAG_READ) == 0);

  std::vector<u8> pattern(K4 + 300);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<u8>(i * 5 + 3);
  REQUIRE(dma.write(0x80, pattern.data(), pattern.size()).ok());
  CHECK(std::memcmp(static_cast<u8*>(buf.get()) + 0x80, pattern.data(), pattern.size()) == 0);
  std::vector<u8> back(pattern.size());
  REQUIRE(dma.read(0x80, back.data(), back.size()).ok());
  CHECK(back == pattern);

  // No TCE: a fault, recorded against the PHB; a read-only TCE refuses a write.
  const u64 seq = h.emu.faults().last_seq();
  u8 byte = 0xaa;
  CHECK(dma.write(3 * K4, &byte, 1).error() == EFAULT);
  static_cast<u8*>(buf.get())[2 * K4] = 0x5a;
  REQUIRE(dma.read(2 * K4, &byte, 1).ok());
  CHECK(byte == 0x5a);
  byte = 0x11;
  CHECK(dma.write(2 * K4, &byte, 1).error() == EFAULT);
  CHECK(static_cast<u8*>(buf.get())[2 * K4] == 0x5a);
  auto f = faults_since(h, seq);
  REQUIRE(f.size() == 2);
  CHECK(f[0].device == dev.spec().bdf);
  CHECK(f[0].unit == "phb0");
  CHECK(f[0].iova == 3 * K4);
  CHECK(f[0].reason == iommu::FaultReason::kNotPresent);
  CHECK(f[1].reason == iommu::FaultReason::kNoPermission);

  // EEH: a frozen PE does no DMA (EIO) until its DMA is unfrozen.
  vfio_eeh_pe_op op{};
  op.argsz = sizeof(op);
  op.op = VFIO_EEH_PE_ENABLE;
  REQUIRE(h.ioctl(c, VFIO_EEH_PE_OP, &op) == 0);
  op.op = VFIO_EEH_PE_INJECT_ERR;
  op.err.type = EEH_ERR_TYPE_32;
  op.err.func = EEH_ERR_FUNC_LD_CFG_ADDR;
  REQUIRE(h.ioctl(c, VFIO_EEH_PE_OP, &op) == 0);
  CHECK(dma.read(0x80, &byte, 1).error() == EIO);
  op = {};
  op.argsz = sizeof(op);
  op.op = VFIO_EEH_PE_UNFREEZE_DMA;
  REQUIRE(h.ioctl(c, VFIO_EEH_PE_OP, &op) == 0);
  CHECK(dma.read(0x80, &byte, 1).ok());

  // After UNMAP_DMA the device faults.
  REQUIRE(unmap(h, c, 0, 2 * K4) == 0);
  CHECK(dma.read(0x80, &byte, 1).error() == EFAULT);
}

TEST_CASE("device DMA into the owner's shared memory goes through the daemon's own mapping",
          "[dma][shared]") {
  // core/owner_memory.h: MAP_SHARED memory (shmem, a memfd) is copied with memcpy through a
  // mapping of the same file; private memory keeps process_vm_readv/writev. Both land alike.
  Harness h;
  const int c = type1_container(h, "vfio/1");
  core::Device& dev = device_of_group(h, 1);
  core::DeviceDma dma(h.emu, dev);
  const u64 size = 4 * K4;
  const int memfd = memfd_create("vfio-emu-test", MFD_CLOEXEC);
  REQUIRE(memfd >= 0);
  REQUIRE(ftruncate(memfd, static_cast<off_t>(size)) == 0);
  auto* shm = static_cast<u8*>(mmap(nullptr, size, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  auto* file = static_cast<u8*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0));
  REQUIRE(shm != MAP_FAILED);
  REQUIRE(file != MAP_FAILED);
  std::memset(shm, 0, size);
  std::memset(file, 0, size);
  REQUIRE(map(h, c, reinterpret_cast<u64>(shm), 0x100000, size) == 0);
  REQUIRE(map(h, c, reinterpret_cast<u64>(file), 0x200000, size) == 0);

  std::vector<u8> pattern(size - 64);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<u8>(i * 11 + 5);
  const bool root = geteuid() == 0;  // /proc/PID/map_files needs CAP_SYS_ADMIN
  for (auto [iova, mem] : {std::pair{u64{0x100000}, shm}, std::pair{u64{0x200000}, file}}) {
    const u64 before = core::owner_memory().direct_bytes();
    REQUIRE(dma.write(iova + 64, pattern.data(), pattern.size()).ok());
    CHECK(std::memcmp(mem + 64, pattern.data(), pattern.size()) == 0);
    std::vector<u8> back(pattern.size());
    REQUIRE(dma.read(iova + 64, back.data(), back.size()).ok());
    CHECK(back == pattern);
    if (root) CHECK(core::owner_memory().direct_bytes() - before == 2 * pattern.size());
  }

  // Made read-only by its owner: a DMA write is refused (as process_vm_writev refuses it), and
  // nothing is written.
  REQUIRE(mprotect(file, size, PROT_READ) == 0);
  u8 byte = 0xee;
  CHECK(dma.write(0x200000, &byte, 1).error() == EFAULT);
  CHECK(file[0] == 0);
  REQUIRE(mprotect(file, size, PROT_READ | PROT_WRITE) == 0);

  // Replaced by private memory at the same address: the DMA reaches the new memory, not the
  // file the daemon had mapped.
  void* fresh = mmap(file, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                     -1, 0);
  REQUIRE(fresh == file);
  byte = 0x42;
  REQUIRE(dma.write(0x200000, &byte, 1).ok());
  CHECK(file[0] == 0x42);
  u8 in_file = 0xff;
  REQUIRE(pread(memfd, &in_file, 1, 0) == 1);
  CHECK(in_file == 0);
  munmap(shm, size);
  munmap(file, size);
  close(memfd);
}

TEST_CASE("device DMA: the daemon lets go of an owner's shared memory it no longer uses",
          "[dma][shared]") {
  Harness h;
  const int c = type1_container(h, "vfio/1");
  core::DeviceDma dma(h.emu, device_of_group(h, 1));
  core::owner_memory().drop_idle(0);  // what earlier cases left
  const u64 size = 16 * K4;
  auto* shm = static_cast<u8*>(mmap(nullptr, size, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  REQUIRE(shm != MAP_FAILED);
  REQUIRE(map(h, c, reinterpret_cast<u64>(shm), 0x100000, size) == 0);
  u8 byte = 7;
  REQUIRE(dma.write(0x100000, &byte, 1).ok());
  // The daemon's own mappings of that memory: one while in use, none once idle.
  // The mappings of the buffer's shmem inode other than the buffer itself.
  auto views = [&] {
    int n = 0;
    char line[512];
    unsigned long long ino = 0, lo = 0, hi = 0, i = 0;
    std::vector<std::pair<unsigned long long, unsigned long long>> all;  // (start, inode)
    FILE* f = std::fopen("/proc/self/maps", "re");
    while (f && std::fgets(line, sizeof(line), f))
      if (std::sscanf(line, "%llx-%llx %*s %*x %*x:%*x %llu", &lo, &hi, &i) == 3) {
        all.emplace_back(lo, i);
        if (lo == reinterpret_cast<u64>(shm)) ino = i;
      }
    if (f) std::fclose(f);
    for (const auto& [start, inode] : all) n += inode == ino && start != reinterpret_cast<u64>(shm);
    return n;
  };
  if (geteuid() == 0) CHECK(views() == 1);
  core::owner_memory().drop_idle(3600);  // used just now: kept
  if (geteuid() == 0) CHECK(views() == 1);
  core::owner_memory().drop_idle(0);
  CHECK(views() == 0);
  REQUIRE(dma.read(0x100000, &byte, 1).ok());  // and mapped again on the next access
  CHECK(byte == 7);
  REQUIRE(unmap(h, c, 0x100000, size) == 0);
  core::owner_memory().drop_idle(0);
  munmap(shm, size);
}
