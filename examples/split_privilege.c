/*
 * split_privilege: one process owns the IOMMU, another the device. The owner opens the container
 * and passes its fd over a Unix socket (SCM_RIGHTS); the worker puts its group in that container,
 * sets the IOMMU and maps its own memory; the owner watches the container's DMA_AVAIL count go
 * down and up again. This is why the IOMMU is an fd of its own in VFIO's design.
 *
 *   split_privilege [DIR [GROUP [MAPPINGS]]]
 *
 *   DIR       where the nodes are: DIR/vfio/vfio, DIR/vfio/GROUP (default /dev)
 *   GROUP     a type1 IOMMU group (default 1)
 *   MAPPINGS  how many 64 KiB mappings the worker makes (default 3)
 *
 * Here the two processes are a parent and its child (fork + socketpair); unrelated processes
 * would meet on a named Unix socket the same way.
 * Exits 0 on success; on failure names the step and the error and exits 1.
 */
/* MAP_ANONYMOUS, O_CLOEXEC, pread and MSG_CMSG_CLOEXEC under plain -std=c11 too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd_passing.h"
#include "vfio_emu_compat.h"
#include "walkthrough.h"

#define MAPPING_SIZE (64 * 1024)
#define MAX_MAPPINGS 1024

/* ---- the Unix socket: the fd (fd_passing.h), and one-letter messages --------------------- */

static void say(int sock, char what)
{
	if (write(sock, &what, 1) != 1)
		fail("write to the other process");
}

static void expect(int sock, char want)
{
	char got = 0;
	ssize_t n = read(sock, &got, 1);
	if (n != 1 || got != want) {
		fprintf(stderr, "%s: wanted message '%c' from the other process, got %s\n",
			walkthrough_name, want,
			n == 1 ? "another" : n == 0 ? "end of file" : strerror(errno));
		exit(1);
	}
}

/* ---- the owner: container fd, and GET_INFO's DMA_AVAIL ---------------------------------- */

static uint32_t dma_avail(int container)
{
	struct vfio_iommu_type1_info probe = {.argsz = sizeof(probe)};
	if (ioctl(container, VFIO_IOMMU_GET_INFO, &probe))
		fail("VFIO_IOMMU_GET_INFO");
	struct vfio_iommu_type1_info *info = calloc(1, probe.argsz);
	if (info == NULL)
		fail("calloc");
	info->argsz = probe.argsz;
	if (ioctl(container, VFIO_IOMMU_GET_INFO, info))
		fail("VFIO_IOMMU_GET_INFO (with capabilities)");
	uint32_t offset = (info->flags & VFIO_IOMMU_INFO_CAPS) ? info->cap_offset : 0;
	while (offset != 0 && offset + sizeof(struct vfio_info_cap_header) <= info->argsz) {
		struct vfio_info_cap_header *hdr = (void *)((char *)info + offset);
		if (hdr->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
			uint32_t avail = ((struct vfio_iommu_type1_info_dma_avail *)hdr)->avail;
			free(info);
			return avail;
		}
		offset = hdr->next;
	}
	fprintf(stderr, "%s: VFIO_IOMMU_GET_INFO has no DMA_AVAIL capability\n",
		walkthrough_name);
	exit(1);
}

static int owner(int sock, pid_t worker, int container, unsigned mappings)
{
	if (send_fd(sock, container))
		fail("sendmsg (SCM_RIGHTS)");
	printf("owner: sent container fd %d to worker %d\n", container, (int)worker);

	expect(sock, 'I'); /* the worker's group is in, the IOMMU is set */
	uint32_t before = dma_avail(container);
	printf("owner: VFIO_IOMMU_GET_INFO: DMA_AVAIL %u before the worker maps\n", before);
	say(sock, 'M');

	expect(sock, 'D'); /* the worker has mapped */
	uint32_t during = dma_avail(container);
	printf("owner: VFIO_IOMMU_GET_INFO: DMA_AVAIL %u after the worker's %u mappings\n", during,
	       mappings);
	if (during != before - mappings) {
		fprintf(stderr, "%s: DMA_AVAIL went from %u to %u, not down by %u\n",
			walkthrough_name, before, during, mappings);
		return 1;
	}
	say(sock, 'U');

	expect(sock, 'E'); /* the worker has unmapped */
	uint32_t after = dma_avail(container);
	printf("owner: VFIO_IOMMU_GET_INFO: DMA_AVAIL %u after the worker unmapped\n", after);
	if (after != before) {
		fprintf(stderr, "%s: DMA_AVAIL %u after the unmap, want %u\n", walkthrough_name,
			after, before);
		return 1;
	}
	say(sock, 'Q');

	int status = 0;
	if (waitpid(worker, &status, 0) != worker)
		fail("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "%s: the worker failed (status %#x)\n", walkthrough_name, status);
		return 1;
	}
	return 0;
}

/* ---- the worker: group, SET_CONTAINER with the fd it was given, MAP/UNMAP ---------------- */

static int worker(int sock, const char *dir, const char *group_name, unsigned mappings)
{
	walkthrough_name = "split_privilege (worker)";
	int container = recv_fd(sock);
	if (container < 0)
		fail("recvmsg (SCM_RIGHTS)");
	printf("worker: received container fd %d\n", container);

	char group_path[64];
	snprintf(group_path, sizeof(group_path), "vfio/%s", group_name);
	printf("worker: ");
	int group = open_node(dir, group_path);
	struct vfio_group_status status = {.argsz = sizeof(status)};
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &status))
		fail("VFIO_GROUP_GET_STATUS");
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		fprintf(stderr, "%s: group %s is not viable\n", walkthrough_name, group_name);
		return 1;
	}
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		fail("VFIO_GROUP_SET_CONTAINER (the received fd)");
	printf("worker: VFIO_GROUP_SET_CONTAINER: group %s is in the owner's container\n",
	       group_name);
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		fail("VFIO_SET_IOMMU");
	printf("worker: VFIO_SET_IOMMU: TYPE1v2\n");
	say(sock, 'I');

	expect(sock, 'M');
	size_t size = (size_t)mappings * MAPPING_SIZE;
	char *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (memory == MAP_FAILED)
		fail("mmap");
	for (unsigned i = 0; i < mappings; i++) {
		struct vfio_iommu_type1_dma_map map = {
			.argsz = sizeof(map),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uintptr_t)(memory + (size_t)i * MAPPING_SIZE),
			.iova = (uint64_t)i * MAPPING_SIZE,
			.size = MAPPING_SIZE,
		};
		if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map))
			fail("VFIO_IOMMU_MAP_DMA");
		printf("worker: VFIO_IOMMU_MAP_DMA: vaddr %#llx -> iova %#llx, %#x bytes\n",
		       (unsigned long long)map.vaddr, (unsigned long long)map.iova, MAPPING_SIZE);
	}
	say(sock, 'D');

	expect(sock, 'U');
	/* TYPE1v2 removes whole mappings: one range covering all of them removes them all. */
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.iova = 0,
		.size = size,
	};
	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap))
		fail("VFIO_IOMMU_UNMAP_DMA");
	printf("worker: VFIO_IOMMU_UNMAP_DMA: %#llx bytes unmapped\n",
	       (unsigned long long)unmap.size);
	if (unmap.size != size) {
		fprintf(stderr, "%s: unmapped %#llx bytes, want %#zx\n", walkthrough_name,
			(unsigned long long)unmap.size, size);
		return 1;
	}
	say(sock, 'E');

	expect(sock, 'Q');
	munmap(memory, size);
	close(group);
	close(container);
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/dev";
	const char *group_name = argc > 2 ? argv[2] : "1";
	unsigned long mappings = argc > 3 ? strtoul(argv[3], NULL, 0) : 3;
	if (mappings == 0 || mappings > MAX_MAPPINGS) {
		fprintf(stderr, "split_privilege: MAPPINGS must be 1..%d\n", MAX_MAPPINGS);
		return 2;
	}

	/* Line by line, so the two processes' output interleaves in the order it happens. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* The owner opens the container: the IOMMU context is its fd. */
	walkthrough_name = "split_privilege (owner)";
	printf("owner: ");
	int container = open_node(dir, "vfio/vfio");
	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		fail("VFIO_GET_API_VERSION");

	int socks[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, socks))
		fail("socketpair");
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0) {
		/* The worker starts with nothing of the owner's but its socket. */
		close(socks[0]);
		close(container);
		int r = worker(socks[1], dir, group_name, (unsigned)mappings);
		fflush(stdout);
		_exit(r);
	}
	close(socks[1]);
	int r = owner(socks[0], pid, container, (unsigned)mappings);
	close(container);
	if (r == 0)
		printf("split_privilege: done\n");
	return r;
}
