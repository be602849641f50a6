/* The sysfs and debugfs files under `vfio-emu run`, through open/read/write as programs use
 * them, against what Linux 7.3 answers (cuse/sysfs_files.h):
 *   sysfs_files BDF
 * BDF must be behind VT-d (its intel-iommu debugfs directory exists) and the program root (as
 * the VFIO selftests are): kernfs refuses root too. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/vfio.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define EXPECT(cond, ...)                   \
  do {                                      \
    if (!(cond)) {                          \
      fprintf(stderr, "FAIL: " __VA_ARGS__); \
      fputc('\n', stderr);                  \
      ++failures;                           \
    }                                       \
  } while (0)

static char path_buf[512];
static const char* at(const char* dir, const char* bdf, const char* name) {
  snprintf(path_buf, sizeof(path_buf), dir, bdf, name);
  return path_buf;
}
#define DEV(name) at("/sys/bus/pci/devices/%s/%s", bdf, name)
#define DRV(name) at("/sys/bus/pci/drivers/vfio-pci/%s%s", "", name)

/* The errno of open(path, flags) (0: it opened). */
static int open_errno(const char* path, int flags) {
  const int fd = open(path, flags);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

/* The errno of one write of `data` (len bytes) to path (0: it took all of them). */
static int write_errno(const char* path, const void* data, size_t len) {
  const int fd = open(path, O_WRONLY);
  if (fd < 0) return -errno;
  const ssize_t n = write(fd, data, len);
  const int e = n < 0 ? errno : (size_t)n == len ? 0 : -1000;
  close(fd);
  return e;
}

static ssize_t read_all(int fd, char* buf, size_t size) {
  size_t got = 0;
  for (;;) {
    const ssize_t n = read(fd, buf + got, size - got);
    if (n < 0) return -1;
    if (n == 0 || got + (size_t)n == size) return (ssize_t)(got + (size_t)n);
    got += (size_t)n;
  }
}

struct churn {
  int container;
  char* mem;
  int stop;
};

/* Maps and unmaps two pages at IOVA 0x6000000 until told to stop. */
static void* churn_maps(void* p) {
  struct churn* c = p;
  while (!__atomic_load_n(&c->stop, __ATOMIC_SEQ_CST)) {
    struct vfio_iommu_type1_dma_map map = {sizeof(map), VFIO_DMA_MAP_FLAG_READ, (unsigned long)c->mem,
                                           0x6000000, 4096};
    struct vfio_iommu_type1_dma_unmap unmap = {sizeof(unmap), 0, 0x6000000, 4096};
    ioctl(c->container, VFIO_IOMMU_MAP_DMA, &map);
    ioctl(c->container, VFIO_IOMMU_UNMAP_DMA, &unmap);
  }
  return NULL;
}

static int count_lines(const char* s) {
  int n = 0;
  for (; *s; ++s) n += *s == '\n';
  return n;
}

int main(int argc, char** argv) {
  if (argc != 2) return fprintf(stderr, "usage: sysfs_files BDF\n"), 2;
  const char* bdf = argv[1];
  char buf[65536];

  /* Read-only attributes: EACCES for a write, root included (kernfs_fop_open). */
  const char* ro[] = {"vendor", "device", "class", "subsystem_vendor", "subsystem_device",
                      "revision", "resource", "irq"};
  for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); ++i) {
    EXPECT(open_errno(DEV(ro[i]), O_WRONLY) == EACCES, "open(%s, O_WRONLY): %s", ro[i],
           strerror(open_errno(DEV(ro[i]), O_WRONLY)));
    EXPECT(open_errno(DEV(ro[i]), O_RDWR) == EACCES, "open(%s, O_RDWR)", ro[i]);
    EXPECT(open_errno(DEV(ro[i]), O_RDONLY) == 0, "open(%s, O_RDONLY)", ro[i]);
  }
  /* ... and `echo x > vendor` (O_TRUNC) too. */
  EXPECT(open_errno(DEV("vendor"), O_WRONLY | O_TRUNC | O_CREAT) == EACCES, "O_TRUNC of vendor");
  /* The driver's write-only files: EACCES for a read. */
  const char* wo[] = {"bind", "unbind", "new_id", "remove_id"};
  for (size_t i = 0; i < 4; ++i)
    EXPECT(open_errno(DRV(wo[i]), O_RDONLY) == EACCES, "open(%s, O_RDONLY)", wo[i]);

  /* vendor and device as the device's config space holds them. */
  int fd = open(DEV("config"), O_RDONLY);
  EXPECT(fd >= 0, "open config");
  ssize_t n = read_all(fd, buf, sizeof(buf));
  EXPECT(n == 4096, "config: %zd bytes, not 4096 (PCI Express)", n);
  char want[16], got[16] = {0};
  snprintf(want, sizeof(want), "0x%02x%02x\n", (unsigned char)buf[1], (unsigned char)buf[0]);
  int vfd = open(DEV("vendor"), O_RDONLY);
  EXPECT(vfd >= 0 && read(vfd, got, sizeof(got) - 1) == 7 && strcmp(got, want) == 0,
         "vendor '%s', config says '%s'", got, want);
  close(vfd);
  /* Reads past the end: nothing; a read straddling it: up to the end. */
  EXPECT(pread(fd, buf, 16, 4096) == 0, "pread of config at its end");
  EXPECT(pread(fd, buf, 16, 1 << 30) == 0, "pread of config far past its end");
  EXPECT(pread(fd, buf, 64, 4096 - 8) == 8, "pread straddling config's end");
  EXPECT(pread(fd, buf, 16, (off_t)1 << 62) == 0, "pread of config at 2^62");
  EXPECT(pread(fd, buf, 16, -1) < 0 && errno == EINVAL, "pread at a negative offset");
  close(fd);
  EXPECT(write_errno(DEV("config"), "\0\0", 2) == EPERM, "write of config");

  /* resource: 13 lines. */
  fd = open(DEV("resource"), O_RDONLY);
  n = fd >= 0 ? read_all(fd, buf, sizeof(buf) - 1) : -1;
  if (n >= 0) buf[n] = 0;
  EXPECT(n > 0 && count_lines(buf) == 13, "resource: %d lines", n > 0 ? count_lines(buf) : -1);
  close(fd);

  /* driver_override: stored and shown; bind/unbind/new_id/remove_id with Linux's errnos. */
  EXPECT(write_errno(DEV("driver_override"), "vfio-pci\n", 9) == 0, "driver_override");
  fd = open(DEV("driver_override"), O_RDONLY);
  n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
  if (n >= 0) buf[n] = 0;
  EXPECT(n == 9 && strcmp(buf, "vfio-pci\n") == 0, "driver_override reads '%s'", n >= 0 ? buf : "");
  close(fd);
  EXPECT(write_errno(DRV("bind"), bdf, strlen(bdf)) == EBUSY, "bind of a bound device");
  EXPECT(write_errno(DEV("driver_override"), "\n", 1) == 0, "clearing driver_override");
  EXPECT(write_errno(DRV("bind"), bdf, strlen(bdf)) == ENODEV, "bind without a match");
  EXPECT(write_errno(DRV("bind"), "garbage\n", 8) == ENODEV, "bind of garbage");
  EXPECT(write_errno(DRV("unbind"), "0000:7f:1f.7", 12) == ENODEV, "unbind of no device");
  EXPECT(write_errno(DRV("unbind"), bdf, strlen(bdf)) == EBUSY, "unbind: refused");
  EXPECT(write_errno(DRV("new_id"), "1", 1) == EINVAL, "new_id with one field");
  EXPECT(write_errno(DRV("new_id"), "abcd 1234\n", 10) == 0, "new_id");
  EXPECT(write_errno(DRV("new_id"), "abcd 1234\n", 10) == EEXIST, "new_id again");
  EXPECT(write_errno(DRV("remove_id"), "abcd 1234\n", 10) == 0, "remove_id");
  EXPECT(write_errno(DRV("remove_id"), "abcd 1234\n", 10) == ENODEV, "remove_id again");
  /* A huge write of garbage: the store sees one page of it, and says ENODEV. */
  static char huge[1 << 20];
  memset(huge, 'x', sizeof(huge));
  EXPECT(write_errno(DRV("bind"), huge, sizeof(huge)) == ENODEV, "1 MiB to bind");
  EXPECT(write_errno(DRV("new_id"), huge, sizeof(huge)) == EINVAL, "1 MiB to new_id");
  EXPECT(write_errno(DEV("driver_override"), huge, sizeof(huge)) == EINVAL,
         "1 MiB to driver_override");

  /* debugfs: computed at each open and kept with it. */
  char group_link[512], dbg[512];
  snprintf(dbg, sizeof(dbg), "/sys/kernel/debug/iommu/intel/%s/domain_translation_struct", bdf);
  n = readlink(DEV("iommu_group"), group_link, sizeof(group_link) - 1);
  EXPECT(n > 0, "iommu_group link");
  group_link[n > 0 ? n : 0] = 0;
  char group_path[600];
  snprintf(group_path, sizeof(group_path), "/dev/vfio/%s", basename(group_link));
  const int container = open("/dev/vfio/vfio", O_RDWR);
  const int group = open(group_path, O_RDWR);
  EXPECT(container >= 0 && group >= 0, "open container, %s", group_path);
  EXPECT(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) == 0, "SET_CONTAINER");
  EXPECT(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0, "SET_IOMMU");
  const int before = open(dbg, O_RDONLY);
  char* mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  struct vfio_iommu_type1_dma_map map = {sizeof(map), VFIO_DMA_MAP_FLAG_READ |
                                         VFIO_DMA_MAP_FLAG_WRITE, (unsigned long)mem, 0x5000000,
                                         4096};
  EXPECT(ioctl(container, VFIO_IOMMU_MAP_DMA, &map) == 0, "MAP_DMA");
  const int after = open(dbg, O_RDONLY);
  EXPECT(before >= 0 && after >= 0, "open %s", dbg);
  n = read_all(before, buf, sizeof(buf) - 1);
  buf[n > 0 ? n : 0] = 0;
  EXPECT(n > 0 && count_lines(buf) == 2 && strstr(buf, "0x0000000005000 |") == NULL,
         "the open before MAP_DMA shows no leaf: '%s'", buf);
  n = read_all(after, buf, sizeof(buf) - 1);
  buf[n > 0 ? n : 0] = 0;
  EXPECT(n > 0 && count_lines(buf) == 3 && strstr(buf, "\n0x0000000005000 |\t") != NULL,
         "the open after MAP_DMA shows its leaf: '%s'", buf);
  EXPECT(strncmp(buf, "Device ", 7) == 0, "starts with the device line: '%s'", buf);
  /* Read again from the start: the same contents (the open's). */
  char again[4096];
  EXPECT(pread(before, again, sizeof(again), 0) > 0 && strstr(again, "0x0000000005000 |") == NULL,
         "the first open's contents stay");
  close(before);
  close(after);
  EXPECT(write_errno(dbg, "x", 1) == EINVAL, "write to debugfs");

  /* Reads of the debugfs file while another thread maps and unmaps: each open is consistent
   * (its first line is the device's, and every row a whole row); bounded by count and time. */
  struct churn c = {container, mem, 0};
  pthread_t t;
  EXPECT(pthread_create(&t, NULL, churn_maps, &c) == 0, "churn thread");
  const time_t until = time(NULL) + 2;
  for (int i = 0; i < 2000 && time(NULL) < until; ++i) {
    const int d = open(dbg, O_RDONLY);
    n = d >= 0 ? read_all(d, buf, sizeof(buf) - 1) : -1;
    if (d >= 0) close(d);
    buf[n > 0 ? n : 0] = 0;
    const int rows = n > 0 ? count_lines(buf) : -1;
    EXPECT(n > 0 && strncmp(buf, "Device ", 7) == 0 && buf[n - 1] == '\n' && rows >= 2 && rows <= 4,
           "read %d during maps: %zd bytes, %d lines", i, n, rows);
    if (failures) break;
  }
  __atomic_store_n(&c.stop, 1, __ATOMIC_SEQ_CST);
  pthread_join(t, NULL);
  close(group);
  close(container);
  if (failures) return 1;
  printf("sysfs files of %s: all checks passed\n", bdf);
  return 0;
}
