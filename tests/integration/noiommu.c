/*
 * enable_unsafe_noiommu_mode through the kernel (Linux 7.3 drivers/vfio/group.c, container.c,
 * device_cdev.c; drivers/iommu/iommufd/vfio_compat.c). The built-in machine's 0000:00:06.0 sits
 * behind no IOMMU:
 *   on   (daemon --enable-unsafe-noiommu-mode): vfio/noiommu-0 and vfio/devices/noiommu-vfio5,
 *        CAP_SYS_RAWIO at open, SET_CONTAINER and SET_IOMMU(VFIO_NOIOMMU_IOMMU) (EPERM without
 *        it, checked by dropping it from the effective set), no mixing with IOMMU groups, the
 *        vfio-noiommu driver's ENOTTY, an iommufd in no-IOMMU mode, the cdev's BIND;
 *   off  (no flag): no node for the device, the cdev numbers close up, CHECK_EXTENSION(8) is 0;
 *   run  (under `vfio-emu run --enable-unsafe-noiommu-mode`, NODE_DIR /dev): GET_DEVICE_FD of the
 *        no-IOMMU group gives a working device fd, and sysfs says what DPDK looks for.
 *
 *   noiommu NODE_DIR on|off|run
 */
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "client.h"

#define NOIOMMU_BDF "0000:00:06.0"
#define CONFIG_OFFSET (7ULL << 40) /* VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) */

/* CAP_SYS_RAWIO in or out of the effective set (it stays permitted, so it can come back). */
static void set_rawio(int on)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) != 0)
		die("capget");
	if (on)
		data[0].effective |= 1u << CAP_SYS_RAWIO;
	else
		data[0].effective &= ~(1u << CAP_SYS_RAWIO);
	if (syscall(SYS_capset, &hdr, data) != 0)
		die("capset");
}

static int node_exists(const char *name)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", node_dir, name);
	return stat(path, &st) == 0;
}

static void mode_off(void)
{
	printf("-- enable_unsafe_noiommu_mode off\n");
	EXPECT_EQ(node_exists("vfio/noiommu-0"), 0, "no vfio/noiommu-0");
	EXPECT_EQ(node_exists("vfio/0"), 0, "no vfio/0");
	EXPECT_EQ(node_exists("vfio/devices/noiommu-vfio5"), 0, "no noiommu cdev");
	EXPECT_EQ(node_exists("vfio/devices/vfio5"), 0, "no cdev vfio5: the numbers close up");
	EXPECT_EQ(node_exists("vfio/devices/vfio4"), 1, "vfio4 is still there");
	int container = open_node("vfio/vfio");
	EXPECT_EQ(ioctl(container, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU), 0,
		  "CHECK_EXTENSION(VFIO_NOIOMMU_IOMMU) is 0");
	close(container);
}

static void container_path(void)
{
	printf("-- a container of the no-IOMMU group\n");
	int container = open_node("vfio/vfio");
	EXPECT_EQ(ioctl(container, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU), 1,
		  "an empty container answers CHECK_EXTENSION(VFIO_NOIOMMU_IOMMU) with 1");
	set_rawio(0);
	EXPECT_ERRNO(EPERM, try_open_node("vfio/noiommu-0"), "group open without CAP_SYS_RAWIO");
	EXPECT_ERRNO(EPERM, try_open_node("vfio/devices/noiommu-vfio5"),
		     "cdev open without CAP_SYS_RAWIO");
	set_rawio(1);
	int group = open_node_settled("vfio/noiommu-0");
	EXPECT_ERRNO(EBUSY, try_open_node("vfio/noiommu-0"), "a second open: EBUSY");
	set_rawio(0);
	EXPECT_ERRNO(EPERM, ioctl(group, VFIO_GROUP_SET_CONTAINER, &container),
		     "SET_CONTAINER without CAP_SYS_RAWIO");
	set_rawio(1);
	EXPECT_OK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), "SET_CONTAINER");
	int g1 = open_node_settled("vfio/1");
	EXPECT_ERRNO(EPERM, ioctl(g1, VFIO_GROUP_SET_CONTAINER, &container),
		     "an IOMMU group cannot join a no-IOMMU container");
	close(g1);
	EXPECT_EQ(ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 0,
		  "with a no-IOMMU group, type1 is not allowed");
	EXPECT_ERRNO(ENODEV, ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU),
		     "SET_IOMMU(TYPE1v2): ENODEV");
	set_rawio(0);
	EXPECT_ERRNO(EPERM, ioctl(container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU),
		     "SET_IOMMU(VFIO_NOIOMMU_IOMMU) without CAP_SYS_RAWIO");
	set_rawio(1);
	EXPECT_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU), "SET_IOMMU(VFIO_NOIOMMU_IOMMU)");
	struct vfio_iommu_type1_info info = {.argsz = sizeof(info)};
	EXPECT_ERRNO(ENOTTY, ioctl(container, VFIO_IOMMU_GET_INFO, &info),
		     "vfio-noiommu serves no GET_INFO");
	struct vfio_iommu_type1_dma_map map = {.argsz = sizeof(map)};
	EXPECT_ERRNO(ENOTTY, ioctl(container, VFIO_IOMMU_MAP_DMA, &map),
		     "vfio-noiommu serves no MAP_DMA");
	/* Outside `vfio-emu run` the daemon cannot create the fd (README). */
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, NOIOMMU_BDF),
		     "GET_DEVICE_FD outside run: every check passed, EOPNOTSUPP");
	close(group);
	close(container);
}

static void iommufd_paths(void)
{
	printf("-- an iommufd as the container, and the cdev\n");
	int iommufd = open_node("iommu");
	int group = open_node_settled("vfio/noiommu-0");
	EXPECT_OK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &iommufd), "SET_CONTAINER with an iommufd");
	EXPECT_EQ(ioctl(iommufd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 0,
		  "no-IOMMU mode: TYPE1v2 answers 0");
	EXPECT_ERRNO(EINVAL, ioctl(iommufd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU),
		     "no-IOMMU mode: SET_IOMMU(TYPE1v2) EINVAL");
	EXPECT_OK(ioctl(iommufd, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU), "SET_IOMMU(VFIO_NOIOMMU_IOMMU)");
	int g1 = open_node_settled("vfio/1");
	EXPECT_ERRNO(EINVAL, ioctl(g1, VFIO_GROUP_SET_CONTAINER, &iommufd),
		     "an IOMMU group cannot join an iommufd in no-IOMMU mode");
	close(g1);
	close(group);
	close(iommufd);

	iommufd = open_node("iommu");
	int device = open_node("vfio/devices/noiommu-vfio5");
	EXPECT_OK(bind_iommufd_settled(device, iommufd), "BIND of the no-IOMMU cdev");
	struct vfio_device_info dinfo = {.argsz = sizeof(dinfo)};
	EXPECT_OK(ioctl(device, VFIO_DEVICE_GET_INFO, &dinfo), "GET_INFO after BIND");
	unsigned short vendor = 0;
	EXPECT_EQ(pread(device, &vendor, 2, CONFIG_OFFSET), 2, "config space read");
	EXPECT_EQ(vendor, 0x1b36, "vendor id");
	EXPECT_ERRNO(EBUSY, try_open_node("vfio/noiommu-0"), "the group while the cdev is bound");
	close(device);
	close(iommufd);
}

static void under_run(void)
{
	printf("-- GET_DEVICE_FD of a no-IOMMU group under vfio-emu run\n");
	char buf[16] = "";
	int fd = open("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", O_RDONLY);
	EXPECT_OK(fd, "the module parameter file");
	if (fd >= 0) {
		EXPECT_EQ(read(fd, buf, sizeof(buf) - 1) > 0 && buf[0] == 'Y', 1, "it says Y");
		close(fd);
	}
	fd = open("/sys/kernel/iommu_groups/0/name", O_RDONLY);
	EXPECT_OK(fd, "iommu_groups/0/name");
	if (fd >= 0) {
		memset(buf, 0, sizeof(buf));
		EXPECT_EQ(read(fd, buf, sizeof(buf) - 1) == 13 && strcmp(buf, "vfio-noiommu\n") == 0, 1,
			  "it says vfio-noiommu");
		close(fd);
	}
	int container = open_node("vfio/vfio");
	int group = open_node("vfio/noiommu-0");
	EXPECT_OK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), "SET_CONTAINER");
	EXPECT_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU), "SET_IOMMU(NOIOMMU)");
	int device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, NOIOMMU_BDF);
	EXPECT_OK(device, "GET_DEVICE_FD");
	if (device >= 0) {
		EXPECT_EQ(fcntl(device, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "the device fd is O_CLOEXEC");
		struct vfio_device_info dinfo = {.argsz = sizeof(dinfo)};
		EXPECT_OK(ioctl(device, VFIO_DEVICE_GET_INFO, &dinfo), "GET_INFO");
		EXPECT_EQ(dinfo.flags & VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_PCI, "a PCI device");
		unsigned short vendor = 0;
		EXPECT_EQ(pread(device, &vendor, 2, CONFIG_OFFSET), 2, "config space read");
		EXPECT_EQ(vendor, 0x1b36, "vendor id");
		EXPECT_ERRNO(EBUSY, ioctl(group, VFIO_GROUP_UNSET_CONTAINER),
			     "the device fd holds the container");
		close(device);
	}
	close(group);
	close(container);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	const char *mode = argc > 2 ? argv[2] : "on";
	if (strcmp(mode, "off") == 0) {
		mode_off();
	} else if (strcmp(mode, "run") == 0) {
		under_run();
	} else {
		container_path();
		iommufd_paths();
	}
	return test_finish();
}
