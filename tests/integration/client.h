/*
 * What the integration test programs share: they are clients of a running vfio-emud (started by
 * run_with_daemon.sh), called as `PROGRAM NODE_DIR [ARGS]`, and talk to it only through open()
 * and the real ioctls, like any VFIO program.
 *
 * Checks print one line each ("ok ..." or "FAIL file:line ..."), count failures and go on;
 * test_finish() turns the count into the exit status. die() is for setup steps after whose
 * failure nothing else can be checked.
 */
#ifndef VFIO_EMU_TESTS_INTEGRATION_CLIENT_H
#define VFIO_EMU_TESTS_INTEGRATION_CLIENT_H

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>

#include "vfio_emu_compat.h"

extern const char *node_dir; /* argv[1]: where the daemon's nodes are */

/* Sets node_dir from argv[1] (default /dev) and makes stdout line-buffered. */
void test_init(int argc, char **argv);
/* In a forked child that checks on its own: counts from zero, reports as `name`. */
void test_child(const char *name);
/* Prints the summary; returns the exit status (0 if every check passed). */
int test_finish(void);
/* Prints "FATAL: ..." (with strerror(errno) if errno is set) and exits 1. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void check_result(const char *file, int line, long result, int error, int want_errno,
		  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void check_value(const char *file, int line, unsigned long long got, unsigned long long want,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* CALL must fail with errno WANT. */
#define EXPECT_ERRNO(want, call, ...)                                                   \
	do {                                                                            \
		errno = 0;                                                              \
		long result_ = (long)(call);                                            \
		int errno_ = errno;                                                     \
		check_result(__FILE__, __LINE__, result_, errno_, (want), __VA_ARGS__); \
	} while (0)
/* CALL must return >= 0. */
#define EXPECT_OK(call, ...) EXPECT_ERRNO(0, call, __VA_ARGS__)
/* Two integers must be equal. */
#define EXPECT_EQ(got, want, ...) \
	check_value(__FILE__, __LINE__, (unsigned long long)(got), (unsigned long long)(want), \
		    __VA_ARGS__)

/* Opens NODE_DIR/name O_RDWR; try_open_node returns what open() does, open_node dies. */
int try_open_node(const char *name);
int open_node(const char *name);

/* A container with group `group` (e.g. "1") in it and TYPE1v2 set; *group_fd gets the group.
 * Dies on failure. */
int open_type1(const char *group, int *group_fd);
/* The container's DMA_AVAIL from VFIO_IOMMU_GET_INFO; dies if it cannot be read. */
uint32_t dma_avail(int container);
/* VFIO_DEVICE_BIND_IOMMUFD of `device` to `iommufd`: the ioctl's result. */
int bind_iommufd(int device, int iommufd);
/* For setup steps that follow a close: FUSE delivers RELEASE after close() has returned, and the
 * daemon may still count the closed file (reopen.c checks that race itself). These retry for up
 * to 2 s while the answer is EBUSY (a group or a bound device still open), or for the BIND also
 * EINVAL (another fd of the device still bound). open_node_settled dies if the node stays busy;
 * bind_iommufd_settled returns what the last try returned. */
int open_node_settled(const char *name);
int bind_iommufd_settled(int device, int iommufd);
/* IOMMU_IOAS_ALLOC, then VFIO_DEVICE_ATTACH_IOMMUFD_PT of the bound `device` to the new IOAS.
 * Returns the IOAS id; dies on failure. */
uint32_t attach_new_ioas(int device, int iommufd);

/* VFIO_IOMMU_MAP_DMA read+write / VFIO_IOMMU_UNMAP_DMA (*unmapped: the size written back):
 * the ioctl's result, -1 with errno set on failure. */
int map_dma(int container, const void *vaddr, uint64_t iova, uint64_t size);
int unmap_dma(int container, uint64_t iova, uint64_t size, uint64_t *unmapped);
/* Anonymous read-write memory; dies on failure. */
void *alloc_memory(size_t size);

/* fd passing over a Unix socket (send_fd/recv_fd of examples/include/fd_passing.h), and
 * one-letter messages to keep two processes in step. Each dies on failure. */
void pass_fd(int sock, int fd);
int take_fd(int sock);
void send_msg(int sock, char what);
void expect_msg(int sock, char want);

/* Waits for a child; returns its exit status, or 128 + signal if it was killed. */
int wait_child(pid_t pid);

/* The daemon's pid, from $VFIO_EMU_DAEMON_PID (run_with_daemon.sh); dies if unset. */
pid_t daemon_pid(void);

#endif
