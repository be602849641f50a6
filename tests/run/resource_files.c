/* sysfs resourceN files under `vfio-emu run`, as Linux 7.3's (drivers/pci/pci-sysfs.c,
 * fs/sysfs/file.c), for a device with a 16 KiB memory BAR0 (the built-in machine's testdev):
 *   resource_files BDF
 * Must run as root (sysfs's resource files are root's, 0600) on a daemon that maps BARs (FUSE
 * passthrough): exits 77 when the VFIO BAR0 region does not advertise VFIO_REGION_INFO_FLAG_MMAP,
 * after checking that resource0 then answers mmap with ENODEV as the device file does.
 *
 *   - resource0: a regular file of the BAR's size, mode 0600, root's; no resource0_wc (BAR0 is not
 *     prefetchable) and no resource1 (no BAR1);
 *   - read() EIO, write() EIO, a write at the end EFBIG, a read at the end 0 (sysfs_kf_bin_*);
 *   - mmap of resource0 is the BAR: a store through it is what a VFIO pread of BAR0 returns and
 *     what a VFIO mapping of BAR0 loads, and the other way round;
 *   - a mapping of pages past the BAR: EINVAL (pci_mmap_fits; `run`'s supervisor answers it);
 *   - a write to a read-only attribute: EACCES, root included;
 *   - reset, rescan and remove take a number (EINVAL otherwise); reset resets the function,
 *     remove is refused (EBUSY); a file `run` wrote itself, or a new one, is EROFS. */
#include "vfio_emu_compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

#define EXPECT(cond, ...)                    \
  do {                                       \
    if (!(cond)) {                           \
      fprintf(stderr, "FAIL: " __VA_ARGS__); \
      fputc('\n', stderr);                   \
      ++failures;                            \
    }                                        \
  } while (0)

#define REQUIRE(cond, what)                                      \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "FAIL: %s: %s\n", what, strerror(errno)); \
      return 1;                                                  \
    }                                                            \
  } while (0)

static const char* bdf;
static char cdev_name[256];
static char path_buf[512];
static const char* dev_path(const char* name) {
  snprintf(path_buf, sizeof path_buf, "/sys/bus/pci/devices/%s/%s", bdf, name);
  return path_buf;
}

/* The errno of open(path, flags) (0: it opened). */
static int open_errno(const char* path, int flags) {
  const int fd = open(path, flags);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

/* The errno of one write of `data` to path opened with `flags` (0: it took all of it). */
static int write_errno(const char* path, int flags, const char* data) {
  const int fd = open(path, flags, 0644);
  if (fd < 0) return errno;
  const ssize_t n = write(fd, data, strlen(data));
  const int e = n < 0 ? errno : (size_t)n == strlen(data) ? 0 : -1;
  close(fd);
  return e;
}

/* Opens the device's cdev bound to a fresh iommufd, with memory decoding on: the fd, or -1. */
static int open_bound_device(void) {
  char dirpath[512], path[600];
  char* cdev = cdev_name;
  snprintf(dirpath, sizeof dirpath, "/sys/bus/pci/devices/%s/vfio-dev", bdf);
  DIR* dir = opendir(dirpath);
  if (dir == NULL) return -1;
  for (struct dirent* e; (e = readdir(dir)) != NULL;)
    if (strncmp(e->d_name, "vfio", 4) == 0) snprintf(cdev, sizeof cdev_name, "%s", e->d_name);
  closedir(dir);
  snprintf(path, sizeof path, "/dev/vfio/devices/%s", cdev);
  const int device = open(path, O_RDWR);
  const int iommufd = open("/dev/iommu", O_RDWR);
  if (device < 0 || iommufd < 0) return -1;
  struct vfio_device_bind_iommufd bind = {.argsz = sizeof bind, .iommufd = iommufd};
  if (ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind) != 0) return -1;
  /* A driver turns memory decoding on before it touches a memory BAR (else VFIO says EIO). */
  const off_t config = (off_t)VFIO_PCI_CONFIG_REGION_INDEX << 40;
  uint16_t cmd = 0;
  if (pread(device, &cmd, 2, config + 4) != 2) return -1;
  cmd |= 0x2; /* PCI_COMMAND_MEMORY */
  if (pwrite(device, &cmd, 2, config + 4) != 2) return -1;
  return device;
}

int main(int argc, char** argv) {
  if (argc != 2) return fprintf(stderr, "usage: resource_files BDF\n"), 2;
  bdf = argv[1];
  const long page = sysconf(_SC_PAGESIZE);

  /* The files pci_create_resource_files makes: resource0 only. */
  struct stat st;
  REQUIRE(stat(dev_path("resource0"), &st) == 0, "stat resource0");
  EXPECT(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600, "resource0 mode %o", st.st_mode);
  EXPECT(st.st_uid == 0 && st.st_gid == 0, "resource0 owner %u:%u", st.st_uid, st.st_gid);
  EXPECT(st.st_size == 16384, "resource0 size %lld, not BAR0's 16 KiB", (long long)st.st_size);
  EXPECT(stat(dev_path("resource0_wc"), &st) != 0 && errno == ENOENT,
         "resource0_wc of a non-prefetchable BAR");
  EXPECT(stat(dev_path("resource1"), &st) != 0 && errno == ENOENT, "resource1 without BAR1");

  /* read/write: the bin attribute has mmap only. */
  const int res = open(dev_path("resource0"), O_RDWR);
  REQUIRE(res >= 0, "open resource0 O_RDWR");
  char buf[64] = {0};
  errno = 0;
  EXPECT(read(res, buf, 4) == -1 && errno == EIO, "read of resource0: %s", strerror(errno));
  errno = 0;
  EXPECT(pread(res, buf, 4, 0x100) == -1 && errno == EIO, "pread of resource0: %s",
         strerror(errno));
  EXPECT(pread(res, buf, 4, 16384) == 0, "pread at resource0's end: 0 bytes");
  EXPECT(pread(res, buf, 4, 1 << 20) == 0, "pread past resource0's end: 0 bytes");
  EXPECT(read(res, buf, 0) == 0, "read of 0 bytes");
  errno = 0;
  EXPECT(pwrite(res, "abcd", 4, 0) == -1 && errno == EIO, "write of resource0: %s",
         strerror(errno));
  errno = 0;
  EXPECT(pwrite(res, "abcd", 4, 16384) == -1 && errno == EFBIG, "write at resource0's end: %s",
         strerror(errno));
  errno = 0;
  EXPECT(ioctl(res, 0x5401, buf) == -1 && errno == ENOTTY, "ioctl on resource0");

  /* Read-only attributes: EACCES at open for writing, root included (kernfs). */
  const char* ro[] = {"vendor", "device", "class", "resource", "irq", "revision"};
  for (size_t i = 0; i < sizeof ro / sizeof ro[0]; ++i)
    EXPECT(open_errno(dev_path(ro[i]), O_WRONLY) == EACCES, "open(%s, O_WRONLY): %s", ro[i],
           strerror(open_errno(dev_path(ro[i]), O_WRONLY)));

  const int device = open_bound_device();
  REQUIRE(device >= 0, "open and bind the device's cdev");
  struct vfio_region_info info = {.argsz = sizeof info, .index = VFIO_PCI_BAR0_REGION_INDEX};
  REQUIRE(ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &info) == 0, "GET_REGION_INFO BAR0");
  EXPECT(info.size == 16384, "BAR0 region of %llu bytes", (unsigned long long)info.size);

  if (!(info.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
    /* No passthrough: resource0 cannot be mapped either, as the device file (ENODEV). */
    errno = 0;
    EXPECT(mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, res, 0) == MAP_FAILED &&
               errno == ENODEV,
           "mmap of resource0 without passthrough: %s", strerror(errno));
    if (failures) return 1;
    printf("resource files of %s: checks passed; BAR mmap is off (no FUSE passthrough)\n", bdf);
    return 77;
  }

  volatile uint32_t* sys = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, res, 0);
  REQUIRE(sys != MAP_FAILED, "mmap of resource0");
  volatile uint32_t* vfio =
      mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, device, (off_t)info.offset);
  REQUIRE(vfio != MAP_FAILED, "mmap of the VFIO BAR0 region");
  const off_t bar0 = (off_t)info.offset;

  /* sysfs mapping -> VFIO pread and VFIO mapping. */
  for (uint32_t i = 0; i < 16384 / 4; i += 97) sys[i] = 0x5a000000u | i;
  for (uint32_t i = 0; i < 16384 / 4; i += 97) {
    uint32_t v = 0;
    EXPECT(pread(device, &v, 4, bar0 + 4 * i) == 4 && v == (0x5a000000u | i),
           "VFIO pread at %#x: %#x after a store through resource0", 4 * i, v);
    EXPECT(vfio[i] == (0x5a000000u | i), "VFIO mapping at %#x: %#x", 4 * i, vfio[i]);
    if (failures) break;
  }
  /* VFIO pwrite and VFIO mapping -> sysfs mapping. */
  for (uint32_t i = 1; i + 1 < 16384 / 4; i += 89) {
    const uint32_t v = 0xc3000000u | i;
    EXPECT(pwrite(device, &v, 4, bar0 + 4 * i) == 4, "VFIO pwrite at %#x", 4 * i);
    EXPECT(sys[i] == v, "resource0 at %#x: %#x after a VFIO pwrite of %#x", 4 * i, sys[i], v);
    vfio[i + 1] = ~v;
    EXPECT(sys[i + 1] == ~v, "resource0 at %#x: %#x after a store through VFIO", 4 * (i + 1),
           sys[i + 1]);
    if (failures) break;
  }
  /* The last word of the BAR, through a mapping of its last page only. */
  volatile uint32_t* last = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, res, 16384 - page);
  EXPECT(last != MAP_FAILED, "mmap of resource0's last page");
  if (last != MAP_FAILED) {
    vfio[16384 / 4 - 1] = 0x600dcafe;
    EXPECT(last[page / 4 - 1] == 0x600dcafe, "resource0's last word: %#x", last[page / 4 - 1]);
    munmap((void*)last, (size_t)page);
  }

  /* O_RDONLY: a shared writable mapping is EACCES (do_mmap), a read-only one maps. */
  const int ro_fd = open(dev_path("resource0"), O_RDONLY);
  EXPECT(ro_fd >= 0, "open resource0 O_RDONLY");
  errno = 0;
  EXPECT(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro_fd, 0) == MAP_FAILED &&
             errno == EACCES,
         "PROT_WRITE mapping of an O_RDONLY resource0: %s", strerror(errno));
  void* r = mmap(NULL, 4096, PROT_READ, MAP_SHARED, ro_fd, 0);
  EXPECT(r != MAP_FAILED && ((volatile uint32_t*)r)[1] == sys[1], "read-only mapping");
  if (r != MAP_FAILED) munmap(r, 4096);
  close(ro_fd);

  /* A mapping past the BAR: Linux answers EINVAL (pci_mmap_fits). */
  errno = 0;
  void* past = mmap(NULL, 16384 + (size_t)page, PROT_READ, MAP_SHARED, res, 0);
  EXPECT(past == MAP_FAILED && errno == EINVAL, "mmap of 16 KiB + a page of resource0: %s",
         past == MAP_FAILED ? strerror(errno) : "mapped");
  if (past != MAP_FAILED) munmap(past, 16384 + (size_t)page);
  errno = 0;
  past = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, res, 16384);
  EXPECT(past == MAP_FAILED && errno == EINVAL, "mmap of resource0 at its end: %s",
         past == MAP_FAILED ? strerror(errno) : "mapped");
  if (past != MAP_FAILED) munmap(past, (size_t)page);

  /* The VFIO device file's mmap, as vfio_pci_core_mmap refuses it (run's supervisor answers
   * what the passthrough file cannot): config space, a private mapping, past the BAR, and a
   * cdev that is not bound. */
  struct {
    const char* what;
    int flags;
    off_t offset;
    size_t len;
  } refused[] = {
      {"the config region", MAP_SHARED, (off_t)VFIO_PCI_CONFIG_REGION_INDEX << 40, 4096},
      {"BAR0, MAP_PRIVATE", MAP_PRIVATE, bar0, 4096},
      {"BAR0 and a page past it", MAP_SHARED, bar0, 16384 + 4096},
      {"the page after BAR0", MAP_SHARED, bar0 + 16384, 4096},
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; ++i) {
    errno = 0;
    void* m = mmap(NULL, refused[i].len, PROT_READ, refused[i].flags, device, refused[i].offset);
    EXPECT(m == MAP_FAILED && errno == EINVAL, "mmap of %s of the device: %s", refused[i].what,
           m == MAP_FAILED ? strerror(errno) : "mapped");
    if (m != MAP_FAILED) munmap(m, refused[i].len);
  }
  char unbound_path[300];
  snprintf(unbound_path, sizeof unbound_path, "/dev/vfio/devices/%s", cdev_name);
  const int unbound = open(unbound_path, O_RDWR);
  errno = 0;
  void* m = unbound >= 0 ? mmap(NULL, 4096, PROT_READ, MAP_SHARED, unbound, bar0) : MAP_FAILED;
  EXPECT(unbound >= 0 && m == MAP_FAILED && errno == EINVAL,
         "mmap of BAR0 through a cdev fd that is not bound: %s",
         m == MAP_FAILED ? strerror(errno) : "mapped");
  if (m != MAP_FAILED) munmap(m, 4096);
  if (unbound >= 0) close(unbound);

  /* remove, rescan, reset: write-only, a number each (kstrtoul); remove is refused (EBUSY),
   * reset resets the function: the BAR reads 0 through resource0 and VFIO. */
  EXPECT(open_errno(dev_path("reset"), O_RDONLY) == EACCES, "open(reset, O_RDONLY)");
  EXPECT(write_errno(dev_path("reset"), O_WRONLY, "2\n") == EINVAL, "reset 2");
  EXPECT(write_errno(dev_path("reset"), O_WRONLY, "x") == EINVAL, "reset x");
  EXPECT(sys[1] != 0, "BAR0 word 1 before the reset");
  EXPECT(write_errno(dev_path("reset"), O_WRONLY, "1\n") == 0, "reset 1");
  uint32_t after = 1;
  EXPECT(sys[1] == 0 && vfio[1] == 0 && pread(device, &after, 4, bar0 + 4) == 4 && after == 0,
         "BAR0 after a reset through sysfs: %#x %#x %#x", sys[1], vfio[1], after);
  EXPECT(write_errno(dev_path("rescan"), O_WRONLY, "1") == 0, "rescan 1");
  EXPECT(write_errno(dev_path("rescan"), O_WRONLY, "one") == EINVAL, "rescan one");
  EXPECT(write_errno(dev_path("remove"), O_WRONLY, "0") == 0, "remove 0");
  EXPECT(write_errno(dev_path("remove"), O_WRONLY, "1") == EBUSY, "remove 1: refused");
  EXPECT(stat(dev_path("resource0"), &st) == 0, "the device is still there");
  /* What `run` made itself is read-only (EROFS): no write lands in a tmpfs silently. */
  char cdev_dev[300];
  snprintf(cdev_dev, sizeof cdev_dev, "vfio-dev/%s/dev", cdev_name);
  EXPECT(write_errno(dev_path(cdev_dev), O_WRONLY, "1:1") == EROFS, "write of %s", cdev_dev);
  EXPECT(write_errno(dev_path("enable"), O_WRONLY | O_CREAT | O_TRUNC, "1") == EROFS,
         "creating enable");
  EXPECT(write_errno("/sys/bus/pci/drivers/vfio-pci/new_file", O_WRONLY | O_CREAT, "1") == EROFS,
         "creating a file in vfio-pci's directory");
  /* The bus's attributes are the emulated bus's (the daemon's), never the host's. */
  EXPECT(write_errno("/sys/bus/pci/drivers_probe", O_WRONLY, bdf) == 0, "drivers_probe %s", bdf);
  EXPECT(write_errno("/sys/bus/pci/drivers_probe", O_WRONLY, "0000:7f:1f.7\n") == ENODEV,
         "drivers_probe of a device the emulated bus lacks: ENODEV");
  EXPECT(write_errno("/sys/bus/pci/rescan", O_WRONLY, "1") == 0, "bus rescan 1");
  EXPECT(write_errno("/sys/bus/pci/rescan", O_WRONLY, "yes") == EINVAL, "bus rescan yes");
  EXPECT(open_errno("/sys/bus/pci/rescan", O_RDONLY) == EACCES, "open(bus rescan, O_RDONLY)");
  char autoprobe[8] = "";
  const int ap = open("/sys/bus/pci/drivers_autoprobe", O_RDONLY);
  EXPECT(ap >= 0 && read(ap, autoprobe, sizeof autoprobe - 1) == 2 && strcmp(autoprobe, "1\n") == 0,
         "drivers_autoprobe reads 1");
  if (ap >= 0) close(ap);
  /* What else the host's /sys/bus/pci has is read-only here; vfio's parameter too. */
  if (access("/sys/bus/pci/resource_alignment", F_OK) == 0)
    EXPECT(write_errno("/sys/bus/pci/resource_alignment", O_WRONLY, "\n") == EROFS,
           "the host's resource_alignment");
  EXPECT(write_errno("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", O_WRONLY, "Y") ==
             EROFS,
         "vfio's enable_unsafe_noiommu_mode");

  munmap((void*)sys, 16384);
  munmap((void*)vfio, 16384);
  close(res);
  close(device);
  if (failures) return 1;
  printf("resource files of %s: all checks passed\n", bdf);
  return 0;
}
