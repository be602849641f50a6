/* The cdev + iommufd flow with the real paths: finds the device's cdev in
 * /sys/bus/pci/devices/<bdf>/vfio-dev/, opens /dev/vfio/devices/vfioN and /dev/iommu. */
#include "vfio_emu_compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
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
  const char* bdf = argc > 1 ? argv[1] : "0000:00:01.0";
  char path[512], cdev[256] = "";
  snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/vfio-dev", bdf);
  DIR* dir = opendir(path);
  CHECK(dir != NULL, path);
  for (struct dirent* e; (e = readdir(dir)) != NULL;)
    if (strncmp(e->d_name, "vfio", 4) == 0) snprintf(cdev, sizeof cdev, "%s", e->d_name);
  closedir(dir);
  CHECK(cdev[0] != '\0', "a vfioN entry in vfio-dev");
  snprintf(path, sizeof path, "/dev/vfio/devices/%s", cdev);
  const int device = open(path, O_RDWR);
  CHECK(device >= 0, path);
  const int iommufd = open("/dev/iommu", O_RDWR);
  CHECK(iommufd >= 0, "/dev/iommu");
  struct vfio_device_bind_iommufd bind = {.argsz = sizeof bind, .iommufd = iommufd};
  CHECK(ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind) == 0, "VFIO_DEVICE_BIND_IOMMUFD");
  struct iommu_ioas_alloc alloc = {.size = sizeof alloc};
  CHECK(ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc) == 0, "IOMMU_IOAS_ALLOC");
  struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof attach, .pt_id = alloc.out_ioas_id};
  CHECK(ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) == 0, "ATTACH_IOMMUFD_PT");
  void* buf = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  struct iommu_ioas_map map = {.size = sizeof map,
                               .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                               .ioas_id = alloc.out_ioas_id,
                               .user_va = (uintptr_t)buf,
                               .length = 1 << 20};
  CHECK(ioctl(iommufd, IOMMU_IOAS_MAP, &map) == 0 && map.iova != 0, "IOMMU_IOAS_MAP");
  struct iommu_ioas_unmap unmap = {.size = sizeof unmap, .ioas_id = alloc.out_ioas_id,
                                   .iova = 0, .length = UINT64_MAX};
  CHECK(ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap) == 0 && unmap.length == 1 << 20,
        "IOMMU_IOAS_UNMAP all");
  printf("ok: %s is %s, iommufd flow done (iova %#llx)\n", bdf, cdev, (unsigned long long)map.iova);
  return 0;
}
