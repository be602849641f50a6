/* The oracle's transcript: the VFIO and iommufd uAPI that vfio-emu emulates, one line per call.
 *
 *   transcript [--container PATH] [--group PATH] [--bdf BDF] [--iommufd PATH] [--cdev PATH]
 *              [--no-group-device]
 *   transcript --noiommu GROUP BDF CDEV [--container PATH] [--iommufd PATH]
 *
 * Each line is `KEY rc=R errno=E [FIELD=VALUE...]`: KEY names the call and its case (unique in a
 * run), R is the return value (`fd` for a new file descriptor), E the errno name (0 on success).
 * Only deterministic fields are printed: no pointers, fd numbers or kernel-chosen IOVAs. The same
 * static binary runs against real Linux in a VM (tests/oracle/oracle.py, /dev/vfio/...) and
 * against vfio-emu under `vfio-emu run` (tests/oracle/compare.py), whose transcripts are compared
 * line by line (tests/oracle/README.md).
 *
 * The device is group 1's pci-testdev-like function at --bdf (default 0000:00:01.0). A section
 * whose node is missing prints `SECTION.skipped reason` (the stock Debian kernels have no
 * /dev/iommu and no /dev/vfio/devices/). --no-group-device takes the device fd from the cdev
 * instead of VFIO_GROUP_GET_DEVICE_FD (over CUSE without `vfio-emu run`, README differences §1).
 *
 * --noiommu runs only the no-IOMMU section (keys noiommu.*, then `noiommu.end`) on the no-IOMMU
 * group GROUP (/dev/vfio/noiommu-N) of device BDF, whose cdev is CDEV (7.3 names it
 * noiommu-vfioN): the machine has enable_unsafe_noiommu_mode on and the device behind no IOMMU.
 * The program runs as root; the CAP_SYS_RAWIO checks are made by dropping the capability from
 * the effective set around a call (`.norawio` keys).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define VFIO_EMU_COMPAT_NO_SYSTEM_IOMMUFD
#include "vfio_emu_compat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- Output ---------------------------------------------------------------------------------- */

static int line_open;

static void end_line(void) {
  if (line_open) fputc('\n', stdout);
  line_open = 0;
}

static const char* errno_name(int e) {
  switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EBADFD: return "EBADFD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case ERANGE: return "ERANGE";
    case ENOTTY: return "ENOTTY";
    case ENOSYS: return "ENOSYS";
    case EOVERFLOW: return "EOVERFLOW";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOTCONN: return "ENOTCONN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EDOM: return "EDOM";
    case ENOMSG: return "ENOMSG";
    case EMSGSIZE: return "EMSGSIZE";
    case EPROTO: return "EPROTO";
    default: {
      static char buf[32];
      snprintf(buf, sizeof buf, "E%d", e);
      return buf;
    }
  }
}

/* Starts a line: KEY rc=R errno=E. fd_result: a non-negative result is a new fd (printed `fd`). */
static void begin(const char* key, long rc, int err, int fd_result) {
  end_line();
  if (fd_result && rc >= 0)
    printf("%s rc=fd errno=0", key);
  else
    printf("%s rc=%ld errno=%s", key, rc, rc < 0 ? errno_name(err) : "0");
  line_open = 1;
}

/* Appends " FIELD=VALUE" to the open line. */
__attribute__((format(printf, 1, 2))) static void field(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputc(' ', stdout);
  vprintf(fmt, ap);
  va_end(ap);
}

/* A line that is not a call: `KEY note`. */
__attribute__((format(printf, 2, 3))) static void note(const char* key, const char* fmt, ...) {
  end_line();
  va_list ap;
  va_start(ap, fmt);
  printf("%s ", key);
  vprintf(fmt, ap);
  va_end(ap);
  line_open = 1;
}

static long io(const char* key, int fd, unsigned long req, unsigned long arg) {
  errno = 0;
  long r = ioctl(fd, req, arg);
  begin(key, r, errno, 0);
  return r;
}
#define IO(key, fd, req, arg) io(key, fd, req, (unsigned long)(arg))

static long io_fd(const char* key, int fd, unsigned long req, const void* arg) {
  errno = 0;
  long r = ioctl(fd, req, arg);
  begin(key, r, errno, 1);
  return r;
}

static int open_node(const char* key, const char* path, int flags) {
  errno = 0;
  int fd = open(path, flags);
  begin(key, fd, errno, 1);
  return fd;
}

/* ---- Arguments and shared state ------------------------------------------------------------- */

static const char* container_path = "/dev/vfio/vfio";
static const char* group_path = "/dev/vfio/1";
static const char* bdf = "0000:00:01.0";
static const char* iommufd_path = "/dev/iommu";
static const char* cdev_path = "/dev/vfio/devices/vfio0";
static int group_device = 1;
static const char* noiommu_group; /* --noiommu: the no-IOMMU section only */
static const char* noiommu_bdf;
static const char* noiommu_cdev;

#define MIB (1ULL << 20)
static uint8_t* buf;  /* 8 MiB, 2 MiB-aligned, populated: the memory every MAP uses */
static const uint64_t buf_size = 8 * MIB;

static void alloc_buffer(void) {
  uint8_t* raw = mmap(NULL, buf_size + 2 * MIB, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  buf = (uint8_t*)(((uintptr_t)raw + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1));
  memset(buf, 0x5a, buf_size);
}

static uint64_t va(uint64_t offset) { return (uint64_t)(uintptr_t)buf + offset; }

/* ---- Container and group -------------------------------------------------------------------- */

static void container_section(void) {
  int c = open_node("container.open", container_path, O_RDWR);
  if (c < 0) return;
  IO("container.get_api_version", c, VFIO_GET_API_VERSION, 0);
  for (int ext = 0; ext <= 11; ++ext) {
    char key[64];
    snprintf(key, sizeof key, "container.check_extension.%d", ext);
    IO(key, c, VFIO_CHECK_EXTENSION, ext);
  }
  IO("container.set_iommu.no_group", c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
  struct vfio_iommu_type1_info info = {.argsz = sizeof info};
  IO("container.get_info.no_iommu", c, VFIO_IOMMU_GET_INFO, &info);
  struct vfio_iommu_type1_dma_map map = {.argsz = sizeof map};
  IO("container.map_dma.no_iommu", c, VFIO_IOMMU_MAP_DMA, &map);
  IO("container.unknown_nr", c, _IO(VFIO_TYPE, VFIO_BASE + 30), 0);
  IO("container.other_type", c, _IO('x', VFIO_BASE), 0);
  close(c);
}

static void group_status(const char* key, int g, uint32_t argsz) {
  struct vfio_group_status st = {.argsz = argsz};
  if (IO(key, g, VFIO_GROUP_GET_STATUS, &st) == 0) field("flags=0x%x", st.flags);
}

static void group_section(void) {
  int g = open_node("group.open", group_path, O_RDWR);
  if (g < 0) return;
  int g2 = open_node("group.open.second", group_path, O_RDWR);
  if (g2 >= 0) close(g2);
  group_status("group.get_status.argsz0", g, 0);
  group_status("group.get_status.argsz7", g, 7);
  group_status("group.get_status", g, sizeof(struct vfio_group_status));
  group_status("group.get_status.argsz_large", g, 64);
  io_fd("group.get_device_fd.no_container", g, VFIO_GROUP_GET_DEVICE_FD, bdf);
  int bad = -1;
  IO("group.set_container.bad_fd", g, VFIO_GROUP_SET_CONTAINER, &bad);
  int pipefd[2];
  if (pipe(pipefd) == 0) {
    IO("group.set_container.pipe", g, VFIO_GROUP_SET_CONTAINER, &pipefd[0]);
    close(pipefd[0]);
    close(pipefd[1]);
  }
  IO("group.unset_container.not_set", g, VFIO_GROUP_UNSET_CONTAINER, 0);
  int c = open_node("group.container_open", container_path, O_RDWR);
  if (c < 0) {
    close(g);
    return;
  }
  IO("group.set_container", g, VFIO_GROUP_SET_CONTAINER, &c);
  group_status("group.get_status.container_set", g, sizeof(struct vfio_group_status));
  IO("group.set_container.again", g, VFIO_GROUP_SET_CONTAINER, &c);
  io_fd("group.get_device_fd.no_iommu", g, VFIO_GROUP_GET_DEVICE_FD, bdf);
  IO("group.container.check_extension.1.with_group", c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU);
  IO("group.container.set_iommu.spapr", c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU);
  IO("group.container.set_iommu.noiommu", c, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU);
  IO("group.container.set_iommu.99", c, VFIO_SET_IOMMU, 99);
  IO("group.container.set_iommu.type1v2", c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
  IO("group.container.set_iommu.again", c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
  io_fd("group.get_device_fd.unknown", g, VFIO_GROUP_GET_DEVICE_FD, "0000:07:00.0");
  io_fd("group.get_device_fd.empty", g, VFIO_GROUP_GET_DEVICE_FD, "");
  IO("group.unset_container", g, VFIO_GROUP_UNSET_CONTAINER, 0);
  group_status("group.get_status.unset", g, sizeof(struct vfio_group_status));
  IO("group.unset_container.again", g, VFIO_GROUP_UNSET_CONTAINER, 0);
  IO("group.container.get_info.after_unset", c, VFIO_IOMMU_GET_INFO, 0);
  IO("group.unknown_nr", g, _IO(VFIO_TYPE, VFIO_BASE + 30), 0);
  close(c);
  close(g);
}

/* ---- type1 ------------------------------------------------------------------------------------ */

/* A container with group 1 and `type` set; -1 (and a line) on failure. *g receives the group. */
static int type1_container(const char* prefix, int type, int* g) {
  char key[96];
  snprintf(key, sizeof key, "%s.setup.group_open", prefix);
  *g = open_node(key, group_path, O_RDWR);
  snprintf(key, sizeof key, "%s.setup.container_open", prefix);
  int c = open_node(key, container_path, O_RDWR);
  if (*g < 0 || c < 0) return -1;
  snprintf(key, sizeof key, "%s.setup.set_container", prefix);
  if (IO(key, *g, VFIO_GROUP_SET_CONTAINER, &c) < 0) return -1;
  snprintf(key, sizeof key, "%s.setup.set_iommu", prefix);
  if (IO(key, c, VFIO_SET_IOMMU, type) < 0) return -1;
  return c;
}

static void print_info_caps(const uint8_t* base, uint32_t argsz, uint32_t offset) {
  for (int n = 0; offset && n < 16; ++n) {
    if (offset + sizeof(struct vfio_info_cap_header) > argsz) {
      field("cap@0x%x=truncated", offset);
      return;
    }
    const struct vfio_info_cap_header* h = (const void*)(base + offset);
    field("cap@0x%x=id%u.v%u", offset, h->id, h->version);
    if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
      const struct vfio_iommu_type1_info_cap_iova_range* r = (const void*)h;
      field("nr_iovas=%u", r->nr_iovas);
      for (uint32_t i = 0; i < r->nr_iovas && i < 8; ++i)
        field("iova%u=0x%llx-0x%llx", i, (unsigned long long)r->iova_ranges[i].start,
              (unsigned long long)r->iova_ranges[i].end);
    } else if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) {
      const struct vfio_iommu_type1_info_cap_migration* m = (const void*)h;
      field("mig.flags=0x%x mig.pgsize_bitmap=0x%llx mig.max_dirty_bitmap_size=0x%llx", m->flags,
            (unsigned long long)m->pgsize_bitmap, (unsigned long long)m->max_dirty_bitmap_size);
    } else if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
      const struct vfio_iommu_type1_info_dma_avail* d = (const void*)h;
      field("dma_avail=%u", d->avail);
    }
    offset = h->next;
  }
}

static void get_info(const char* key, int c, uint32_t argsz) {
  uint8_t raw[512] = {0};
  struct vfio_iommu_type1_info* info = (void*)raw;
  info->argsz = argsz;
  if (IO(key, c, VFIO_IOMMU_GET_INFO, info) < 0) return;
  field("argsz=%u flags=0x%x iova_pgsizes=0x%llx", info->argsz, info->flags,
        (unsigned long long)info->iova_pgsizes);
  if (argsz >= sizeof *info && (info->flags & VFIO_IOMMU_INFO_CAPS)) {
    field("cap_offset=0x%x", info->cap_offset);
    print_info_caps(raw, argsz < sizeof raw ? argsz : sizeof raw, info->cap_offset);
  }
}

static long map(const char* key, int c, uint32_t argsz, uint32_t flags, uint64_t vaddr,
                uint64_t iova, uint64_t size) {
  struct vfio_iommu_type1_dma_map m = {
      .argsz = argsz, .flags = flags, .vaddr = vaddr, .iova = iova, .size = size};
  return IO(key, c, VFIO_IOMMU_MAP_DMA, &m);
}
#define RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
#define MAPSZ ((uint32_t)sizeof(struct vfio_iommu_type1_dma_map))
#define UNMAPSZ ((uint32_t)sizeof(struct vfio_iommu_type1_dma_unmap))

static long unmap(const char* key, int c, uint32_t argsz, uint32_t flags, uint64_t iova,
                  uint64_t size) {
  struct vfio_iommu_type1_dma_unmap u = {.argsz = argsz, .flags = flags, .iova = iova,
                                         .size = size};
  long r = IO(key, c, VFIO_IOMMU_UNMAP_DMA, &u);
  field("size=0x%llx", (unsigned long long)u.size);
  return r;
}

static void dirty(const char* key, int c, uint32_t flags, uint32_t argsz) {
  struct vfio_iommu_type1_dirty_bitmap d = {.argsz = argsz, .flags = flags};
  IO(key, c, VFIO_IOMMU_DIRTY_PAGES, &d);
}

static void dirty_get(const char* key, int c, uint64_t iova, uint64_t size, uint64_t pgsize,
                      uint64_t bitmap_size) {
  /* struct vfio_iommu_type1_dirty_bitmap, then vfio_iommu_type1_dirty_bitmap_get in data[]. */
  uint64_t raw[8] = {0};
  uint64_t bits[8] = {0};
  struct vfio_iommu_type1_dirty_bitmap* hdr = (void*)raw;
  struct vfio_iommu_type1_dirty_bitmap_get* get = (void*)((uint8_t*)raw + sizeof *hdr);
  hdr->argsz = sizeof *hdr + sizeof *get;
  hdr->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
  get->iova = iova;
  get->size = size;
  get->bitmap.pgsize = pgsize;
  get->bitmap.size = bitmap_size;
  get->bitmap.data = (__u64*)bits;
  if (IO(key, c, VFIO_IOMMU_DIRTY_PAGES, hdr) == 0)
    field("bits0=0x%llx", (unsigned long long)bits[0]);
}

static void type1_section(const char* prefix, int type) {
  char key[128];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", prefix, suffix), key)
  int g = -1;
  int c = type1_container(prefix, type, &g);
  if (c < 0) {
    if (g >= 0) close(g);
    return;
  }
  for (int ext = 1; ext <= 10; ++ext) {
    char e[32];
    snprintf(e, sizeof e, "check_extension.%d", ext);
    IO(K(e), c, VFIO_CHECK_EXTENSION, ext);
  }
  get_info(K("get_info.argsz0"), c, 0);
  get_info(K("get_info.argsz15"), c, 15);
  get_info(K("get_info.argsz16"), c, 16);
  get_info(K("get_info.argsz24"), c, 24);
  get_info(K("get_info.full"), c, 512);

  /* MAP: argsz and flags edges. */
  map(K("map.argsz0"), c, 0, RW, va(0), 0x100000, 0x1000);
  map(K("map.argsz31"), c, MAPSZ - 1, RW, va(0), 0x100000, 0x1000);
  map(K("map.flags0"), c, MAPSZ, 0, va(0), 0x100000, 0x1000);
  map(K("map.flags_unknown"), c, MAPSZ, RW | 0x100, va(0), 0x100000, 0x1000);
  map(K("map.read_only"), c, MAPSZ, VFIO_DMA_MAP_FLAG_READ, va(0), 0x100000, 0x1000);
  map(K("map.write_only"), c, MAPSZ, VFIO_DMA_MAP_FLAG_WRITE, va(0), 0x200000, 0x1000);
  unmap(K("unmap.read_only"), c, UNMAPSZ, 0, 0x100000, 0x1000);
  unmap(K("unmap.write_only"), c, UNMAPSZ, 0, 0x200000, 0x1000);
  map(K("map.size0"), c, MAPSZ, RW, va(0), 0x100000, 0);
  map(K("map.size_unaligned"), c, MAPSZ, RW, va(0), 0x100000, 0x800);
  map(K("map.iova_unaligned"), c, MAPSZ, RW, va(0), 0x100800, 0x1000);
  map(K("map.vaddr_unaligned"), c, MAPSZ, RW, va(0x800), 0x100000, 0x1000);
  map(K("map.iova_wraps"), c, MAPSZ, RW, va(0), 0xfffffffffffff000ULL, 0x2000);
  map(K("map.vaddr_wraps"), c, MAPSZ, RW, 0xfffffffffffff000ULL, 0x100000, 0x2000);
  map(K("map.beyond_aperture"), c, MAPSZ, RW, va(0), 1ULL << 48, 0x1000);
  map(K("map.crosses_aperture_end"), c, MAPSZ, RW, va(0), (1ULL << 48) - 0x1000, 0x2000);
  map(K("map.reserved_msi"), c, MAPSZ, RW, va(0), 0xfee00000ULL, 0x1000);
  map(K("map.vaddr_unmapped"), c, MAPSZ, RW, 0x1000, 0x100000, 0x1000);
  map(K("map.argsz_large"), c, 64, RW, va(0), 0x100000, 0x1000);
  unmap(K("unmap.argsz_large_mapping"), c, UNMAPSZ, 0, 0x100000, 0x1000);

  /* Overlaps: A = [1M, 1M+64K). */
  map(K("map.a"), c, MAPSZ, RW, va(0), 0x100000, 0x10000);
  map(K("map.overlap_exact"), c, MAPSZ, RW, va(0x10000), 0x100000, 0x10000);
  map(K("map.overlap_start"), c, MAPSZ, RW, va(0x10000), 0xf8000, 0x10000);
  map(K("map.overlap_end"), c, MAPSZ, RW, va(0x10000), 0x108000, 0x10000);
  map(K("map.overlap_inside"), c, MAPSZ, RW, va(0x10000), 0x104000, 0x1000);
  map(K("map.overlap_around"), c, MAPSZ, RW, va(0x10000), 0xf0000, 0x40000);
  map(K("map.adjacent_below"), c, MAPSZ, RW, va(0x20000), 0xf0000, 0x10000);
  map(K("map.adjacent_above"), c, MAPSZ, RW, va(0x30000), 0x110000, 0x10000);
  map(K("map.same_vaddr_twice"), c, MAPSZ, RW, va(0), 0x400000, 0x10000);
  get_info(K("get_info.three_mappings"), c, 512);

  /* UNMAP edges. */
  unmap(K("unmap.argsz0"), c, 0, 0, 0x100000, 0x10000);
  unmap(K("unmap.argsz23"), c, UNMAPSZ - 1, 0, 0x100000, 0x10000);
  unmap(K("unmap.flags_unknown"), c, UNMAPSZ, 0x80, 0x100000, 0x10000);
  unmap(K("unmap.unaligned"), c, UNMAPSZ, 0, 0x100800, 0x1000);
  unmap(K("unmap.size0"), c, UNMAPSZ, 0, 0x100000, 0);
  unmap(K("unmap.empty_range"), c, UNMAPSZ, 0, 0x800000, 0x10000);
  unmap(K("unmap.bisect_middle"), c, UNMAPSZ, 0, 0x104000, 0x1000);
  unmap(K("unmap.bisect_start"), c, UNMAPSZ, 0, 0x100000, 0x1000);
  unmap(K("unmap.overhang_start"), c, UNMAPSZ, 0, 0xf8000, 0x10000);
  unmap(K("unmap.wraps"), c, UNMAPSZ, 0, 0xfffffffffffff000ULL, 0x2000);
  unmap(K("unmap.all_with_iova"), c, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_ALL, 0x100000, 0);
  unmap(K("unmap.all_with_size"), c, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0x1000);
  unmap(K("unmap.all_and_vaddr"), c, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR,
        0, 0);
  unmap(K("unmap.two_mappings"), c, UNMAPSZ, 0, 0xf0000, 0x20000);
  unmap(K("unmap.exact"), c, UNMAPSZ, 0, 0x110000, 0x10000);
  get_info(K("get_info.one_mapping"), c, 512);

  /* UPDATE_VADDR: invalidate then update. */
  unmap(K("unmap.vaddr"), c, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_VADDR, 0x400000, 0x10000);
  map(K("map.vaddr_update_wrong_size"), c, MAPSZ, VFIO_DMA_MAP_FLAG_VADDR, va(0x40000), 0x400000,
      0x8000);
  map(K("map.vaddr_update_with_rw"), c, MAPSZ, VFIO_DMA_MAP_FLAG_VADDR | RW, va(0x40000),
      0x400000, 0x10000);
  map(K("map.vaddr_update"), c, MAPSZ, VFIO_DMA_MAP_FLAG_VADDR, va(0x40000), 0x400000, 0x10000);
  map(K("map.vaddr_update_not_invalid"), c, MAPSZ, VFIO_DMA_MAP_FLAG_VADDR, va(0x40000),
      0x400000, 0x10000);

  /* 64-bit edges: the last page of the 48-bit aperture, then UNMAP_ALL. */
  map(K("map.aperture_last_page"), c, MAPSZ, RW, va(0), (1ULL << 48) - 0x1000, 0x1000);
  map(K("map.2m_aligned"), c, MAPSZ, RW, va(2 * MIB), 0x40000000ULL, 2 * MIB);
  map(K("map.below_msi"), c, MAPSZ, RW, va(0), 0xfedff000ULL, 0x1000);
  map(K("map.above_msi"), c, MAPSZ, RW, va(0), 0xfef00000ULL, 0x1000);
  unmap(K("unmap.aperture_last_page"), c, UNMAPSZ, 0, (1ULL << 48) - 0x1000, 0x1000);
  unmap(K("unmap.all"), c, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
  unmap(K("unmap.all_empty"), c, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);

  /* Dirty tracking. */
  const uint32_t dsz = sizeof(struct vfio_iommu_type1_dirty_bitmap);
  dirty(K("dirty.argsz0"), c, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, 0);
  dirty(K("dirty.flags0"), c, 0, dsz);
  dirty(K("dirty.start_and_stop"), c,
        VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, dsz);
  dirty(K("dirty.flags_unknown"), c, 0x10, dsz);
  dirty_get(K("dirty.get.not_started"), c, 0x100000, 0x10000, 0x1000, 8);
  map(K("dirty.map"), c, MAPSZ, RW, va(0), 0x100000, 0x10000);
  dirty(K("dirty.start"), c, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, dsz);
  dirty(K("dirty.start.again"), c, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, dsz);
  map(K("dirty.map.while_tracking"), c, MAPSZ, RW, va(0x10000), 0x200000, 0x10000);
  dirty_get(K("dirty.get"), c, 0x100000, 0x10000, 0x1000, 8);
  dirty_get(K("dirty.get.again"), c, 0x100000, 0x10000, 0x1000, 8);
  dirty_get(K("dirty.get.bad_pgsize"), c, 0x100000, 0x10000, 0x2000, 8);
  dirty_get(K("dirty.get.bitmap_small"), c, 0x100000, 0x10000, 0x1000, 1);
  dirty_get(K("dirty.get.partial_mapping"), c, 0x100000, 0x8000, 0x1000, 8);
  dirty_get(K("dirty.get.two_mappings"), c, 0x100000, 0x110000, 0x1000, 64);
  dirty_get(K("dirty.get.unmapped"), c, 0x800000, 0x10000, 0x1000, 8);
  dirty_get(K("dirty.get.unaligned"), c, 0x100800, 0x10000, 0x1000, 8);
  {
    /* struct vfio_iommu_type1_dma_unmap, then a struct vfio_bitmap in data[]. */
    uint64_t raw[8] = {0};
    uint64_t bits[2] = {0};
    struct vfio_iommu_type1_dma_unmap* u = (void*)raw;
    struct vfio_bitmap* b = (void*)((uint8_t*)raw + sizeof *u);
    u->argsz = sizeof *u + sizeof *b;
    u->flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
    u->iova = 0x100000;
    u->size = 0x10000;
    b->pgsize = 0x1000;
    b->size = 8;
    b->data = (__u64*)bits;
    if (IO(K("dirty.unmap_get_bitmap"), c, VFIO_IOMMU_UNMAP_DMA, u) == 0)
      field("size=0x%llx bits0=0x%llx", (unsigned long long)u->size,
            (unsigned long long)bits[0]);
  }
  dirty(K("dirty.stop"), c, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, dsz);
  dirty(K("dirty.stop.again"), c, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, dsz);
  unmap(K("dirty.unmap_all"), c, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);

  IO(K("enable"), c, VFIO_IOMMU_ENABLE, 0);
  IO(K("spapr_unregister_memory"), c, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, 0);
  IO(K("unset_container"), g, VFIO_GROUP_UNSET_CONTAINER, 0);
  get_info(K("get_info.after_unset"), c, 512);
  close(c);
  close(g);
#undef K
}

/* v1 unmap: bisecting and overhanging a mapping. */
static void type1v1_unmap_section(void) {
  int g = -1;
  int c = type1_container("type1v1_unmap", VFIO_TYPE1_IOMMU, &g);
  if (c >= 0) {
    map("type1v1_unmap.map", c, MAPSZ, RW, va(0), 0x100000, 0x10000);
    unmap("type1v1_unmap.bisect_middle", c, UNMAPSZ, 0, 0x104000, 0x1000);
    map("type1v1_unmap.map.again", c, MAPSZ, RW, va(0), 0x100000, 0x10000);
    unmap("type1v1_unmap.first_page", c, UNMAPSZ, 0, 0x100000, 0x1000);
    map("type1v1_unmap.map.third", c, MAPSZ, RW, va(0), 0x100000, 0x10000);
    unmap("type1v1_unmap.last_page", c, UNMAPSZ, 0, 0x10f000, 0x1000);
    unmap("type1v1_unmap.all", c, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
    close(c);
  }
  if (g >= 0) close(g);
}

/* ---- Device ----------------------------------------------------------------------------------- */

static void region_info(int d, uint32_t index, uint32_t argsz, const char* key) {
  uint8_t raw[256] = {0};
  struct vfio_region_info* r = (void*)raw;
  r->argsz = argsz;
  r->index = index;
  if (IO(key, d, VFIO_DEVICE_GET_REGION_INFO, r) < 0) return;
  field("argsz=%u flags=0x%x size=0x%llx offset=0x%llx", r->argsz, r->flags,
        (unsigned long long)r->size, (unsigned long long)r->offset);
  if (argsz >= sizeof *r && (r->flags & VFIO_REGION_INFO_FLAG_CAPS) && r->cap_offset)
    field("cap_offset=0x%x cap_id=%u", r->cap_offset,
          ((struct vfio_info_cap_header*)(raw + r->cap_offset))->id);
}

static void irq_info(int d, uint32_t index, uint32_t argsz, const char* key) {
  struct vfio_irq_info i = {.argsz = argsz, .index = index};
  if (IO(key, d, VFIO_DEVICE_GET_IRQ_INFO, &i) == 0)
    field("flags=0x%x count=%u", i.flags, i.count);
}

static uint64_t region_offset(int d, uint32_t index) {
  struct vfio_region_info r = {.argsz = sizeof r, .index = index};
  if (ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &r) < 0) return 0;
  return r.offset;
}

static void cfg_read(int d, uint64_t cfg, const char* key, uint64_t off, size_t len) {
  uint8_t b[8] = {0};
  errno = 0;
  ssize_t n = pread(d, b, len, (off_t)(cfg + off));
  begin(key, n, errno, 0);
  if (n > 0) {
    unsigned long long v = 0;
    for (ssize_t i = n - 1; i >= 0; --i) v = (v << 8) | b[i];
    field("value=0x%llx", v);
  }
}

static void cfg_write(int d, uint64_t cfg, const char* key, uint64_t off, uint32_t value,
                      size_t len) {
  errno = 0;
  ssize_t n = pwrite(d, &value, len, (off_t)(cfg + off));
  begin(key, n, errno, 0);
}

/* struct vfio_irq_set followed by `count` data bytes (an eventfd, or a bool). */
static void set_irqs_raw(const char* key, int d, uint32_t argsz, uint32_t flags, uint32_t index,
                         uint32_t start, uint32_t count, const void* data, size_t data_len) {
  uint32_t raw[16] = {0};
  struct vfio_irq_set* s = (void*)raw;
  s->argsz = argsz;
  s->flags = flags;
  s->index = index;
  s->start = start;
  s->count = count;
  memcpy((uint8_t*)raw + sizeof *s, data, data_len);
  IO(key, d, VFIO_DEVICE_SET_IRQS, s);
}

static void set_irqs(const char* key, int d, uint32_t argsz, uint32_t flags, uint32_t index,
                     uint32_t start, uint32_t count, int32_t fd) {
  set_irqs_raw(key, d, argsz, flags, index, start, count, &fd, sizeof fd);
}

static void eventfd_count(const char* key, int efd) {
  uint64_t v = 0;
  errno = 0;
  ssize_t n = read(efd, &v, sizeof v);
  begin(key, n, errno, 0);
  if (n == sizeof v) field("count=%llu", (unsigned long long)v);
}

static void device_section(int d) {
  char key[96];
  struct vfio_device_info di = {.argsz = 0};
  IO("device.get_info.argsz0", d, VFIO_DEVICE_GET_INFO, &di);
  di.argsz = 15;
  IO("device.get_info.argsz15", d, VFIO_DEVICE_GET_INFO, &di);
  di.argsz = 16;
  if (IO("device.get_info.argsz16", d, VFIO_DEVICE_GET_INFO, &di) == 0)
    field("argsz=%u flags=0x%x num_regions=%u num_irqs=%u", di.argsz, di.flags, di.num_regions,
          di.num_irqs);
  memset(&di, 0, sizeof di);
  di.argsz = sizeof di;
  if (IO("device.get_info", d, VFIO_DEVICE_GET_INFO, &di) == 0)
    field("argsz=%u flags=0x%x num_regions=%u num_irqs=%u", di.argsz, di.flags, di.num_regions,
          di.num_irqs);

  region_info(d, 0, 0, "device.region_info.argsz0");
  region_info(d, 0, 15, "device.region_info.argsz15");
  region_info(d, 0, 16, "device.region_info.argsz16");
  for (uint32_t i = 0; i <= 9; ++i) {
    snprintf(key, sizeof key, "device.region_info.%u", i);
    region_info(d, i, 256, key);
  }
  region_info(d, 0xffffffffu, 256, "device.region_info.u32max");

  irq_info(d, 0, 0, "device.irq_info.argsz0");
  irq_info(d, 0, 15, "device.irq_info.argsz15");
  for (uint32_t i = 0; i <= 6; ++i) {
    snprintf(key, sizeof key, "device.irq_info.%u", i);
    irq_info(d, i, sizeof(struct vfio_irq_info), key);
  }

  /* Config space. */
  const uint64_t cfg = region_offset(d, VFIO_PCI_CONFIG_REGION_INDEX);
  cfg_read(d, cfg, "device.config.vendor_device", 0, 4);
  cfg_read(d, cfg, "device.config.command", 4, 2);
  cfg_read(d, cfg, "device.config.status", 6, 2);
  cfg_read(d, cfg, "device.config.class_rev", 8, 4);
  cfg_read(d, cfg, "device.config.header_type", 0xe, 1);
  cfg_read(d, cfg, "device.config.subsystem", 0x2c, 4);
  cfg_read(d, cfg, "device.config.cap_ptr", 0x34, 1);
  cfg_read(d, cfg, "device.config.interrupt_pin", 0x3d, 1);
  cfg_read(d, cfg, "device.config.8bytes", 0, 8);
  cfg_read(d, cfg, "device.config.unaligned", 1, 2);
  cfg_read(d, cfg, "device.config.last_dword", 0xfc, 4);
  cfg_read(d, cfg, "device.config.straddles_end", 0xfe, 4);
  cfg_read(d, cfg, "device.config.beyond_0x100", 0x100, 4);
  cfg_read(d, cfg, "device.config.beyond_0x1000", 0x1000, 4);
  cfg_write(d, cfg, "device.config.write_command", 4, 0x0006, 2);
  cfg_read(d, cfg, "device.config.command_after_write", 4, 2);
  cfg_write(d, cfg, "device.config.write_bar0_sizing", 0x10, 0xffffffffu, 4);
  cfg_read(d, cfg, "device.config.bar0_size_mask", 0x10, 4);
  cfg_write(d, cfg, "device.config.write_bar1_sizing", 0x14, 0xffffffffu, 4);
  cfg_read(d, cfg, "device.config.bar1_size_mask", 0x14, 4);
  cfg_write(d, cfg, "device.config.write_bar2_sizing", 0x18, 0xffffffffu, 4);
  cfg_read(d, cfg, "device.config.bar2_size_mask", 0x18, 4);
  cfg_write(d, cfg, "device.config.write_vendor", 0, 0x12345678u, 4);
  cfg_read(d, cfg, "device.config.vendor_after_write", 0, 4);
  cfg_write(d, cfg, "device.config.write_command_back", 4, 0x0000, 2);

  /* BAR0: read/write through the fd, mmap. */
  const uint64_t bar0 = region_offset(d, VFIO_PCI_BAR0_REGION_INDEX);
  {
    uint32_t v = 0;
    errno = 0;
    ssize_t n = pread(d, &v, 4, (off_t)bar0);
    begin("device.bar0.pread", n, errno, 0);
    errno = 0;
    void* p = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, d, (off_t)bar0);
    begin("device.bar0.mmap", p == MAP_FAILED ? -1 : 0, errno, 0);
    if (p != MAP_FAILED) munmap(p, 0x1000);
    errno = 0;
    p = mmap(NULL, 0x100, PROT_READ, MAP_SHARED, d, (off_t)cfg);
    begin("device.config.mmap", p == MAP_FAILED ? -1 : 0, errno, 0);
    if (p != MAP_FAILED) munmap(p, 0x100);
    errno = 0;
    n = pread(d, &v, 4, (off_t)(9ULL << 40));
    begin("device.region9.pread", n, errno, 0);
  }

  /* Reset and hot reset. */
  IO("device.reset", d, VFIO_DEVICE_RESET, 0);
  {
    uint8_t raw[256] = {0};
    struct vfio_pci_hot_reset_info* h = (void*)raw;
    h->argsz = sizeof raw;
    if (IO("device.hot_reset_info", d, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, h) == 0)
      field("flags=0x%x count=%u", h->flags, h->count);
    h->argsz = 4;
    IO("device.hot_reset_info.argsz4", d, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, h);
  }

  /* SET_IRQS: argsz, flags and index edges, then the REQ/ERR eventfd loopback. */
  const uint32_t hdr = sizeof(struct vfio_irq_set);
  const uint32_t DN = VFIO_IRQ_SET_DATA_NONE, DB = VFIO_IRQ_SET_DATA_BOOL,
                 DE = VFIO_IRQ_SET_DATA_EVENTFD, AT = VFIO_IRQ_SET_ACTION_TRIGGER,
                 AM = VFIO_IRQ_SET_ACTION_MASK;
  set_irqs("device.set_irqs.argsz0", d, 0, DN | AT, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, -1);
  set_irqs("device.set_irqs.argsz19", d, hdr - 1, DN | AT, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, -1);
  set_irqs("device.set_irqs.two_data_types", d, hdr + 4, DN | DB | AT, VFIO_PCI_REQ_IRQ_INDEX, 0,
           1, -1);
  set_irqs("device.set_irqs.two_actions", d, hdr, DN | AT | AM, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, -1);
  set_irqs("device.set_irqs.flags_unknown", d, hdr, DN | AT | 0x1000, VFIO_PCI_REQ_IRQ_INDEX, 0,
           1, -1);
  set_irqs("device.set_irqs.index_7", d, hdr, DN | AT, 7, 0, 1, -1);
  set_irqs("device.set_irqs.intx_trigger", d, hdr, DN | AT, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, -1);
  set_irqs("device.set_irqs.intx_mask", d, hdr, DN | AM, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, -1);
  set_irqs("device.set_irqs.msi_count1", d, hdr + 4, DE | AT, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, -1);
  set_irqs("device.set_irqs.msix_count1", d, hdr + 4, DE | AT, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, -1);
  set_irqs("device.set_irqs.msi_disable", d, hdr, DN | AT, VFIO_PCI_MSI_IRQ_INDEX, 0, 0, -1);
  set_irqs("device.set_irqs.req_count2", d, hdr + 8, DE | AT, VFIO_PCI_REQ_IRQ_INDEX, 0, 2, -1);
  set_irqs("device.set_irqs.req_start1", d, hdr + 4, DE | AT, VFIO_PCI_REQ_IRQ_INDEX, 1, 1, -1);
  set_irqs("device.set_irqs.req_mask", d, hdr, DN | AM, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, -1);
  set_irqs("device.set_irqs.req_eventfd_short", d, hdr + 3, DE | AT, VFIO_PCI_REQ_IRQ_INDEX, 0, 1,
           -1);
  set_irqs("device.set_irqs.req_bad_fd", d, hdr + 4, DE | AT, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, 9999);
  int efd = eventfd(0, EFD_NONBLOCK);
  set_irqs("device.set_irqs.req_eventfd", d, hdr + 4, DE | AT, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, efd);
  set_irqs("device.set_irqs.req_loopback_none", d, hdr, DN | AT, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, -1);
  eventfd_count("device.req_eventfd.after_none", efd);
  {
    uint8_t one = 1, zero = 0;
    set_irqs_raw("device.set_irqs.req_loopback_bool1", d, hdr + 1, DB | AT,
                 VFIO_PCI_REQ_IRQ_INDEX, 0, 1, &one, 1);
    eventfd_count("device.req_eventfd.after_bool1", efd);
    set_irqs_raw("device.set_irqs.req_loopback_bool0", d, hdr + 1, DB | AT,
                 VFIO_PCI_REQ_IRQ_INDEX, 0, 1, &zero, 1);
    eventfd_count("device.req_eventfd.after_bool0", efd);
  }
  set_irqs("device.set_irqs.req_disable", d, hdr, DN | AT, VFIO_PCI_REQ_IRQ_INDEX, 0, 0, -1);
  set_irqs("device.set_irqs.req_loopback_disabled", d, hdr, DN | AT, VFIO_PCI_REQ_IRQ_INDEX, 0, 1,
           -1);
  eventfd_count("device.req_eventfd.after_disable", efd);
  set_irqs("device.set_irqs.err_eventfd", d, hdr + 4, DE | AT, VFIO_PCI_ERR_IRQ_INDEX, 0, 1, efd);
  set_irqs("device.set_irqs.err_loopback_none", d, hdr, DN | AT, VFIO_PCI_ERR_IRQ_INDEX, 0, 1, -1);
  eventfd_count("device.err_eventfd.after_none", efd);
  set_irqs("device.set_irqs.err_disable", d, hdr, DN | AT, VFIO_PCI_ERR_IRQ_INDEX, 0, 0, -1);
  close(efd);

  /* VFIO_DEVICE_FEATURE: probes. */
  for (uint32_t f = 0; f <= 12; ++f) {
    struct vfio_device_feature feat = {.argsz = sizeof feat,
                                       .flags = VFIO_DEVICE_FEATURE_PROBE | f};
    snprintf(key, sizeof key, "device.feature.probe.%u", f);
    IO(key, d, VFIO_DEVICE_FEATURE, &feat);
  }
  {
    struct vfio_device_feature feat = {.argsz = 4, .flags = VFIO_DEVICE_FEATURE_PROBE | 3};
    IO("device.feature.argsz4", d, VFIO_DEVICE_FEATURE, &feat);
    feat.argsz = sizeof feat;
    feat.flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | 3;
    IO("device.feature.get_and_set", d, VFIO_DEVICE_FEATURE, &feat);
    feat.flags = 0x80000000u | 3;
    IO("device.feature.flags_unknown", d, VFIO_DEVICE_FEATURE, &feat);
  }
  IO("device.unknown_nr", d, _IO(VFIO_TYPE, VFIO_BASE + 30), 0);
}

/* The device through its group: a type1v2 container, then GET_DEVICE_FD. */
static void group_device_section(void) {
  int g = -1;
  int c = type1_container("group_device", VFIO_TYPE1v2_IOMMU, &g);
  if (c >= 0) {
    io_fd("group_device.get_device_fd.prefix", g, VFIO_GROUP_GET_DEVICE_FD, "0000:00:01");
    char opt[96];
    snprintf(opt, sizeof opt, "%s vf_token=00000000-0000-0000-0000-000000000000", bdf);
    long d2 = io_fd("group_device.get_device_fd.vf_token", g, VFIO_GROUP_GET_DEVICE_FD, opt);
    if (d2 >= 0) close((int)d2);
    long d = io_fd("group_device.get_device_fd", g, VFIO_GROUP_GET_DEVICE_FD, bdf);
    if (d >= 0) {
      long d3 = io_fd("group_device.get_device_fd.second", g, VFIO_GROUP_GET_DEVICE_FD, bdf);
      if (d3 >= 0) close((int)d3);
      IO("group_device.unset_container.device_open", g, VFIO_GROUP_UNSET_CONTAINER, 0);
      device_section((int)d);
      close((int)d);
    }
    close(c);
  }
  if (g >= 0) close(g);
}

/* ---- iommufd and the cdev ------------------------------------------------------------------- */

static uint32_t ioas_alloc(const char* key, int fd) {
  struct iommu_ioas_alloc a = {.size = sizeof a};
  if (IO(key, fd, IOMMU_IOAS_ALLOC, &a) < 0) return 0;
  return a.out_ioas_id;
}

static long ioas_map(const char* key, int fd, uint32_t ioas, uint32_t flags, uint64_t vaddr,
                     uint64_t iova, uint64_t length) {
  struct iommu_ioas_map m = {.size = sizeof m, .flags = flags, .ioas_id = ioas,
                             .user_va = vaddr, .length = length, .iova = iova};
  long r = IO(key, fd, IOMMU_IOAS_MAP, &m);
  if (r == 0 && (flags & IOMMU_IOAS_MAP_FIXED_IOVA)) field("iova=0x%llx", (unsigned long long)m.iova);
  if (r == 0 && !(flags & IOMMU_IOAS_MAP_FIXED_IOVA))
    field("iova_aligned=%d", (m.iova & (length - 1)) == 0);
  return r;
}

static long ioas_unmap(const char* key, int fd, uint32_t ioas, uint64_t iova, uint64_t length) {
  struct iommu_ioas_unmap u = {.size = sizeof u, .ioas_id = ioas, .iova = iova, .length = length};
  long r = IO(key, fd, IOMMU_IOAS_UNMAP, &u);
  field("length=0x%llx", (unsigned long long)u.length);
  return r;
}

static void iova_ranges(const char* key, int fd, uint32_t ioas) {
  struct iommu_iova_range r[8];
  struct iommu_ioas_iova_ranges q = {.size = sizeof q, .ioas_id = ioas, .num_iovas = 8,
                                     .allowed_iovas = (uintptr_t)r};
  if (IO(key, fd, IOMMU_IOAS_IOVA_RANGES, &q) < 0) return;
  field("num_iovas=%u out_iova_alignment=0x%llx", q.num_iovas,
        (unsigned long long)q.out_iova_alignment);
  for (uint32_t i = 0; i < q.num_iovas && i < 8; ++i)
    field("range%u=0x%llx-0x%llx", i, (unsigned long long)r[i].start,
          (unsigned long long)r[i].last);
}

#define IOMMU_IOAS_RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)
#define FIXED (IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_RW)

static void iommufd_section(void) {
  if (access(iommufd_path, F_OK) != 0) {
    note("iommufd.skipped", "no %s", iommufd_path);
    end_line();
    return;
  }
  int fd = open_node("iommufd.open", iommufd_path, O_RDWR);
  if (fd < 0) return;
  struct iommu_ioas_alloc a = {.size = 4};
  IO("iommufd.ioas_alloc.size4", fd, IOMMU_IOAS_ALLOC, &a);
  a.size = sizeof a;
  a.flags = 1;
  IO("iommufd.ioas_alloc.flags1", fd, IOMMU_IOAS_ALLOC, &a);
  {
    uint8_t big[32] = {0};
    ((struct iommu_ioas_alloc*)big)->size = sizeof big;
    IO("iommufd.ioas_alloc.size32_zero_tail", fd, IOMMU_IOAS_ALLOC, big);
    if (IO("iommufd.destroy.big", fd, IOMMU_DESTROY,
           (&(struct iommu_destroy){.size = 8, .id = ((struct iommu_ioas_alloc*)big)->out_ioas_id})) ==
        0) {
    }
    ((struct iommu_ioas_alloc*)big)->size = sizeof big;
    big[31] = 1;
    IO("iommufd.ioas_alloc.size32_nonzero_tail", fd, IOMMU_IOAS_ALLOC, big);
  }
  const uint32_t ioas = ioas_alloc("iommufd.ioas_alloc", fd);
  iova_ranges("iommufd.iova_ranges.empty_ioas", fd, ioas);
  iova_ranges("iommufd.iova_ranges.bad_id", fd, 9999);
  ioas_map("iommufd.map.fixed", fd, ioas, FIXED, va(0), 0x100000, 0x10000);
  ioas_map("iommufd.map.overlap", fd, ioas, FIXED, va(0), 0x108000, 0x10000);
  ioas_map("iommufd.map.flags0", fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA, va(0), 0x200000, 0x1000);
  ioas_map("iommufd.map.flags_unknown", fd, ioas, FIXED | 0x100, va(0), 0x200000, 0x1000);
  ioas_map("iommufd.map.length0", fd, ioas, FIXED, va(0), 0x200000, 0);
  ioas_map("iommufd.map.unaligned_iova", fd, ioas, FIXED, va(0), 0x200800, 0x1000);
  ioas_map("iommufd.map.unaligned_length", fd, ioas, FIXED, va(0), 0x200000, 0x800);
  ioas_map("iommufd.map.wraps", fd, ioas, FIXED, va(0), 0xfffffffffffff000ULL, 0x2000);
  ioas_map("iommufd.map.vaddr_unmapped", fd, ioas, FIXED, 0x1000, 0x200000, 0x1000);
  ioas_map("iommufd.map.bad_ioas", fd, 9999, FIXED, va(0), 0x200000, 0x1000);
  ioas_map("iommufd.map.kernel_iova", fd, ioas, IOMMU_IOAS_RW, va(2 * MIB), 0, 2 * MIB);
  ioas_unmap("iommufd.unmap.bisect", fd, ioas, 0x104000, 0x1000);
  ioas_unmap("iommufd.unmap.empty", fd, ioas, 0x800000, 0x1000);
  ioas_unmap("iommufd.unmap.exact", fd, ioas, 0x100000, 0x10000);
  {
    struct iommu_ioas_copy cp = {.size = sizeof cp, .flags = FIXED, .dst_ioas_id = ioas,
                                 .src_ioas_id = ioas, .length = 0x1000, .dst_iova = 0x300000,
                                 .src_iova = 0x900000};
    IO("iommufd.copy.src_unmapped", fd, IOMMU_IOAS_COPY, &cp);
  }
  {
    ioas_map("iommufd.map.copy_src", fd, ioas, FIXED, va(0x40000), 0x500000, 0x4000);
    struct iommu_ioas_copy cp = {.size = sizeof cp, .flags = FIXED, .dst_ioas_id = ioas,
                                 .src_ioas_id = ioas, .length = 0x4000, .dst_iova = 0x600000,
                                 .src_iova = 0x500000};
    IO("iommufd.copy.ok", fd, IOMMU_IOAS_COPY, &cp);
    cp.dst_iova = 0x600000;
    IO("iommufd.copy.dst_exists", fd, IOMMU_IOAS_COPY, &cp);
    cp.flags = FIXED | 0x100;
    IO("iommufd.copy.flags_unknown", fd, IOMMU_IOAS_COPY, &cp);
    ioas_unmap("iommufd.unmap.copy", fd, ioas, 0x600000, 0x4000);
  }
  {
    struct iommu_ioas_change_process chg = {.size = sizeof chg};
    IO("iommufd.change_process.mapped", fd, IOMMU_IOAS_CHANGE_PROCESS, &chg);
    chg.__reserved = 1;
    IO("iommufd.change_process.reserved", fd, IOMMU_IOAS_CHANGE_PROCESS, &chg);
  }
  {
    int mfd = memfd_create("oracle", 0);
    if (mfd >= 0 && ftruncate(mfd, 0x10000) == 0) {
      struct iommu_ioas_map_file mf = {.size = sizeof mf, .flags = FIXED, .ioas_id = ioas,
                                       .fd = mfd, .start = 0, .length = 0x4000, .iova = 0x700000};
      if (IO("iommufd.map_file", fd, IOMMU_IOAS_MAP_FILE, &mf) == 0)
        field("iova=0x%llx", (unsigned long long)mf.iova);
      mf.fd = -1;
      IO("iommufd.map_file.bad_fd", fd, IOMMU_IOAS_MAP_FILE, &mf);
      close(mfd);
    }
  }
  ioas_unmap("iommufd.unmap.all", fd, ioas, 0, UINT64_MAX);
  {
    struct iommu_iova_range allow = {.start = 0x100000, .last = 0x1fffff};
    struct iommu_ioas_allow_iovas al = {.size = sizeof al, .ioas_id = ioas, .num_iovas = 1,
                                        .allowed_iovas = (uintptr_t)&allow};
    IO("iommufd.allow_iovas", fd, IOMMU_IOAS_ALLOW_IOVAS, &al);
    iova_ranges("iommufd.iova_ranges.allowed", fd, ioas);
    ioas_map("iommufd.map.outside_allowed", fd, ioas, FIXED, va(0), 0x300000, 0x1000);
    allow.start = 0x1001;
    IO("iommufd.allow_iovas.unaligned", fd, IOMMU_IOAS_ALLOW_IOVAS, &al);
    al.num_iovas = 0;
    IO("iommufd.allow_iovas.clear", fd, IOMMU_IOAS_ALLOW_IOVAS, &al);
  }
  {
    struct iommu_option o = {.size = sizeof o, .option_id = IOMMU_OPTION_RLIMIT_MODE,
                             .op = IOMMU_OPTION_OP_GET};
    if (IO("iommufd.option.rlimit_get", fd, IOMMU_OPTION, &o) == 0)
      field("val64=%llu", (unsigned long long)o.val64);
    o.option_id = IOMMU_OPTION_HUGE_PAGES;
    o.object_id = ioas;
    if (IO("iommufd.option.huge_pages_get", fd, IOMMU_OPTION, &o) == 0)
      field("val64=%llu", (unsigned long long)o.val64);
    o.option_id = 99;
    IO("iommufd.option.unknown", fd, IOMMU_OPTION, &o);
  }
  {
    struct iommu_vfio_ioas v = {.size = sizeof v, .op = IOMMU_VFIO_IOAS_GET};
    IO("iommufd.vfio_ioas.get_unset", fd, IOMMU_VFIO_IOAS, &v);
    v.op = IOMMU_VFIO_IOAS_SET;
    v.ioas_id = ioas;
    IO("iommufd.vfio_ioas.set", fd, IOMMU_VFIO_IOAS, &v);
    v.op = 7;
    IO("iommufd.vfio_ioas.op_unknown", fd, IOMMU_VFIO_IOAS, &v);
  }
  IO("iommufd.compat.get_api_version", fd, VFIO_GET_API_VERSION, 0);
  for (int ext = 1; ext <= 10; ++ext) {
    char key[64];
    snprintf(key, sizeof key, "iommufd.compat.check_extension.%d", ext);
    IO(key, fd, VFIO_CHECK_EXTENSION, ext);
  }
  IO("iommufd.destroy.ioas", fd, IOMMU_DESTROY, (&(struct iommu_destroy){.size = 8, .id = ioas}));
  IO("iommufd.destroy.again", fd, IOMMU_DESTROY, (&(struct iommu_destroy){.size = 8, .id = ioas}));
  IO("iommufd.unknown_cmd", fd, _IO(IOMMUFD_TYPE, 0xa0), 0);
  close(fd);
}

/* iommufd as the container of a group (vfio_compat.c): SET_CONTAINER with the iommufd, then
 * the type1 ioctls on it, before and after the device is opened (and attached). */
static void compat_section(void) {
  if (access(iommufd_path, F_OK) != 0) {
    note("compat.skipped", "no %s", iommufd_path);
    end_line();
    return;
  }
  int fd = open_node("compat.iommufd_open", iommufd_path, O_RDWR);
  int g = open_node("compat.group_open", group_path, O_RDWR);
  if (fd < 0 || g < 0) return;
  get_info("compat.get_info.before_set_container", fd, 512);
  IO("compat.set_container", g, VFIO_GROUP_SET_CONTAINER, &fd);
  group_status("compat.get_status", g, sizeof(struct vfio_group_status));
  for (int ext = 1; ext <= 10; ++ext) {
    char key[64];
    snprintf(key, sizeof key, "compat.check_extension.%d", ext);
    IO(key, fd, VFIO_CHECK_EXTENSION, ext);
  }
  IO("compat.set_iommu.spapr", fd, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU);
  IO("compat.set_iommu.type1v2", fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
  IO("compat.set_iommu.again", fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
  get_info("compat.get_info.argsz16", fd, 16);
  get_info("compat.get_info.full", fd, 512);
  map("compat.map.a", fd, MAPSZ, RW, va(0), 0x100000, 0x10000);
  map("compat.map.overlap", fd, MAPSZ, RW, va(0), 0x108000, 0x10000);
  map("compat.map.argsz31", fd, MAPSZ - 1, RW, va(0), 0x200000, 0x1000);
  map("compat.map.flags_unknown", fd, MAPSZ, RW | 0x100, va(0), 0x200000, 0x1000);
  map("compat.map.wraps", fd, MAPSZ, RW, va(0), 0xfffffffffffff000ULL, 0x2000);
  map("compat.map.vaddr_flag", fd, MAPSZ, VFIO_DMA_MAP_FLAG_VADDR, va(0), 0x100000, 0x10000);
  unmap("compat.unmap.bisect", fd, UNMAPSZ, 0, 0x104000, 0x1000);
  unmap("compat.unmap.empty", fd, UNMAPSZ, 0, 0x800000, 0x1000);
  unmap("compat.unmap.all_with_iova", fd, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_ALL, 0x100000, 0);
  unmap("compat.unmap.exact", fd, UNMAPSZ, 0, 0x100000, 0x10000);
  map("compat.map.b", fd, MAPSZ, RW, va(0), 0x100000, 0x10000);
  if (group_device) {
    long d = io_fd("compat.get_device_fd", g, VFIO_GROUP_GET_DEVICE_FD, bdf);
    if (d >= 0) {
      struct vfio_device_info di = {.argsz = sizeof di};
      if (IO("compat.device.get_info", (int)d, VFIO_DEVICE_GET_INFO, &di) == 0)
        field("num_regions=%u num_irqs=%u", di.num_regions, di.num_irqs);
      map("compat.map.attached", fd, MAPSZ, RW, va(0x10000), 0x200000, 0x10000);
      map("compat.map.attached.reserved_msi", fd, MAPSZ, RW, va(0), 0xfee00000ULL, 0x1000);
      map("compat.map.attached.vaddr_unmapped", fd, MAPSZ, RW, 0x1000, 0x300000, 0x1000);
      get_info("compat.get_info.attached", fd, 512);
      IO("compat.unset_container.device_open", g, VFIO_GROUP_UNSET_CONTAINER, 0);
      close((int)d);
    }
  }
  unmap("compat.unmap.all", fd, UNMAPSZ, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0);
  close(g);
  close(fd);
}

static void cdev_section(void) {
  if (access(cdev_path, F_OK) != 0 || access(iommufd_path, F_OK) != 0) {
    note("cdev.skipped", "no %s or %s", cdev_path, iommufd_path);
    end_line();
    return;
  }
  int fd = open_node("cdev.iommufd_open", iommufd_path, O_RDWR);
  int d = open_node("cdev.open", cdev_path, O_RDWR);
  if (fd < 0 || d < 0) return;
  struct vfio_device_info di = {.argsz = sizeof di};
  IO("cdev.get_info.unbound", d, VFIO_DEVICE_GET_INFO, &di);
  struct vfio_device_bind_iommufd b = {.argsz = 8, .iommufd = fd};
  IO("cdev.bind.argsz8", d, VFIO_DEVICE_BIND_IOMMUFD, &b);
  b.argsz = 16;
  b.flags = 2;
  IO("cdev.bind.flags2", d, VFIO_DEVICE_BIND_IOMMUFD, &b);
  b.flags = 0;
  b.iommufd = -1;
  IO("cdev.bind.bad_fd", d, VFIO_DEVICE_BIND_IOMMUFD, &b);
  b.iommufd = fd;
  if (IO("cdev.bind", d, VFIO_DEVICE_BIND_IOMMUFD, &b) == 0) field("out_devid_nonzero=%d", b.out_devid != 0);
  const uint32_t devid = b.out_devid;
  IO("cdev.bind.again", d, VFIO_DEVICE_BIND_IOMMUFD, &b);
  {
    struct iommu_hw_info_vtd vtd;
    memset(&vtd, 0, sizeof vtd);
    struct iommu_hw_info h = {.size = sizeof h, .dev_id = devid, .data_len = sizeof vtd,
                              .data_uptr = (uintptr_t)&vtd};
    if (IO("cdev.hw_info", fd, IOMMU_GET_HW_INFO, &h) == 0)
      field("data_len=%u out_data_type=%u out_capabilities=0x%llx max_pasid_log2=%u vtd.flags=0x%x "
            "vtd.cap_reg=0x%llx vtd.ecap_reg=0x%llx",
            h.data_len, h.out_data_type, (unsigned long long)h.out_capabilities,
            h.out_max_pasid_log2, vtd.flags, (unsigned long long)vtd.cap_reg,
            (unsigned long long)vtd.ecap_reg);
    h.dev_id = 9999;
    IO("cdev.hw_info.bad_dev", fd, IOMMU_GET_HW_INFO, &h);
  }
  const uint32_t ioas = ioas_alloc("cdev.ioas_alloc", fd);
  struct vfio_device_attach_iommufd_pt at = {.argsz = 8, .pt_id = ioas};
  IO("cdev.attach.argsz8", d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
  at.argsz = sizeof at;
  at.pt_id = 9999;
  IO("cdev.attach.bad_id", d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
  at.pt_id = ioas;
  IO("cdev.attach", d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
  iova_ranges("cdev.iova_ranges.attached", fd, ioas);
  ioas_map("cdev.map.fixed", fd, ioas, FIXED, va(0), 0x100000, 0x10000);
  ioas_map("cdev.map.reserved_msi", fd, ioas, FIXED, va(0), 0xfee00000ULL, 0x1000);
  ioas_map("cdev.map.beyond_aperture", fd, ioas, FIXED, va(0), 1ULL << 48, 0x1000);
  di.argsz = sizeof di;
  if (IO("cdev.get_info", d, VFIO_DEVICE_GET_INFO, &di) == 0)
    field("flags=0x%x num_regions=%u num_irqs=%u", di.flags, di.num_regions, di.num_irqs);
  {
    struct iommu_hwpt_alloc ha = {.size = sizeof ha, .dev_id = devid, .pt_id = ioas};
    long r = IO("cdev.hwpt_alloc", fd, IOMMU_HWPT_ALLOC, &ha);
    ha.flags = IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
    IO("cdev.hwpt_alloc.dirty", fd, IOMMU_HWPT_ALLOC, &ha);
    if (r == 0) {
      struct iommu_hwpt_set_dirty_tracking t = {.size = sizeof t, .flags = 1,
                                                .hwpt_id = ha.out_hwpt_id};
      IO("cdev.set_dirty_tracking", fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &t);
      at.pt_id = ha.out_hwpt_id;
      IO("cdev.attach.hwpt", d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
      IO("cdev.destroy.hwpt_in_use", fd, IOMMU_DESTROY,
         (&(struct iommu_destroy){.size = 8, .id = ha.out_hwpt_id}));
    }
  }
  {
    struct iommu_hwpt_invalidate inv = {.size = sizeof inv, .hwpt_id = 9999};
    IO("cdev.hwpt_invalidate.bad_id", fd, IOMMU_HWPT_INVALIDATE, &inv);
    struct iommu_viommu_alloc va_ = {.size = sizeof va_, .type = 1, .dev_id = devid,
                                     .hwpt_id = ioas};
    IO("cdev.viommu_alloc", fd, IOMMU_VIOMMU_ALLOC, &va_);
    struct iommu_fault_alloc fa = {.size = sizeof fa};
    /* The new fd comes back in out_fault_fd; the ioctl returns 0. */
    if (IO("cdev.fault_queue_alloc", fd, IOMMU_FAULT_QUEUE_ALLOC, &fa) == 0)
      close((int)fa.out_fault_fd);
    fa.flags = 1;
    IO("cdev.fault_queue_alloc.flags1", fd, IOMMU_FAULT_QUEUE_ALLOC, &fa);
    struct vfio_device_attach_iommufd_pt ap = {.argsz = sizeof ap, .flags = VFIO_DEVICE_ATTACH_PASID,
                                               .pasid = 1, .pt_id = ioas};
    IO("cdev.attach.pasid", d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &ap);
  }
  struct vfio_device_detach_iommufd_pt dt = {.argsz = sizeof dt};
  IO("cdev.detach", d, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt);
  IO("cdev.detach.again", d, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt);
  IO("cdev.destroy.ioas", fd, IOMMU_DESTROY, (&(struct iommu_destroy){.size = 8, .id = ioas}));
  if (!group_device) {
    /* The device sections on the cdev's fd (attached again to a fresh IOAS). */
    at.pt_id = ioas_alloc("cdev.device.ioas_alloc", fd);
    IO("cdev.device.attach", d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
    device_section(d);
  }
  close(d);
  close(fd);
}

/* ---- No-IOMMU mode --------------------------------------------------------------------------- */

/* CAP_SYS_RAWIO in or out of the effective set (it stays permitted). */
static void set_rawio(int on) {
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &hdr, data) != 0) return;
  if (on)
    data[0].effective |= 1u << CAP_SYS_RAWIO;
  else
    data[0].effective &= ~(1u << CAP_SYS_RAWIO);
  (void)syscall(SYS_capset, &hdr, data);
}

static void noiommu_device(const char* prefix, int d) {
  char key[96];
  struct vfio_device_info di = {.argsz = sizeof di};
  snprintf(key, sizeof key, "%s.get_info", prefix);
  if (IO(key, d, VFIO_DEVICE_GET_INFO, &di) == 0)
    field("flags=0x%x num_regions=%u num_irqs=%u", di.flags, di.num_regions, di.num_irqs);
  struct vfio_region_info ri = {.argsz = sizeof ri, .index = VFIO_PCI_CONFIG_REGION_INDEX};
  snprintf(key, sizeof key, "%s.config_info", prefix);
  if (IO(key, d, VFIO_DEVICE_GET_REGION_INFO, &ri) == 0) {
    field("size=0x%llx flags=0x%x", (unsigned long long)ri.size, ri.flags);
    uint32_t ids = 0;
    errno = 0;
    long n = pread(d, &ids, sizeof ids, (off_t)ri.offset);
    snprintf(key, sizeof key, "%s.config.ids", prefix);
    begin(key, n, errno, 0);
    if (n == (long)sizeof ids) field("value=0x%08x", ids);
  }
}

static void noiommu_section(const char* group, const char* nbdf, const char* cdev) {
  int c = open_node("noiommu.container_open", container_path, O_RDWR);
  if (c < 0) return;
  IO("noiommu.check_extension.empty.8", c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU);
  IO("noiommu.check_extension.empty.3", c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU);
  set_rawio(0);
  int g = open_node("noiommu.group_open.norawio", group, O_RDWR);
  if (g >= 0) close(g);
  set_rawio(1);
  g = open_node("noiommu.group_open", group, O_RDWR);
  if (g < 0) return;
  open_node("noiommu.group_open.again", group, O_RDWR);
  group_status("noiommu.group_status", g, sizeof(struct vfio_group_status));
  io_fd("noiommu.get_device_fd.no_container", g, VFIO_GROUP_GET_DEVICE_FD, nbdf);
  set_rawio(0);
  IO("noiommu.set_container.norawio", g, VFIO_GROUP_SET_CONTAINER, &c);
  set_rawio(1);
  IO("noiommu.set_container", g, VFIO_GROUP_SET_CONTAINER, &c);
  group_status("noiommu.group_status.set", g, sizeof(struct vfio_group_status));
  IO("noiommu.check_extension.8", c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU);
  IO("noiommu.check_extension.3", c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU);
  IO("noiommu.check_extension.1", c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU);
  io_fd("noiommu.get_device_fd.no_iommu", g, VFIO_GROUP_GET_DEVICE_FD, nbdf);
  IO("noiommu.set_iommu.3", c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
  set_rawio(0);
  IO("noiommu.set_iommu.norawio", c, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU);
  set_rawio(1);
  IO("noiommu.set_iommu", c, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU);
  IO("noiommu.set_iommu.again", c, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU);
  IO("noiommu.check_extension.set.8", c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU);
  IO("noiommu.check_extension.set.3", c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU);
  struct vfio_iommu_type1_info info = {.argsz = sizeof info};
  IO("noiommu.get_info", c, VFIO_IOMMU_GET_INFO, &info);
  struct vfio_iommu_type1_dma_map map = {.argsz = sizeof map, .flags = 3, .vaddr = va(0),
                                         .iova = 0x100000, .size = 0x1000};
  IO("noiommu.map_dma", c, VFIO_IOMMU_MAP_DMA, &map);
  long d = io_fd("noiommu.get_device_fd", g, VFIO_GROUP_GET_DEVICE_FD, nbdf);
  if (d >= 0) {
    noiommu_device("noiommu.device", (int)d);
    IO("noiommu.unset_container.device_open", g, VFIO_GROUP_UNSET_CONTAINER, 0);
    close((int)d);
  }
  IO("noiommu.unset_container", g, VFIO_GROUP_UNSET_CONTAINER, 0);
  IO("noiommu.check_extension.unset.8", c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU);
  close(c);

  if (access(iommufd_path, F_OK) != 0) {
    note("noiommu.iommufd.skipped", "no %s", iommufd_path);
    end_line();
  } else {
    int fd = open_node("noiommu.compat.iommufd_open", iommufd_path, O_RDWR);
    if (fd >= 0) {
      IO("noiommu.compat.set_container", g, VFIO_GROUP_SET_CONTAINER, &fd);
      IO("noiommu.compat.check_extension.8", fd, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU);
      IO("noiommu.compat.check_extension.3", fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU);
      IO("noiommu.compat.check_extension.unmap_all", fd, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL);
      IO("noiommu.compat.set_iommu.3", fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
      set_rawio(0);
      IO("noiommu.compat.set_iommu.norawio", fd, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU);
      long d0 = io_fd("noiommu.compat.get_device_fd.norawio", g, VFIO_GROUP_GET_DEVICE_FD, nbdf);
      if (d0 >= 0) close((int)d0);
      set_rawio(1);
      IO("noiommu.compat.set_iommu", fd, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU);
      long d2 = io_fd("noiommu.compat.get_device_fd", g, VFIO_GROUP_GET_DEVICE_FD, nbdf);
      if (d2 >= 0) {
        noiommu_device("noiommu.compat.device", (int)d2);
        close((int)d2);
      }
      IO("noiommu.compat.unset_container", g, VFIO_GROUP_UNSET_CONTAINER, 0);
      close(fd);
    }
  }
  close(g);

  if (access(cdev, F_OK) != 0 || access(iommufd_path, F_OK) != 0) {
    note("noiommu.cdev.skipped", "no %s or %s", cdev, iommufd_path);
    end_line();
    return;
  }
  set_rawio(0);
  int d3 = open_node("noiommu.cdev.open.norawio", cdev, O_RDWR);
  if (d3 >= 0) close(d3);
  set_rawio(1);
  int fd = open_node("noiommu.cdev.iommufd_open", iommufd_path, O_RDWR);
  int dc = open_node("noiommu.cdev.open", cdev, O_RDWR);
  if (fd < 0 || dc < 0) return;
  struct vfio_device_bind_iommufd b = {.argsz = 16, .iommufd = fd};
  if (IO("noiommu.cdev.bind", dc, VFIO_DEVICE_BIND_IOMMUFD, &b) == 0)
    field("out_devid_nonzero=%d", b.out_devid != 0);
  struct iommu_hw_info h = {.size = sizeof h, .dev_id = b.out_devid};
  IO("noiommu.cdev.hw_info", fd, IOMMU_GET_HW_INFO, &h);
  noiommu_device("noiommu.cdev.device", dc);
  int g2 = open_node("noiommu.cdev.group_open.bound", group, O_RDWR);
  if (g2 >= 0) close(g2);
  close(dc);
  close(fd);
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--no-group-device")) {
      group_device = 0;
      continue;
    }
    if (!strcmp(a, "--noiommu")) {
      if (i + 3 >= argc) {
        fprintf(stderr, "--noiommu GROUP BDF CDEV\n");
        return 2;
      }
      noiommu_group = argv[i + 1];
      noiommu_bdf = argv[i + 2];
      noiommu_cdev = argv[i + 3];
      i += 3;
      continue;
    }
    if (!v) {
      fprintf(stderr, "usage: %s [--container P] [--group P] [--bdf BDF] [--iommufd P] "
                      "[--cdev P] [--no-group-device]\n", argv[0]);
      return 2;
    }
    if (!strcmp(a, "--container")) container_path = v;
    else if (!strcmp(a, "--group")) group_path = v;
    else if (!strcmp(a, "--bdf")) bdf = v;
    else if (!strcmp(a, "--iommufd")) iommufd_path = v;
    else if (!strcmp(a, "--cdev")) cdev_path = v;
    else {
      fprintf(stderr, "unknown option %s\n", a);
      return 2;
    }
    ++i;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  alloc_buffer();
  if (noiommu_group) {
    noiommu_section(noiommu_group, noiommu_bdf, noiommu_cdev);
    end_line();
    printf("noiommu.end\n");
    return 0;
  }
  container_section();
  group_section();
  type1_section("type1v2", VFIO_TYPE1v2_IOMMU);
  type1_section("type1v1", VFIO_TYPE1_IOMMU);
  type1v1_unmap_section();
  if (group_device) group_device_section();
  iommufd_section();
  compat_section();
  cdev_section();
  end_line();
  printf("end\n");
  return 0;
}
