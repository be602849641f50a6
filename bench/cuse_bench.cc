// Benchmarks through a CUSE node on the socketpair harness (tests/cuse/cuse_kernel.h plays the
// kernel's side): the real vfio-emud, once with --arg-access direct (the daemon reads and writes
// the caller's memory with process_vm_readv/writev) and once with retry (the memory travels in
// FUSE_IOCTL_RETRY rounds, as CUSE without direct access does it).
//
// The floor of each mode is VFIO_GET_API_VERSION on the same iommufd node (no argument, no
// work, one round in both modes); the pairs are the VFIO compat MAP_DMA+UNMAP_DMA and
// IOAS_MAP+IOAS_UNMAP of 4 KiB, reported as a ratio to 2 x the floor: the daemon's own share.
//
// What the harness cannot show: the kernel's own cost per round (a real /dev/cuse adds a
// context switch pair and a copy per round; here it is a socketpair message each way).
//
//   cuse-bench [--quick]        (the daemon: $VFIO_EMUD, else build/cuse/vfio-emud)
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/uapi/iommufd.h"
#include "core/uapi/vfio.h"
#include "tests/cuse/cuse_kernel.h"
#include "tests/cuse/emud_process.h"

namespace {

using namespace vfio_emu::uapi;
using vfio_emu::test::CuseKernel;
using vfio_emu::test::EmudProcess;
using Clock = std::chrono::steady_clock;
constexpr std::uint64_t K4 = 4096;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "cuse-bench: %s\n", what.c_str());
  std::exit(1);
}

template <class F>
double time_per_op(int reps, int n, F&& f) {
  std::vector<double> v;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) f();
    v.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Figures {
  double floor_ns, compat_pair_ns, ioas_pair_ns;
  int map_rounds, unmap_rounds, ioas_map_rounds, ioas_unmap_rounds;
};

// One daemon serving the iommufd node over a socketpair, in the given access mode.
Figures run_mode(const std::string& access, int reps, int n) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
  CuseKernel k(sv[0]);
  if (!k.send_init().ok()) die("CUSE_INIT");
  auto daemon = EmudProcess::start({"--arg-access", access, "--log-level", "warn", "--cuse-fd",
                                    "iommu=" + std::to_string(sv[1])},
                                   {sv[1]});
  close(sv[1]);
  if (!daemon.ok()) die("starting " + EmudProcess::binary() + ": errno " +
                        std::to_string(daemon.error()));
  if (!k.finish_init().ok()) die("CUSE_INIT reply: " + k.last_problem());
  auto opened = k.open();
  if (!opened.ok()) die("open");
  const std::uint64_t fh = *opened;

  iommu_ioas_alloc alloc{};
  alloc.size = sizeof(alloc);
  if (k.ioctl(fh, IOMMU_IOAS_ALLOC, &alloc).ret != 0) die("IOAS_ALLOC");
  iommu_vfio_ioas set{};
  set.size = sizeof(set);
  set.ioas_id = alloc.out_ioas_id;
  set.op = IOMMU_VFIO_IOAS_SET;
  if (k.ioctl(fh, IOMMU_VFIO_IOAS, &set).ret != 0) die("VFIO_IOAS SET");

  void* buf = mmap(nullptr, K4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) die("mmap");
  std::memset(buf, 0, K4);

  Figures f{};
  f.floor_ns = time_per_op(reps, n, [&] {
    if (k.ioctl(fh, VFIO_GET_API_VERSION, std::uint64_t{0}).ret != VFIO_API_VERSION)
      die("GET_API_VERSION");
  });

  vfio_iommu_type1_dma_map map{};
  map.argsz = sizeof(map);
  map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  map.vaddr = reinterpret_cast<std::uint64_t>(buf);
  map.iova = 0x100000;
  map.size = K4;
  vfio_iommu_type1_dma_unmap unmap_struct{};
  vfio_iommu_type1_dma_unmap* unmap = &unmap_struct;  // a flexible array: not capturable
  unmap->argsz = sizeof(*unmap);
  f.compat_pair_ns = time_per_op(reps, n / 2, [&] {
    unmap->iova = 0x100000;
    unmap->size = K4;
    const auto m = k.ioctl(fh, VFIO_IOMMU_MAP_DMA, &map);
    const auto u = k.ioctl(fh, VFIO_IOMMU_UNMAP_DMA, unmap);
    if (m.ret != 0 || u.ret != 0 || unmap->size != K4) die("MAP_DMA/UNMAP_DMA");
    f.map_rounds = m.rounds;
    f.unmap_rounds = u.rounds;
  });

  iommu_ioas_map imap{};
  imap.size = sizeof(imap);
  imap.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
  imap.ioas_id = alloc.out_ioas_id;
  imap.user_va = reinterpret_cast<std::uint64_t>(buf);
  imap.length = K4;
  imap.iova = 0x200000;
  iommu_ioas_unmap iunmap{};
  iunmap.size = sizeof(iunmap);
  iunmap.ioas_id = alloc.out_ioas_id;
  f.ioas_pair_ns = time_per_op(reps, n / 2, [&] {
    iunmap.iova = 0x200000;
    iunmap.length = K4;
    const auto m = k.ioctl(fh, IOMMU_IOAS_MAP, &imap);
    const auto u = k.ioctl(fh, IOMMU_IOAS_UNMAP, &iunmap);
    if (m.ret != 0 || u.ret != 0) die("IOAS_MAP/IOAS_UNMAP");
    f.ioas_map_rounds = m.rounds;
    f.ioas_unmap_rounds = u.rounds;
  });

  if (!k.release(fh).ok()) die("release");
  munmap(buf, K4);
  k.close();
  // The daemon exits once its only channel is closed; the destructor kills it if not.
  (void)(*daemon)->wait_exit(std::chrono::seconds(10));
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const int reps = quick ? 3 : 7, n = quick ? 2000 : 10000;
  std::printf("== Through a CUSE node (socketpair harness playing the kernel), daemon %s\n",
              EmudProcess::binary().c_str());
  for (const char* access : {"direct", "retry"}) {
    const Figures f = run_mode(access, reps, n);
    std::printf("--arg-access %-6s floor GET_API_VERSION        %8.2f us\n", access,
                f.floor_ns / 1000);
    std::printf("--arg-access %-6s MAP_DMA+UNMAP_DMA 4K pair    %8.2f us   x%.3f of 2 x floor"
                "   (%d+%d rounds)\n",
                access, f.compat_pair_ns / 1000, f.compat_pair_ns / (2 * f.floor_ns),
                f.map_rounds, f.unmap_rounds);
    std::printf("--arg-access %-6s IOAS_MAP+IOAS_UNMAP 4K pair  %8.2f us   x%.3f of 2 x floor"
                "   (%d+%d rounds)\n",
                access, f.ioas_pair_ns / 1000, f.ioas_pair_ns / (2 * f.floor_ns),
                f.ioas_map_rounds, f.ioas_unmap_rounds);
  }
  return 0;
}
