/* A VFIO program as real ones are written: finds the IOMMU group of a PCI device in sysfs,
 * opens /dev/vfio/vfio and /dev/vfio/<group>, runs the type1 flow, then asks for the device fd.
 *   type1_real_paths BDF expect
 * expect: "device-fd" (GET_DEVICE_FD must work: run with --shim) or "no-device-fd" (it must fail
 * with EOPNOTSUPP, the emulator's documented answer without the shim). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK(cond, what)                                                 \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "FAIL: %s: %s\n", what, strerror(errno));          \
      return 1;                                                           \
    }                                                                     \
  } while (0)

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s BDF device-fd|no-device-fd\n", argv[0]);
    return 2;
  }
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

  const int device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
  if (strcmp(argv[2], "no-device-fd") == 0) {
    CHECK(device < 0 && errno == EOPNOTSUPP, "GET_DEVICE_FD answers EOPNOTSUPP without the shim");
  } else {
    CHECK(device >= 0, "VFIO_GROUP_GET_DEVICE_FD");
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
