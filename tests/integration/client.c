#include "client.h"

#include "fd_passing.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

const char *node_dir = "/dev";
static const char *program = "test";
static unsigned checks, failures;

void test_init(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *slash = strrchr(argv[0], '/');
	program = slash ? slash + 1 : argv[0];
	if (argc > 1)
		node_dir = argv[1];
}

void test_child(const char *name)
{
	program = name;
	checks = failures = 0;
}

int test_finish(void)
{
	printf("%s: %u checks, %u failed\n", program, checks, failures);
	return failures == 0 && checks > 0 ? 0 : 1;
}

void die(const char *fmt, ...)
{
	int error = errno;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: FATAL: ", program);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (error != 0)
		fprintf(stderr, ": %s", strerror(error));
	fprintf(stderr, "\n");
	exit(1);
}

void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("     ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

static const char *errno_text(int e)
{
	static __thread char buf[96];
	if (e == 0)
		return "success";
	const char *name = strerrorname_np(e);
	snprintf(buf, sizeof(buf), "%s (%s)", name ? name : "?", strerror(e));
	return buf;
}

static void report(const char *file, int line, int ok, const char *fmt, va_list ap,
		   const char *outcome)
{
	/* One line per check; threads may check at once, so build it first. */
	char what[512];
	vsnprintf(what, sizeof(what), fmt, ap);
	const char *base = strrchr(file, '/');
	__atomic_add_fetch(&checks, 1, __ATOMIC_RELAXED);
	if (ok) {
		printf("ok   %s: %s\n", what, outcome);
	} else {
		__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
		printf("FAIL %s:%d: %s: %s\n", base ? base + 1 : file, line, what, outcome);
	}
}

void check_result(const char *file, int line, long result, int error, int want_errno,
		  const char *fmt, ...)
{
	char outcome[256];
	int ok;
	if (want_errno == 0) {
		ok = result >= 0;
		if (ok)
			snprintf(outcome, sizeof(outcome), "returned %ld", result);
		else
			snprintf(outcome, sizeof(outcome), "got %s, want success", errno_text(error));
	} else if (result >= 0) {
		ok = 0;
		snprintf(outcome, sizeof(outcome), "returned %ld, want %s", result,
			 errno_text(want_errno));
	} else {
		ok = error == want_errno;
		if (ok) {
			snprintf(outcome, sizeof(outcome), "%s", errno_text(error));
		} else {
			char got[96];
			snprintf(got, sizeof(got), "%s", errno_text(error));
			snprintf(outcome, sizeof(outcome), "got %s, want %s", got,
				 errno_text(want_errno));
		}
	}
	va_list ap;
	va_start(ap, fmt);
	report(file, line, ok, fmt, ap, outcome);
	va_end(ap);
}

void check_value(const char *file, int line, unsigned long long got, unsigned long long want,
		 const char *fmt, ...)
{
	char outcome[128];
	if (got == want)
		snprintf(outcome, sizeof(outcome), "%#llx", got);
	else
		snprintf(outcome, sizeof(outcome), "got %#llx, want %#llx", got, want);
	va_list ap;
	va_start(ap, fmt);
	report(file, line, got == want, fmt, ap, outcome);
	va_end(ap);
}

int try_open_node(const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", node_dir, name);
	return open(path, O_RDWR | O_CLOEXEC);
}

int open_node(const char *name)
{
	int fd = try_open_node(name);
	if (fd < 0)
		die("open %s/%s", node_dir, name);
	return fd;
}

int bind_iommufd(int device, int iommufd)
{
	struct vfio_device_bind_iommufd bind = {.argsz = sizeof(bind), .iommufd = iommufd};
	return ioctl(device, VFIO_DEVICE_BIND_IOMMUFD, &bind);
}

int open_node_settled(const char *name)
{
	int fd = -1;
	for (int i = 0; i < 200; i++) {
		fd = try_open_node(name);
		if (fd >= 0 || errno != EBUSY)
			break;
		usleep(10000);
	}
	if (fd < 0)
		die("open %s/%s (waited 2 s for it to be free)", node_dir, name);
	return fd;
}

int bind_iommufd_settled(int device, int iommufd)
{
	int r = -1;
	for (int i = 0; i < 200; i++) {
		r = bind_iommufd(device, iommufd);
		if (r == 0 || (errno != EBUSY && errno != EINVAL))
			break;
		usleep(10000);
	}
	return r;
}

uint32_t attach_new_ioas(int device, int iommufd)
{
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		die("IOMMU_IOAS_ALLOC");
	struct vfio_device_attach_iommufd_pt attach = {
		.argsz = sizeof(attach),
		.pt_id = alloc.out_ioas_id,
	};
	if (ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT to IOAS %u", alloc.out_ioas_id);
	return alloc.out_ioas_id;
}

int open_type1(const char *group, int *group_fd)
{
	char name[64];
	snprintf(name, sizeof(name), "vfio/%s", group);
	int container = open_node("vfio/vfio");
	int g = open_node(name);
	if (ioctl(g, VFIO_GROUP_SET_CONTAINER, &container))
		die("group %s: VFIO_GROUP_SET_CONTAINER", group);
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		die("group %s: VFIO_SET_IOMMU TYPE1v2", group);
	*group_fd = g;
	return container;
}

uint32_t dma_avail(int container)
{
	/* 88 + 16 * nr_iovas bytes on Linux 6.6+; 1 KiB leaves room for 58 IOVA ranges. */
	union {
		struct vfio_iommu_type1_info info;
		char bytes[1024];
	} buf;
	memset(&buf, 0, sizeof(buf));
	buf.info.argsz = sizeof(buf);
	if (ioctl(container, VFIO_IOMMU_GET_INFO, &buf))
		die("VFIO_IOMMU_GET_INFO");
	if (buf.info.argsz > sizeof(buf) || !(buf.info.flags & VFIO_IOMMU_INFO_CAPS))
		die("VFIO_IOMMU_GET_INFO: flags %#x, argsz %u: no capabilities in 1 KiB",
		    buf.info.flags, buf.info.argsz);
	for (uint32_t off = buf.info.cap_offset;
	     off != 0 && off + sizeof(struct vfio_iommu_type1_info_dma_avail) <= sizeof(buf);) {
		const struct vfio_info_cap_header *hdr = (const void *)(buf.bytes + off);
		if (hdr->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL)
			return ((const struct vfio_iommu_type1_info_dma_avail *)hdr)->avail;
		off = hdr->next;
	}
	errno = 0;
	die("VFIO_IOMMU_GET_INFO: no DMA_AVAIL capability");
}

int map_dma(int container, const void *vaddr, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)vaddr,
		.iova = iova,
		.size = size,
	};
	return ioctl(container, VFIO_IOMMU_MAP_DMA, &map);
}

int unmap_dma(int container, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.iova = iova,
		.size = size,
	};
	int r = ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap);
	if (r == 0 && unmapped != NULL)
		*unmapped = unmap.size;
	return r;
}

void *alloc_memory(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap %#zx bytes", size);
	return p;
}

void pass_fd(int sock, int fd)
{
	if (send_fd(sock, fd))
		die("sendmsg (SCM_RIGHTS)");
}

int take_fd(int sock)
{
	int fd = recv_fd(sock);
	if (fd < 0)
		die("recvmsg (SCM_RIGHTS)");
	return fd;
}

void send_msg(int sock, char what)
{
	if (write(sock, &what, 1) != 1)
		die("write '%c' to the other process", what);
}

void expect_msg(int sock, char want)
{
	char got = 0;
	ssize_t n = read(sock, &got, 1);
	if (n != 1 || got != want) {
		if (n >= 0)
			errno = 0;
		die("wanted message '%c' from the other process, got %s", want,
		    n == 1 ? "another" : n == 0 ? "end of file" : "an error");
	}
}

int wait_child(pid_t pid)
{
	int status = 0;
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid %d", (int)pid);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

pid_t daemon_pid(void)
{
	const char *s = getenv("VFIO_EMU_DAEMON_PID");
	if (s == NULL || atoi(s) <= 0) {
		errno = 0;
		die("VFIO_EMU_DAEMON_PID is not set (run me through run_with_daemon.sh)");
	}
	return (pid_t)atoi(s);
}
