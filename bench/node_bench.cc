// Benchmarks through the node: real ioctls on a running vfio-emud, against a floor measured in
// the same run (GET_API_VERSION, which the daemon answers without work). The daemon's own share
// of a MAP+UNMAP pair is the pair's time over twice the floor.
//
//   node-bench NODE_DIR DAEMON_PID [--quick]
//
// Prints one line per figure and a summary; bench/run_node_bench.sh starts the daemon.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
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
constexpr unsigned long K4 = 4096;

std::string dir;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "node-bench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int open_node(const std::string& rel) {
  const int fd = open((dir + "/" + rel).c_str(), O_RDWR);
  if (fd < 0) die(rel.c_str());
  return fd;
}

void* buffer(unsigned long size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) die("mmap");
  return p;
}

vfio_iommu_type1_dma_unmap unmap_request(unsigned long iova, unsigned long size) {
  vfio_iommu_type1_dma_unmap u;
  std::memset(&u, 0, sizeof(u));
  u.argsz = sizeof(u);
  u.iova = iova;
  u.size = size;
  return u;
}

// A type1 container with the given group, set up.
struct Container {
  int c, g;
  explicit Container(int group) {
    c = open_node("vfio/vfio");
    g = open_node("vfio/" + std::to_string(group));
    if (ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) || ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
      die("type1 set-up");
  }
  ~Container() {
    close(g);
    close(c);
  }
};

// Median of `reps` timings of `n` calls of f, in ns per call.
template <class F>
double time_per_op(int reps, int n, F&& f) {
  std::vector<double> v;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) f(i);
    v.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double floor_ns(int reps, int n) {
  const int c = open_node("vfio/vfio");
  const double t = time_per_op(reps, n, [&](int) {
    if (ioctl(c, VFIO_GET_API_VERSION) != 0) die("GET_API_VERSION");
  });
  close(c);
  return t;
}

double map_pair_ns(int reps, int n, int group) {
  Container ct(group);
  void* buf = buffer(K4);
  vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                             reinterpret_cast<unsigned long>(buf), 0x100000, K4};
  vfio_iommu_type1_dma_unmap unmap = unmap_request(0x100000, K4);
  vfio_iommu_type1_dma_unmap* u = &unmap;  // a struct with a flexible array: not capturable
  return time_per_op(reps, n, [&](int) {
    u->size = K4;
    if (ioctl(ct.c, VFIO_IOMMU_MAP_DMA, &m) || ioctl(ct.c, VFIO_IOMMU_UNMAP_DMA, u))
      die("MAP_DMA/UNMAP_DMA");
  });
}

double ioas_pair_ns(int reps, int n) {
  const int fd = open_node("iommu");
  iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
  if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) die("IOAS_ALLOC");
  void* buf = buffer(K4);
  iommu_ioas_map m{};
  m.size = sizeof(m);
  m.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
  m.ioas_id = alloc.out_ioas_id;
  m.user_va = reinterpret_cast<unsigned long>(buf);
  m.length = K4;
  m.iova = 0x100000;
  iommu_ioas_unmap u{};
  u.size = sizeof(u);
  u.ioas_id = alloc.out_ioas_id;
  const double t = time_per_op(reps, n, [&](int) {
    u.iova = 0x100000;
    u.length = K4;
    if (ioctl(fd, IOMMU_IOAS_MAP, &m) || ioctl(fd, IOMMU_IOAS_UNMAP, &u)) die("IOAS_MAP/UNMAP");
  });
  close(fd);
  return t;
}

// `procs` processes, each with its own container on its own group, run MAP+UNMAP pairs for
// `seconds`; returns the pairs per second of all together.
double aggregate_pairs_per_s(int procs, double seconds) {
  int pipes[2];
  if (pipe(pipes)) die("pipe");
  for (int p = 0; p < procs; ++p) {
    if (fork() == 0) {
      close(pipes[0]);
      Container ct(1 + p);  // groups 1 and 2 are on dmar0
      void* buf = buffer(K4);
      vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ,
                                 reinterpret_cast<unsigned long>(buf), 0x100000, K4};
      vfio_iommu_type1_dma_unmap u = unmap_request(0x100000, K4);
      long count = 0;
      const auto end = Clock::now() + std::chrono::duration<double>(seconds);
      while (Clock::now() < end) {
        u.size = K4;
        if (ioctl(ct.c, VFIO_IOMMU_MAP_DMA, &m) || ioctl(ct.c, VFIO_IOMMU_UNMAP_DMA, &u)) _exit(1);
        ++count;
      }
      if (write(pipes[1], &count, sizeof(count)) != sizeof(count)) _exit(1);
      _exit(0);
    }
  }
  close(pipes[1]);
  long total = 0, one = 0;
  for (int p = 0; p < procs; ++p) {
    if (read(pipes[0], &one, sizeof(one)) != sizeof(one)) die("child result");
    total += one;
  }
  close(pipes[0]);
  while (wait(nullptr) > 0) {
  }
  return static_cast<double>(total) / seconds;
}

// /dev/iommu with an IOAS set as the VFIO compat IOAS and a VT-d device (vfio0, group 1)
// attached to it, so that compat MAP_DMA fills real page tables.
struct IommufdCompat {
  int fd, dev;
  IommufdCompat() {
    fd = open_node("iommu");
    dev = open_node("vfio/devices/vfio0");
    vfio_device_bind_iommufd bind{};
    bind.argsz = sizeof(bind);
    bind.iommufd = fd;
    if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind)) die("BIND_IOMMUFD");
    iommu_ioas_alloc alloc{};
    alloc.size = sizeof(alloc);
    if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) die("IOAS_ALLOC");
    vfio_device_attach_iommufd_pt attach{};
    attach.argsz = sizeof(attach);
    attach.pt_id = alloc.out_ioas_id;
    if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach)) die("ATTACH_IOMMUFD_PT");
    iommu_vfio_ioas set{};
    set.size = sizeof(set);
    set.ioas_id = alloc.out_ioas_id;
    set.op = IOMMU_VFIO_IOAS_SET;
    if (ioctl(fd, IOMMU_VFIO_IOAS, &set)) die("VFIO_IOAS SET");
  }
  ~IommufdCompat() {
    close(dev);
    close(fd);
  }
};

// 1 GiB as 262,144 MAP_DMA calls, then one UNMAP_DMA: the shape of a well-known stress test.
// Through iommufd's type1 compat: a type1 container stops at dma_entry_limit (65,535) entries
// with ENOSPC, as Linux's does.
void gib_as_pages(double* map_s, double* unmap_s) {
  IommufdCompat ct;
  constexpr unsigned long kGiB = 1ul << 30;
  char* buf = static_cast<char*>(buffer(kGiB));
  const auto t0 = Clock::now();
  for (unsigned long off = 0; off < kGiB; off += K4) {
    vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                               reinterpret_cast<unsigned long>(buf + off), 0x40000000 + off, K4};
    if (ioctl(ct.fd, VFIO_IOMMU_MAP_DMA, &m)) die("MAP_DMA (1 GiB)");
  }
  const auto t1 = Clock::now();
  vfio_iommu_type1_dma_unmap u = unmap_request(0x40000000, kGiB);
  if (ioctl(ct.fd, VFIO_IOMMU_UNMAP_DMA, &u) || u.size != kGiB) die("UNMAP_DMA (1 GiB)");
  *map_s = std::chrono::duration<double>(t1 - t0).count();
  *unmap_s = std::chrono::duration<double>(Clock::now() - t1).count();
  munmap(buf, kGiB);
}

long rss_kib(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof(line), f))
    if (std::sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  std::fclose(f);
  return kib;
}

// Daemon RSS with 65,535 type1 mappings held (the default dma_entry_limit).
void rss_after_mappings(pid_t daemon, long* before_kib, long* after_kib) {
  *before_kib = rss_kib(daemon);
  Container ct(1);
  char* buf = static_cast<char*>(buffer(K4));
  for (unsigned long i = 0; i < 65535; ++i) {
    vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ,
                               reinterpret_cast<unsigned long>(buf), 0x100000 + 2 * i * K4, K4};
    if (ioctl(ct.c, VFIO_IOMMU_MAP_DMA, &m)) die("MAP_DMA (65535)");
  }
  *after_kib = rss_kib(daemon);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: node-bench NODE_DIR DAEMON_PID [--quick]\n");
    return 2;
  }
  dir = argv[1];
  const pid_t daemon = static_cast<pid_t>(std::atoi(argv[2]));
  const bool quick = argc > 3 && std::string(argv[3]) == "--quick";
  const int reps = quick ? 3 : 7, n = quick ? 2000 : 10000;

  // First, while the daemon is fresh: its RSS idle and with 65,535 type1 mappings held.
  long before = 0, after = 0;
  rss_after_mappings(daemon, &before, &after);

  // Interleaved rounds so drift affects floor and pair alike.
  std::vector<double> floors, pairs, ioas;
  for (int round = 0; round < 3; ++round) {
    floors.push_back(floor_ns(reps, n));
    pairs.push_back(map_pair_ns(reps, n / 2, 1));
    ioas.push_back(ioas_pair_ns(reps, n / 2));
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double floor = median(floors), pair = median(pairs), ioas_pair = median(ioas);
  std::printf("floor GET_API_VERSION round trip      %8.2f us\n", floor / 1000);
  std::printf("MAP_DMA+UNMAP_DMA 4K pair             %8.2f us   x%.3f of 2 x floor\n", pair / 1000,
              pair / (2 * floor));
  std::printf("IOAS_MAP+IOAS_UNMAP 4K pair           %8.2f us   x%.3f of 2 x floor\n",
              ioas_pair / 1000, ioas_pair / (2 * floor));
  const double secs = quick ? 1.0 : 3.0;
  const double one = aggregate_pairs_per_s(1, secs);
  const double two = aggregate_pairs_per_s(2, secs);
  std::printf("1 client  MAP+UNMAP pairs/s           %8.0f\n", one);
  std::printf("2 clients MAP+UNMAP pairs/s           %8.0f   x%.2f of one\n", two, two / one);
  double map_s = 0, unmap_s = 0;
  gib_as_pages(&map_s, &unmap_s);
  std::printf("1 GiB as 262144 compat MAP_DMA calls  %8.3f s    (%.2f us per call)\n", map_s,
              map_s * 1e6 / 262144);
  std::printf("  then one UNMAP_DMA                  %8.3f ms\n", unmap_s * 1000);
  std::printf("daemon RSS: %ld KiB idle, %ld KiB with 65535 type1 mappings (%.0f bytes each)\n",
              before, after, (after - before) * 1024.0 / 65535);
  const long peak_kib = rss_kib(daemon);
  // The daemon gives freed arena memory back once a second while idle (cuse/memory_trim.h).
  usleep(2500 * 1000);
  std::printf("daemon RSS after all of the above: %ld KiB, %ld KiB 2.5 s later\n", peak_kib,
              rss_kib(daemon));
  return 0;
}
