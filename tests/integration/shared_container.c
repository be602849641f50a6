/*
 * Two processes share one IOMMU context by fd passing (SCM_RIGHTS), as in the split_privilege
 * example, with every step checked: the container fd means the same container in both, each
 * sees the other's groups and mappings, and what one process's exit releases is exactly what it
 * held. Then the same for an iommufd: one process owns the iommufd and the IOAS, the other binds
 * its device to the passed fd and attaches to that IOAS.
 *
 *   shared_container NODE_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"

#define FULL_DMA_AVAIL 65535
#define SIZE 0x10000UL
#define OWNER_IOVA 0x100000UL
#define WORKER_IOVA 0x0UL

static void send_u32(int sock, uint32_t v)
{
	if (write(sock, &v, sizeof(v)) != sizeof(v))
		die("write to the other process");
}

static uint32_t recv_u32(int sock)
{
	uint32_t v;
	if (read(sock, &v, sizeof(v)) != sizeof(v))
		die("read from the other process");
	return v;
}

/* ---- a type1 container ------------------------------------------------------------------ */

static int container_worker(int sock)
{
	int container = take_fd(sock);
	int group = open_node("vfio/1");
	EXPECT_OK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container),
		  "worker: SET_CONTAINER with the received container fd");
	EXPECT_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "worker: SET_IOMMU");
	send_msg(sock, 'I');

	expect_msg(sock, 'M');
	char *mem = alloc_memory(SIZE);
	EXPECT_OK(map_dma(container, mem, WORKER_IOVA, SIZE), "worker: MAP_DMA its own memory");
	EXPECT_ERRNO(EEXIST, map_dma(container, mem, OWNER_IOVA, SIZE),
		     "worker: MAP_DMA over the owner's mapping");
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL - 2,
		  "worker: DMA_AVAIL counts the owner's mapping and its own");
	send_msg(sock, 'D');

	expect_msg(sock, 'U'); /* the owner has unmapped the worker's mapping */
	EXPECT_OK(map_dma(container, mem, WORKER_IOVA, SIZE),
		  "worker: MAP_DMA again where the owner unmapped");
	send_msg(sock, 'E');
	/* Exit without unmapping or closing: the exit closes the group. */
	return 0;
}

static void container_owner(int sock, pid_t worker)
{
	int container = open_node("vfio/vfio");
	pass_fd(sock, container);
	expect_msg(sock, 'I');
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL,
		  "owner: GET_INFO works on its fd after the worker set the IOMMU");
	int group2 = open_node("vfio/2");
	EXPECT_OK(ioctl(group2, VFIO_GROUP_SET_CONTAINER, &container),
		  "owner: SET_CONTAINER of a second group into the shared container");
	char *mem = alloc_memory(SIZE);
	EXPECT_OK(map_dma(container, mem, OWNER_IOVA, SIZE), "owner: MAP_DMA its own memory");
	send_msg(sock, 'M');

	expect_msg(sock, 'D');
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL - 2, "owner: DMA_AVAIL after both mapped");
	uint64_t unmapped = 0;
	EXPECT_OK(unmap_dma(container, WORKER_IOVA, SIZE, &unmapped),
		  "owner: UNMAP_DMA of the worker's mapping");
	EXPECT_EQ(unmapped, SIZE, "owner: bytes unmapped");
	send_msg(sock, 'U');

	expect_msg(sock, 'E');
	EXPECT_EQ(wait_child(worker), 0, "worker exit status");
	/* The worker's group left with it; the container keeps group 2, its IOMMU and both
	 * mappings (Linux keeps a dead process's pinned pages mapped while the container lives). */
	int group1;
	EXPECT_OK(group1 = try_open_node("vfio/1"), "owner: open the worker's group after its exit");
	struct vfio_group_status status = {.argsz = sizeof(status)};
	EXPECT_OK(ioctl(group1, VFIO_GROUP_GET_STATUS, &status), "owner: GET_STATUS");
	EXPECT_EQ(status.flags, VFIO_GROUP_FLAGS_VIABLE, "owner: the worker's group is in no container");
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL - 2,
		  "owner: DMA_AVAIL with the dead worker's mapping still there");
	EXPECT_ERRNO(EEXIST, map_dma(container, mem, WORKER_IOVA, SIZE),
		     "owner: MAP_DMA over the dead worker's mapping");
	EXPECT_OK(ioctl(group1, VFIO_GROUP_SET_CONTAINER, &container),
		  "owner: SET_CONTAINER of the worker's group");

	/* The last groups leave: the container drops its IOMMU and every mapping. */
	EXPECT_OK(ioctl(group1, VFIO_GROUP_UNSET_CONTAINER), "owner: UNSET_CONTAINER group 1");
	EXPECT_OK(ioctl(group2, VFIO_GROUP_UNSET_CONTAINER), "owner: UNSET_CONTAINER group 2");
	struct vfio_iommu_type1_info info = {.argsz = sizeof(info)};
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_GET_INFO, &info),
		     "owner: GET_INFO once the last group left (no IOMMU driver)");
	EXPECT_OK(ioctl(group2, VFIO_GROUP_SET_CONTAINER, &container), "owner: SET_CONTAINER again");
	EXPECT_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "owner: SET_IOMMU again");
	EXPECT_EQ(dma_avail(container), FULL_DMA_AVAIL, "owner: DMA_AVAIL of the fresh IOMMU");
	/* Closing the last group is the other way to leave; Linux releases it before close()
	 * returns. */
	close(group2);
	EXPECT_ERRNO(EINVAL, ioctl(container, VFIO_IOMMU_GET_INFO, &info),
		     "owner: GET_INFO right after close() of the last group");
	close(group1);
	close(container);
}

/* ---- an iommufd ----------------------------------------------------------------------- */

static int iommufd_worker(int sock)
{
	int iommufd = take_fd(sock);
	uint32_t ioas = recv_u32(sock);
	int device = open_node("vfio/devices/vfio1");
	EXPECT_OK(bind_iommufd(device, iommufd), "worker: BIND_IOMMUFD with the received iommufd");
	struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof(attach), .pt_id = ioas};
	EXPECT_OK(ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach),
		  "worker: ATTACH_IOMMUFD_PT to the owner's IOAS %u", ioas);
	close(iommufd); /* the bound device keeps the context */
	send_msg(sock, 'A');
	expect_msg(sock, 'Q');
	close(device);
	return 0;
}

static void iommufd_owner(int sock, pid_t worker)
{
	int iommufd = open_node("iommu");
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc), "owner: IOAS_ALLOC");
	pass_fd(sock, iommufd);
	send_u32(sock, alloc.out_ioas_id);
	expect_msg(sock, 'A');

	/* The worker's device is attached: the IOAS now has its reserved region (MSI window). */
	struct iommu_iova_range ranges[4];
	struct iommu_ioas_iova_ranges query = {
		.size = sizeof(query),
		.ioas_id = alloc.out_ioas_id,
		.num_iovas = 4,
		.allowed_iovas = (uintptr_t)ranges,
	};
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &query), "owner: IOAS_IOVA_RANGES");
	EXPECT_EQ(query.num_iovas, 2, "owner: IOVA ranges with the worker's VT-d device attached");
	char *mem = alloc_memory(SIZE);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)mem,
		.length = SIZE,
		.iova = 0xfee00000,
	};
	EXPECT_ERRNO(EINVAL, ioctl(iommufd, IOMMU_IOAS_MAP, &map),
		     "owner: IOAS_MAP into the MSI window the worker's device reserves");
	map.iova = OWNER_IOVA;
	EXPECT_OK(ioctl(iommufd, IOMMU_IOAS_MAP, &map), "owner: IOAS_MAP for the worker's device");
	struct iommu_destroy destroy = {.size = sizeof(destroy), .id = alloc.out_ioas_id};
	EXPECT_ERRNO(EBUSY, ioctl(iommufd, IOMMU_DESTROY, &destroy),
		     "owner: DESTROY of the IOAS the worker's device is attached to");
	send_msg(sock, 'Q');
	EXPECT_EQ(wait_child(worker), 0, "worker exit status");
	close(iommufd);
}

static void in_two_processes(int (*worker)(int), void (*owner)(int, pid_t))
{
	int socks[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, socks))
		die("socketpair");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(socks[0]);
		test_child("shared_container (worker)");
		int r = worker(socks[1]);
		_exit(r == 0 ? test_finish() : r);
	}
	close(socks[1]);
	owner(socks[0], pid);
	close(socks[0]);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	printf("-- a type1 container passed to another process\n");
	in_two_processes(container_worker, container_owner);
	printf("-- an iommufd passed to another process\n");
	in_two_processes(iommufd_worker, iommufd_owner);
	return test_finish();
}
