/*
 * Interrupts of a device cdev through the kernel (VFIO_DEVICE_SET_IRQS), the way a user-space
 * driver tests its interrupt path without hardware:
 * - bind the cdev, create an eventfd, make it the INTx trigger (DATA_EVENTFD | ACTION_TRIGGER);
 *   the daemon fetches its own copy of the eventfd from this process;
 * - fire it with the loopback (DATA_NONE | ACTION_TRIGGER, DATA_BOOL) and read the count here;
 * - what is not an eventfd (a pipe, a closed fd) is EINVAL / EBADF, as in Linux;
 * - disable INTx (DATA_NONE, count 0): the loopback is EINVAL again and nothing more arrives;
 * - the request eventfd the same way, and closing the device releases it;
 * - VFIO_DEVICE_FEATURE: the generic checks and the features the device has;
 * - VFIO_GROUP_GET_DEVICE_FD accepts spaces after the device name, as Linux does.
 *
 *   device_irqs NODE_DIR
 */
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "client.h"

/* VFIO_DEVICE_SET_IRQS with `data_len` bytes of `data` after the header. */
static int set_irqs_data(int device, uint32_t flags, uint32_t index, uint32_t start,
			 uint32_t count, const void *data, size_t data_len)
{
	unsigned char buf[sizeof(struct vfio_irq_set) + 8];
	struct vfio_irq_set hdr = {
		.argsz = (uint32_t)(sizeof(hdr) + data_len),
		.flags = flags,
		.index = index,
		.start = start,
		.count = count,
	};
	memcpy(buf, &hdr, sizeof(hdr));
	memcpy(buf + sizeof(hdr), data, data_len);
	return ioctl(device, VFIO_DEVICE_SET_IRQS, buf);
}

/* The same with one s32 (an eventfd) of data. */
static int set_irqs(int device, uint32_t flags, uint32_t index, uint32_t start, uint32_t count,
		    int32_t data)
{
	return set_irqs_data(device, flags, index, start, count, &data, sizeof(data));
}

/* The eventfd's count, reset to 0 (0 if nothing was signalled: the eventfd is non-blocking). */
static uint64_t take(int efd)
{
	uint64_t v = 0;
	return read(efd, &v, sizeof(v)) == sizeof(v) ? v : 0;
}

static void intx(int device)
{
	printf("-- INTx through an eventfd of this process\n");
	struct vfio_irq_info info = {.argsz = sizeof(info), .index = VFIO_PCI_INTX_IRQ_INDEX};
	EXPECT_OK(ioctl(device, VFIO_DEVICE_GET_IRQ_INFO, &info), "GET_IRQ_INFO INTx");
	EXPECT_EQ(info.count, 1, "INTx count");
	EXPECT_EQ(info.flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
		  "INTx flags");

	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		die("eventfd");
	const uint32_t eventfd_trigger = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	const uint32_t none_trigger = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;

	EXPECT_ERRNO(EINVAL, set_irqs(device, none_trigger, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, 0),
		     "loopback before INTx is enabled");
	int pipefd[2];
	if (pipe(pipefd))
		die("pipe");
	EXPECT_ERRNO(EINVAL, set_irqs(device, eventfd_trigger, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, pipefd[0]),
		     "a pipe as the INTx trigger");
	close(pipefd[0]);
	EXPECT_ERRNO(EBADF, set_irqs(device, eventfd_trigger, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, pipefd[0]),
		     "a closed fd as the INTx trigger");
	close(pipefd[1]);
	EXPECT_ERRNO(EINVAL, set_irqs(device, eventfd_trigger, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, efd),
		     "MSI on a device without an MSI capability");
	EXPECT_ERRNO(ENOTTY, set_irqs(device, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, 0),
		     "no ACTION_ flag");

	EXPECT_OK(set_irqs(device, eventfd_trigger, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, efd),
		  "set the eventfd as the INTx trigger");
	EXPECT_OK(set_irqs(device, none_trigger, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, 0),
		  "trigger INTx with DATA_NONE");
	EXPECT_EQ(take(efd), 1, "the eventfd counted one interrupt");
	const uint32_t bool_trigger = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
	const uint8_t yes = 1, no = 0;
	EXPECT_OK(set_irqs_data(device, bool_trigger, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &yes, 1),
		  "trigger INTx with DATA_BOOL true");
	EXPECT_OK(set_irqs_data(device, bool_trigger, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &no, 1),
		  "DATA_BOOL false");
	EXPECT_EQ(take(efd), 1, "one more, for the true one only");
	EXPECT_OK(set_irqs(device, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
			   VFIO_PCI_INTX_IRQ_INDEX, 0, 1, 0),
		  "mask INTx");
	EXPECT_OK(set_irqs(device, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
			   VFIO_PCI_INTX_IRQ_INDEX, 0, 1, 0),
		  "unmask INTx");

	EXPECT_OK(set_irqs(device, none_trigger, VFIO_PCI_INTX_IRQ_INDEX, 0, 0, 0), "disable INTx");
	EXPECT_ERRNO(EINVAL, set_irqs(device, none_trigger, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, 0),
		     "loopback after INTx is disabled");
	EXPECT_EQ(take(efd), 0, "nothing after the disable");
	close(efd);
}

static void req(int device)
{
	printf("-- the request eventfd\n");
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		die("eventfd");
	const uint32_t none_trigger = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
	EXPECT_ERRNO(EINVAL, set_irqs(device, none_trigger, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, 0),
		     "REQ loopback without an eventfd");
	EXPECT_OK(set_irqs(device, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
			   VFIO_PCI_REQ_IRQ_INDEX, 0, 1, efd),
		  "set the REQ eventfd");
	EXPECT_OK(set_irqs(device, none_trigger, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, 0), "REQ loopback");
	EXPECT_EQ(take(efd), 1, "the REQ eventfd counted one");
	close(efd);
}

static void features(int device)
{
	printf("-- VFIO_DEVICE_FEATURE\n");
	struct vfio_device_feature f = {.argsz = 4,
					.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION};
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_FEATURE, &f), "argsz 4");
	f.argsz = sizeof(f);
	f.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIGRATION;
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_FEATURE, &f), "GET and SET without PROBE");
	f.flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION;
	EXPECT_ERRNO(ENOTTY, ioctl(device, VFIO_DEVICE_FEATURE, &f), "PROBE migration");
	f.flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
		  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
	EXPECT_OK(ioctl(device, VFIO_DEVICE_FEATURE, &f), "PROBE low power entry");
	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
	EXPECT_OK(ioctl(device, VFIO_DEVICE_FEATURE, &f), "enter low power");
	EXPECT_ERRNO(EINVAL, ioctl(device, VFIO_DEVICE_FEATURE, &f), "enter low power twice");
	f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
	EXPECT_OK(ioctl(device, VFIO_DEVICE_FEATURE, &f), "leave low power");
}

static void device_name(void)
{
	printf("-- GET_DEVICE_FD: spaces after the name\n");
	int group;
	int container = open_type1("2", &group);
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:02.0  "),
		     "\"0000:00:02.0  \" names the device (the daemon cannot create the fd)");
	EXPECT_ERRNO(EINVAL, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:02.0 vf_token=x"),
		     "a bad vf_token");
	EXPECT_ERRNO(ENODEV, ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:02.0x"),
		     "another name");
	close(group);
	close(container);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	int iommufd = open_node("iommu");
	int device = open_node("vfio/devices/vfio0");
	EXPECT_ERRNO(EINVAL, set_irqs(device, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
				      VFIO_PCI_INTX_IRQ_INDEX, 0, 1, 0),
		     "SET_IRQS before BIND");
	if (bind_iommufd(device, iommufd))
		die("VFIO_DEVICE_BIND_IOMMUFD");
	intx(device);
	req(device);
	features(device);
	close(device);
	close(iommufd);
	device_name();
	return test_finish();
}
