/*
 * The device cdev's rules through the kernel (spec §5.10, §2.2):
 * - before a successful VFIO_DEVICE_BIND_IOMMUFD every other ioctl, known or not, and every
 *   read and write answer EINVAL;
 * - a bound device blocks its group: open of the group is EBUSY, and the other way round BIND is
 *   EBUSY while the group is open; a cdev that is only open blocks nothing;
 * - one bound fd per device: BIND through a second fd of the same cdev is EINVAL;
 * - after close, everything is as before.
 *
 *   cdev_errors NODE_DIR
 */
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "client.h"

#define CONFIG_OFFSET (7ULL << 40) /* VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) */

static void before_bind(void)
{
	printf("-- an open, unbound cdev grants nothing\n");
	int device = open_node("vfio/devices/vfio0");
	struct vfio_device_info info = {.argsz = sizeof(info)};
	struct vfio_region_info region = {.argsz = sizeof(region),
					  .index = VFIO_PCI_CONFIG_REGION_INDEX};
	struct vfio_irq_info irq = {.argsz = sizeof(irq)};
	struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof(attach), .pt_id = 1};
	struct vfio_device_detach_iommufd_pt detach = {.argsz = sizeof(detach)};
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_GET_INFO, &info), "GET_INFO before BIND");
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &region),
		     "GET_REGION_INFO before BIND");
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_GET_IRQ_INFO, &irq),
		     "GET_IRQ_INFO before BIND");
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_RESET), "RESET before BIND");
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach),
		     "ATTACH_IOMMUFD_PT before BIND");
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach),
		     "DETACH_IOMMUFD_PT before BIND");
	EXPECT_ERRNO(EINVAL, ioctl(device, _IO(VFIO_TYPE, 0x7e)), "an unknown ioctl before BIND");
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_GET_API_VERSION),
		     "a container ioctl on an unbound cdev");
	char buf[4];
	EXPECT_ERRNO(EINVAL, pread(device, buf, sizeof(buf), (off_t)CONFIG_OFFSET),
		     "pread of config space before BIND");
	EXPECT_ERRNO(EINVAL, pwrite(device, buf, sizeof(buf), (off_t)CONFIG_OFFSET),
		     "pwrite of config space before BIND");

	/* Only open, not bound: the group is free. */
	int group;
	EXPECT_OK(group = try_open_node("vfio/1"), "open the group while its cdev is only open");
	close(group);
	close(device);
}

static void bound_blocks_group(void)
{
	printf("-- a bound cdev and its group exclude each other\n");
	int iommufd = open_node("iommu");
	int device = open_node("vfio/devices/vfio0");
	int group = open_node("vfio/1");
	EXPECT_ERRNO(EBUSY, bind_iommufd(device, iommufd), "BIND while the group is open");
	close(group);
	EXPECT_OK(bind_iommufd_settled(device, iommufd), "BIND once the group is closed");

	EXPECT_ERRNO(EBUSY, try_open_node("vfio/1"), "open the group of a bound device");
	struct vfio_group_status status = {.argsz = sizeof(status)};
	int other_group = open_node("vfio/2");
	EXPECT_OK(ioctl(other_group, VFIO_GROUP_GET_STATUS, &status),
		  "GET_STATUS of another group");
	EXPECT_EQ(status.flags, VFIO_GROUP_FLAGS_VIABLE, "the other group is unaffected");
	close(other_group);

	int second = open_node("vfio/devices/vfio0");
	EXPECT_ERRNO(EINVAL, bind_iommufd(second, iommufd),
		     "BIND through a second fd of a bound device");
	EXPECT_ERRNO(EINVAL, ioctl(second, VFIO_DEVICE_RESET), "RESET through the unbound fd");
	char buf[2];
	EXPECT_ERRNO(EINVAL, pread(second, buf, sizeof(buf), (off_t)CONFIG_OFFSET),
		     "pread through the unbound fd");
	close(second);

	/* Bound, the first fd works. */
	struct vfio_device_info info = {.argsz = sizeof(info)};
	EXPECT_OK(ioctl(device, VFIO_DEVICE_GET_INFO, &info), "GET_INFO after BIND");
	uint16_t vendor = 0;
	EXPECT_EQ(pread(device, &vendor, sizeof(vendor), (off_t)CONFIG_OFFSET), sizeof(vendor),
		  "pread of the vendor id after BIND");
	EXPECT_EQ(vendor, 0x1b36, "vendor id");
	uint16_t probe = 0xffff;
	EXPECT_EQ(pwrite(device, &probe, sizeof(probe), (off_t)CONFIG_OFFSET), sizeof(probe),
		  "pwrite of the (read-only) vendor id");
	EXPECT_EQ(pread(device, &vendor, sizeof(vendor), (off_t)CONFIG_OFFSET), sizeof(vendor),
		  "pread of the vendor id again");
	EXPECT_EQ(vendor, 0x1b36, "the vendor id is read-only");
	EXPECT_ERRNO(ENOTTY, ioctl(device, VFIO_GROUP_GET_STATUS, &info),
		     "a group ioctl on a bound cdev (vfio-pci does not know it)");
	close(device);
	close(iommufd);
}

static void bind_errors_leave_no_trace(void)
{
	printf("-- a failed BIND leaves the device unbound\n");
	int device = open_node("vfio/devices/vfio1");
	int container = open_node("vfio/vfio");
	EXPECT_ERRNO(EBADFD, bind_iommufd(device, container), "BIND to a container fd");
	int group;
	EXPECT_OK(group = try_open_node("vfio/2"), "open the group after the failed BIND");
	if (group >= 0)
		close(group);
	struct vfio_device_info info = {.argsz = sizeof(info)};
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_GET_INFO, &info),
		     "GET_INFO after the failed BIND");
	close(container);
	close(device);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	before_bind();
	bound_blocks_group();
	bind_errors_leave_no_trace();
	return test_finish();
}
