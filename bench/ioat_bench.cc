// The emulated I/OAT engine through the node, each figure against a floor measured in the same run:
//   - copy throughput with 4 KiB, 64 KiB and 1 MiB descriptors, against memcpy() of the same
//     bytes in this process (the engine's copies go through the IOMMU table walk and
//     process_vm_readv/writev into this process);
//   - doorbell-to-completion latency of one small descriptor, the doorbell rung by a store to the
//     mapped BAR and by pwrite, against the FUSE ioctl round trip (GET_API_VERSION);
//   - one register store to the mapped BAR (a trap under `vfio-emu run`,
//     bench/run_ioat_under_run.sh), against the same floor;
//   - the daemon's CPU time while the engine is idle, BAR mapped and not.
//
//   ioat-bench NODE_DIR DAEMON_PID [--quick]
//
// bench/run_node_bench.sh starts the daemon. The device is the built-in machine's vfio4.
#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "vfio_emu_compat.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr unsigned long kChan = 0x80;
constexpr unsigned long kChanCmd = kChan + 0x04, kDmaCount = kChan + 0x06,
                        kChainAddr = kChan + 0x10, kChanCmp = kChan + 0x18,
                        kChanErr = kChan + 0x28;
constexpr uint64_t kIovaDesc = 0x100000, kIovaCompl = 0x200000, kIovaSrc = 0x1000000,
                   kIovaDst = 0x10000000, kIovaSrcShared = 0x20000000,
                   kIovaDstShared = 0x30000000;
constexpr unsigned long kTotal = 64ul << 20;  // bytes per throughput run

struct Desc {
  uint32_t size, ctl;
  uint64_t src, dst, next, rsv[4];
};

std::string dir;
int dev = -1, iommufd = -1;
uint32_t ioas = 0;
volatile uint8_t* bar = nullptr;
uint64_t bar_offset = 0;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "ioat-bench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int open_node(const std::string& rel) {
  const int fd = open((dir + "/" + rel).c_str(), O_RDWR);
  if (fd < 0) die(rel.c_str());
  return fd;
}

template <typename T>
T rd(unsigned long off) { return *reinterpret_cast<volatile T*>(bar + off); }
template <typename T>
void wr(unsigned long off, T v) { *reinterpret_cast<volatile T*>(bar + off) = v; }

void* device_memory(uint64_t iova, unsigned long len, bool shared = false) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE,
                 (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  std::memset(p, 0, len);
  iommu_ioas_map m{};
  m.size = sizeof(m);
  m.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
  m.ioas_id = ioas;
  m.user_va = reinterpret_cast<uintptr_t>(p);
  m.length = len;
  m.iova = iova;
  if (ioctl(iommufd, IOMMU_IOAS_MAP, &m)) die("IOMMU_IOAS_MAP");
  return p;
}

void channel_reset() {
  wr<uint32_t>(kChanErr, rd<uint32_t>(kChanErr));
  wr<uint8_t>(kChanCmd, 0x20);
  const auto end = Clock::now() + std::chrono::seconds(5);
  while (rd<uint8_t>(kChanCmd) & 0x20)
    if (Clock::now() > end) die("reset does not finish");
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One run: kTotal bytes as descriptors of `size` bytes, one doorbell, until the last
// completion write lands. Returns bytes per second.
double engine_run(Desc* ring, uint64_t* compl_word, unsigned long size, uint64_t src_iova,
                  uint64_t dst_iova) {
  const unsigned long n = kTotal / size;
  for (unsigned long i = 0; i < n; ++i) {
    ring[i] = Desc{static_cast<uint32_t>(size), i + 1 == n ? 0x8u : 0u,
                   src_iova + i * size, dst_iova + i * size,
                   kIovaDesc + ((i + 1) % n) * sizeof(Desc), {}};
  }
  channel_reset();
  *compl_word = 0;
  wr<uint64_t>(kChanCmp, kIovaCompl);
  wr<uint64_t>(kChainAddr, kIovaDesc);
  const auto t0 = Clock::now();
  wr<uint16_t>(kDmaCount, static_cast<uint16_t>(n));
  const uint64_t last = kIovaDesc + (n - 1) * sizeof(Desc);
  while ((__atomic_load_n(compl_word, __ATOMIC_ACQUIRE) & ~0x3fULL) != last) {
    if (seconds_since(t0) > 60) die("the copy does not finish");
    // HALTED from the reset shows until the worker has taken the doorbell: an error is CHANERR.
    if (rd<uint32_t>(kChanErr) != 0) {
      std::fprintf(stderr, "CHANERR %#x\n", rd<uint32_t>(kChanErr));
      die("the channel halted");
    }
    sched_yield();
  }
  return static_cast<double>(kTotal) / seconds_since(t0);
}

// The mechanism's own floor: what the engine does per chunk, done by this process to itself
// (process_vm_readv of `size` bytes into a bounce buffer, process_vm_writev out of it).
double pvm_run(void* dst, const void* src, unsigned long size) {
  static std::vector<uint8_t> bounce;
  bounce.resize(size);
  const pid_t self = getpid();
  const auto t0 = Clock::now();
  for (unsigned long off = 0; off < kTotal; off += size) {
    iovec local{bounce.data(), size};
    iovec from{const_cast<uint8_t*>(static_cast<const uint8_t*>(src)) + off, size};
    iovec to{static_cast<uint8_t*>(dst) + off, size};
    if (process_vm_readv(self, &local, 1, &from, 1, 0) != static_cast<ssize_t>(size) ||
        process_vm_writev(self, &local, 1, &to, 1, 0) != static_cast<ssize_t>(size))
      die("process_vm_readv/writev");
  }
  return static_cast<double>(kTotal) / seconds_since(t0);
}

double memcpy_run(void* dst, const void* src) {
  const auto t0 = Clock::now();
  std::memcpy(dst, src, kTotal);
  asm volatile("" ::"r"(dst) : "memory");
  return static_cast<double>(kTotal) / seconds_since(t0);
}

// Doorbell to completion write of one 64-byte copy, in us (median of `n`).
double latency_us(Desc* ring, uint64_t* compl_word, bool by_pwrite, int n) {
  ring[0] = Desc{64, 0x8u, kIovaSrc, kIovaDst, kIovaDesc, {}};
  channel_reset();
  wr<uint64_t>(kChanCmp, kIovaCompl);
  wr<uint64_t>(kChainAddr, kIovaDesc);
  std::vector<double> v;
  for (int i = 1; i <= n; ++i) {
    *compl_word = 0;
    const uint16_t count = static_cast<uint16_t>(i);
    const auto t0 = Clock::now();
    if (by_pwrite) {
      if (pwrite(dev, &count, 2, static_cast<off_t>(bar_offset + kDmaCount)) != 2) die("pwrite");
    } else {
      wr<uint16_t>(kDmaCount, count);
    }
    while (__atomic_load_n(compl_word, __ATOMIC_ACQUIRE) == 0) {
      if (seconds_since(t0) > 10) die("no completion");
    }
    v.push_back(seconds_since(t0) * 1e6);
  }
  return median(v);
}

double ioctl_floor_us(int n) {
  const int c = open_node("vfio/vfio");
  std::vector<double> v;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i)
      if (ioctl(c, VFIO_GET_API_VERSION) != 0) die("GET_API_VERSION");
    v.push_back(seconds_since(t0) * 1e6 / n);
  }
  close(c);
  return median(v);
}

// The daemon's user+system CPU time in clock ticks (/proc/PID/stat fields 14 and 15).
long cpu_ticks(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  char buf[1024];
  const size_t len = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[len] = 0;
  const char* p = std::strrchr(buf, ')');
  if (!p) return -1;
  long utime = 0, stime = 0;
  // After ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime) != 2)
    return -1;
  return utime + stime;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: ioat-bench NODE_DIR DAEMON_PID [--quick]\n");
    return 2;
  }
  dir = argv[1];
  const pid_t daemon = static_cast<pid_t>(std::atoi(argv[2]));
  const bool quick = argc > 3 && std::string(argv[3]) == "--quick";
  const int rounds = quick ? 3 : 5;

  // Idle first, before this process has the device: the daemon with nothing mapped.
  const double idle_s = quick ? 3 : 10;
  const long hz = sysconf(_SC_CLK_TCK);
  long t0 = cpu_ticks(daemon);
  usleep(static_cast<useconds_t>(idle_s * 1e6));
  const long idle_unmapped = cpu_ticks(daemon) - t0;

  iommufd = open_node("iommu");
  dev = open_node("vfio/devices/vfio4");
  vfio_device_bind_iommufd bind{};
  bind.argsz = sizeof(bind);
  bind.iommufd = iommufd;
  if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind)) die("BIND");
  iommu_ioas_alloc alloc{};
  alloc.size = sizeof(alloc);
  if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc)) die("IOAS_ALLOC");
  ioas = alloc.out_ioas_id;
  vfio_device_attach_iommufd_pt at{};
  at.argsz = sizeof(at);
  at.pt_id = ioas;
  if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at)) die("ATTACH");
  vfio_region_info r{};
  r.argsz = sizeof(r);
  r.index = VFIO_PCI_BAR0_REGION_INDEX;
  if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &r)) die("GET_REGION_INFO");
  if (!(r.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
    errno = ENODEV;
    die("BAR0 cannot be mapped (FUSE passthrough needs root and Linux 6.9+)");
  }
  bar_offset = r.offset;
  void* m = mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev, static_cast<off_t>(r.offset));
  if (m == MAP_FAILED) die("mmap BAR0");
  bar = static_cast<volatile uint8_t*>(m);

  auto* ring = static_cast<Desc*>(device_memory(kIovaDesc, 1ul << 20));  // 16384 descriptors
  auto* compl_word = static_cast<uint64_t*>(device_memory(kIovaCompl, 4096));
  auto* src = static_cast<uint8_t*>(device_memory(kIovaSrc, kTotal));
  auto* dst = static_cast<uint8_t*>(device_memory(kIovaDst, kTotal));
  for (unsigned long i = 0; i < kTotal; ++i) src[i] = static_cast<uint8_t>(i * 7);
  std::memset(dst, 1, kTotal);

  std::printf("== I/OAT engine through the node (BAR0 mapped), %ld CPUs\n", sysconf(_SC_NPROCESSORS_ONLN));
  // Private memory (malloc, MAP_PRIVATE) goes through process_vm_readv/writev; shared memory
  // (MAP_SHARED: shmem here, a memfd or hugetlbfs file as DPDK and SPDK use) through the daemon's
  // own mapping of the same file (core/owner_memory.h).
  auto* src_shared = static_cast<uint8_t*>(device_memory(kIovaSrcShared, kTotal, true));
  auto* dst_shared = static_cast<uint8_t*>(device_memory(kIovaDstShared, kTotal, true));
  std::memcpy(src_shared, src, kTotal);
  for (bool shared : {false, true}) {
    uint8_t* s_buf = shared ? src_shared : src;
    uint8_t* d_buf = shared ? dst_shared : dst;
    for (unsigned long size : {4096ul, 65536ul, 1ul << 20}) {
      std::vector<double> engine, floor, pvm;
      for (int i = 0; i < rounds; ++i) {  // interleaved, so drift hits all alike
        floor.push_back(memcpy_run(d_buf, s_buf));
        pvm.push_back(pvm_run(d_buf, s_buf, size));
        engine.push_back(engine_run(ring, compl_word, size, shared ? kIovaSrcShared : kIovaSrc,
                                    shared ? kIovaDstShared : kIovaDst));
      }
      if (std::memcmp(s_buf, d_buf, kTotal) != 0) {
        errno = EIO;
        die("the engine's copy differs from the source");
      }
      const double e = median(engine), f = median(floor), p = median(pvm);
      std::printf("copy %4lu KiB descriptors, %s memory  engine %6.0f MB/s  memcpy %6.0f MB/s  "
                  "x%.3f of memcpy  | process_vm_readv+writev %6.0f MB/s  x%.3f of it\n",
                  size / 1024, shared ? "shared " : "private", e / 1e6, f / 1e6, e / f, p / 1e6,
                  e / p);
    }
  }
  const int n = quick ? 200 : 1000;
  const double floor_us = ioctl_floor_us(quick ? 2000 : 10000);
  const double mmio_us = latency_us(ring, compl_word, false, n);
  const double pwrite_us = latency_us(ring, compl_word, true, n);
  std::printf("floor GET_API_VERSION round trip        %8.2f us\n", floor_us);
  std::printf("doorbell to completion, store to BAR    %8.2f us   x%.2f of the floor\n", mmio_us,
              mmio_us / floor_us);
  std::printf("doorbell to completion, pwrite          %8.2f us   x%.2f of the floor\n", pwrite_us,
              pwrite_us / floor_us);
  // One register store with no effect on the engine (CHANCMP of an idle channel): a store to
  // shared memory outside `vfio-emu run`, a trap to run's store watcher under it.
  std::vector<double> store_us;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) wr<uint64_t>(kChanCmp, kIovaCompl);
    store_us.push_back(seconds_since(t0) * 1e6 / n);
  }
  std::printf("one register store to the mapped BAR    %8.2f us   x%.2f of the floor\n",
              median(store_us), median(store_us) / floor_us);

  channel_reset();
  usleep(1200 * 1000);  // past the quick-polling period after the last register change
  t0 = cpu_ticks(daemon);
  usleep(static_cast<useconds_t>(idle_s * 1e6));
  const long idle_mapped = cpu_ticks(daemon) - t0;
  std::printf("daemon CPU while idle, nothing mapped   %5ld ticks in %.0f s  (%.3f%% of a CPU)\n",
              idle_unmapped, idle_s, 100.0 * static_cast<double>(idle_unmapped) / hz / idle_s);
  std::printf("daemon CPU while idle, BAR0 mapped      %5ld ticks in %.0f s  (%.3f%% of a CPU)\n",
              idle_mapped, idle_s, 100.0 * static_cast<double>(idle_mapped) / hz / idle_s);
  return 0;
}
