/* A VFIO program as real ones are written: finds the IOMMU group of a PCI device in sysfs,
 * opens /dev/vfio/vfio and /dev/vfio/<group>, runs the type1 flow, then asks for the device fd.
 *   type1_real_paths BDF libc|raw-syscall|thread
 * libc: GET_DEVICE_FD through libc's ioctl(); raw-syscall: through syscall(SYS_ioctl), as a
 * program with its own syscall layer does; thread: through libc's ioctl() in a second thread (not
 * the thread-group leader), as the VFIO selftests' vfio_pci_device_init_perf_test does. Either
 * way `vfio-emu run` must answer it (its seccomp supervisor), with Linux's errnos for bad names
 * and an O_CLOEXEC fd, and leave the same ioctl on any other file to the kernel. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHECK(cond, what)                                                 \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "FAIL: %s: %s\n", what, strerror(errno));          \
      return 1;                                                           \
    }                                                                     \
  } while (0)

static int raw, in_thread;

struct ioctl_call {
  int fd;
  unsigned long cmd;
  const void* arg;
  long ret;
  int err;
};

static void* ioctl_thread(void* p) {
  struct ioctl_call* c = p;
  c->ret = ioctl(c->fd, c->cmd, c->arg);
  c->err = errno;
  return NULL;
}

static long do_ioctl(int fd, unsigned long cmd, const void* arg) {
  if (in_thread) {  /* the ioctl from a thread that is not the leader; its errno comes back */
    struct ioctl_call c = {fd, cmd, arg, -1, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, ioctl_thread, &c) != 0 || pthread_join(t, NULL) != 0) {
      errno = EAGAIN;
      return -1;
    }
    errno = c.err;
    return c.ret;
  }
  return raw ? syscall(SYS_ioctl, fd, cmd, arg) : ioctl(fd, cmd, arg);
}

int main(int argc, char** argv) {
  if (argc != 3 ||
      (strcmp(argv[2], "libc") && strcmp(argv[2], "raw-syscall") && strcmp(argv[2], "thread"))) {
    fprintf(stderr, "usage: %s BDF libc|raw-syscall|thread\n", argv[0]);
    return 2;
  }
  raw = strcmp(argv[2], "raw-syscall") == 0;
  in_thread = strcmp(argv[2], "thread") == 0;
  const char* bdf = argv[1];
  char path[512], link[512];
  snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/iommu_group", bdf);
  const ssize_t n = readlink(path, link, sizeof link - 1);
  CHECK(n > 0, path);
  link[n] = '\0';
  const int group_id = atoi(basename(link));
  snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver", bdf);
  const ssize_t d = readlink(path, link, sizeof link - 1);
  CHECK(d > 0, path);
  link[d] = '\0';
  CHECK(strcmp(basename(link), "vfio-pci") == 0, "driver is vfio-pci");

  const int container = open("/dev/vfio/vfio", O_RDWR);
  CHECK(container >= 0, "/dev/vfio/vfio");
  CHECK(ioctl(container, VFIO_GET_API_VERSION) == VFIO_API_VERSION, "VFIO_GET_API_VERSION");
  CHECK(ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) == 1, "VFIO_CHECK_EXTENSION");
  snprintf(path, sizeof path, "/dev/vfio/%d", group_id);
  const int group = open(path, O_RDWR);
  CHECK(group >= 0, path);
  struct vfio_group_status status = {.argsz = sizeof status};
  CHECK(ioctl(group, VFIO_GROUP_GET_STATUS, &status) == 0, "VFIO_GROUP_GET_STATUS");
  CHECK(status.flags & VFIO_GROUP_FLAGS_VIABLE, "group viable");
  CHECK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) == 0, "VFIO_GROUP_SET_CONTAINER");
  CHECK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) == 0, "VFIO_SET_IOMMU");
  struct vfio_iommu_type1_info info = {.argsz = sizeof info};
  CHECK(ioctl(container, VFIO_IOMMU_GET_INFO, &info) == 0, "VFIO_IOMMU_GET_INFO");
  void* buf = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(buf != MAP_FAILED, "mmap");
  struct vfio_iommu_type1_dma_map map = {.argsz = sizeof map,
                                         .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                                         .vaddr = (unsigned long)buf,
                                         .iova = 0,
                                         .size = 1 << 20};
  CHECK(ioctl(container, VFIO_IOMMU_MAP_DMA, &map) == 0, "VFIO_IOMMU_MAP_DMA");

  /* Bad names get Linux's answers (vfio_group_get_device_fd, strndup_user). */
  CHECK(do_ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:99:99.9") < 0 && errno == ENODEV,
        "GET_DEVICE_FD of an unknown device: ENODEV");
  CHECK(do_ioctl(group, VFIO_GROUP_GET_DEVICE_FD, (void*)8) < 0 && errno == EFAULT,
        "GET_DEVICE_FD with an unreadable name: EFAULT");
  char* long_name = malloc(8192);
  CHECK(long_name != NULL, "malloc");
  memset(long_name, 'x', 8191);
  long_name[8191] = '\0';
  CHECK(do_ioctl(group, VFIO_GROUP_GET_DEVICE_FD, long_name) < 0 && errno == EINVAL,
        "GET_DEVICE_FD with a name longer than a page: EINVAL");
  free(long_name);
  /* The same command on a file that is not a VFIO group is the kernel's business. */
  int pipefd[2];
  CHECK(pipe(pipefd) == 0, "pipe");
  CHECK(do_ioctl(pipefd[0], VFIO_GROUP_GET_DEVICE_FD, bdf) < 0 && errno == ENOTTY,
        "GET_DEVICE_FD on a pipe: ENOTTY from the kernel");
  CHECK(do_ioctl(1000, VFIO_GROUP_GET_DEVICE_FD, bdf) < 0 && errno == EBADF,
        "GET_DEVICE_FD on a closed number: EBADF from the kernel");
  close(pipefd[0]);
  close(pipefd[1]);

  const int device = (int)do_ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
  {
    CHECK(device >= 0, "VFIO_GROUP_GET_DEVICE_FD");
    CHECK(fcntl(device, F_GETFD) == FD_CLOEXEC, "the device fd is O_CLOEXEC");
    struct vfio_device_info dinfo = {.argsz = sizeof dinfo};
    CHECK(ioctl(device, VFIO_DEVICE_GET_INFO, &dinfo) == 0, "VFIO_DEVICE_GET_INFO");
    CHECK(dinfo.num_regions == VFIO_PCI_NUM_REGIONS, "num_regions");
    struct vfio_region_info region = {.argsz = sizeof region, .index = VFIO_PCI_CONFIG_REGION_INDEX};
    CHECK(ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &region) == 0, "GET_REGION_INFO");
    unsigned short vendor = 0;
    CHECK(pread(device, &vendor, 2, (off_t)region.offset) == 2, "pread vendor id");
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/vendor", bdf);
    FILE* f = fopen(path, "r");
    CHECK(f != NULL, path);
    unsigned sys_vendor = 0;
    CHECK(fscanf(f, "%x", &sys_vendor) == 1, "sysfs vendor");
    fclose(f);
    CHECK(sys_vendor == vendor, "config space vendor matches sysfs");
    CHECK(ioctl(device, VFIO_DEVICE_RESET) == 0, "VFIO_DEVICE_RESET");
    close(device);
  }
  struct vfio_iommu_type1_dma_unmap unmap = {.argsz = sizeof unmap, .iova = 0, .size = 1 << 20};
  CHECK(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) == 0 && unmap.size == 1 << 20,
        "VFIO_IOMMU_UNMAP_DMA");
  printf("ok: %s in group %d, type1 flow done (%s)\n", bdf, group_id, argv[2]);
  return 0;
}
