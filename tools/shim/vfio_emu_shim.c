/*
 * libvfio-emu-shim.so: makes VFIO_GROUP_GET_DEVICE_FD work against vfio-emu.
 *
 * A user-space daemon cannot create a file descriptor in its caller, so vfio-emud answers
 * GET_DEVICE_FD with EOPNOTSUPP once every check Linux makes has passed. This shim, preloaded
 * into the program (`vfio-emu run --shim`), catches that answer and does what the kernel would:
 * it asks the daemon which cdev serves the device (VFIO_EMU_GROUP_DEVICE), opens it next to the
 * group node, and turns it into a device fd obtained through the group
 * (VFIO_EMU_DEVICE_USE_GROUP). Every other ioctl goes straight through.
 *
 * Only dynamically linked programs calling libc's ioctl() are reached; statically linked ones
 * run too, but see GET_DEVICE_FD's EOPNOTSUPP.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT (the build defines it already) */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* core/uapi/vfio_emu.h */
#define VFIO_EMU_GROUP_DEVICE 0x3B7EUL
#define VFIO_EMU_DEVICE_USE_GROUP 0x3B7DUL

typedef int (*ioctl_fn)(int, unsigned long, ...);

static ioctl_fn real_ioctl(void) {
  static ioctl_fn fn;
  if (fn == NULL) fn = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
  return fn;
}

/* The device's cdev path: the group node's directory + "devices/vfioN". */
static int cdev_path(int group_fd, int n, char* out, size_t size) {
  char link[64], path[4096];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", group_fd);
  const ssize_t len = readlink(link, path, sizeof(path) - 1);
  if (len <= 0) return -1;
  path[len] = '\0';
  char* slash = strrchr(path, '/');
  if (slash == NULL) return -1;
  *slash = '\0';
  return snprintf(out, size, "%s/devices/vfio%d", path, n) < (int)size ? 0 : -1;
}

static int get_device_fd(int group_fd, void* name, int saved_errno) {
  const int n = real_ioctl()(group_fd, VFIO_EMU_GROUP_DEVICE, name);
  if (n < 0) {
    errno = saved_errno; /* not a vfio-emu group: keep the original answer */
    return -1;
  }
  char path[4200];
  if (cdev_path(group_fd, n, path, sizeof(path)) != 0) {
    errno = saved_errno;
    return -1;
  }
  const int dev = open(path, O_RDWR | O_CLOEXEC); /* GET_DEVICE_FD's fd is O_CLOEXEC */
  if (dev < 0) return -1;
  if (real_ioctl()(dev, VFIO_EMU_DEVICE_USE_GROUP, (unsigned long)group_fd) != 0) {
    const int e = errno;
    close(dev);
    errno = e;
    return -1;
  }
  return dev;
}

int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  const int r = real_ioctl()(fd, request, arg);
  if (r >= 0 || errno != EOPNOTSUPP || request != VFIO_GROUP_GET_DEVICE_FD) return r;
  return get_device_fd(fd, arg, errno);
}
