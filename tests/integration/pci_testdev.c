/*
 * QEMU's pci-testdev (model "pci-testdev", devices/pci_testdev/) through the real daemon: the
 * cdev vfio0 bound to an iommufd; what vfio-pci reports for it (no RESET, an I/O BAR1 that is not
 * mappable, no INTx); the test headers of BAR0 by pread and through the mapping; selecting a
 * test and making `count` increase, by pwrite and by stores through the mapping; BAR1 (I/O) by
 * pread; and bad accesses at the BAR ends. Run with pci_testdev.toml.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client.h"

#define BAR(n) ((uint64_t)(n) << 40)
#define CFG BAR(VFIO_PCI_CONFIG_REGION_INDEX)
#define HDR_TEST 0
#define HDR_WIDTH 1
#define HDR_OFFSET 4
#define HDR_DATA 8
#define HDR_COUNT 12
#define HDR_NAME 16

static int dev;

static uint64_t rd(uint64_t off, size_t len)
{
	uint64_t v = 0;
	errno = 0;
	ssize_t n = pread(dev, &v, len, (off_t)off);
	if (n != (ssize_t)len)
		die("pread of %zu bytes at %#llx: %zd", len, (unsigned long long)off, n);
	return v;
}

static void wr(uint64_t off, uint64_t v, size_t len)
{
	errno = 0;
	ssize_t n = pwrite(dev, &v, len, (off_t)off);
	if (n != (ssize_t)len)
		die("pwrite of %zu bytes at %#llx: %zd", len, (unsigned long long)off, n);
}

static void read_name(uint64_t bar, char *out, size_t size)
{
	memset(out, 0, size);
	errno = 0;
	EXPECT_EQ(pread(dev, out, size - 1, (off_t)(bar + HDR_NAME)), size - 1, "pread of the name");
}

static struct vfio_region_info region(uint32_t index)
{
	struct vfio_region_info r = {.argsz = sizeof(r), .index = index};
	EXPECT_OK(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &r), "GET_REGION_INFO %u", index);
	return r;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	const int iommufd = open_node("iommu");
	dev = open_node("vfio/devices/vfio0");
	if (bind_iommufd(dev, iommufd) != 0)
		die("VFIO_DEVICE_BIND_IOMMUFD");

	/* What vfio-pci reports for a function without a reset method, pin or memory BAR1. */
	struct vfio_device_info info = {.argsz = sizeof(info)};
	EXPECT_OK(ioctl(dev, VFIO_DEVICE_GET_INFO, &info), "GET_INFO");
	EXPECT_EQ(info.flags, VFIO_DEVICE_FLAGS_PCI, "flags: PCI, no RESET");
	EXPECT_ERRNO(EINVAL, ioctl(dev, VFIO_DEVICE_RESET), "VFIO_DEVICE_RESET without a reset method");
	struct vfio_region_info r0 = region(VFIO_PCI_BAR0_REGION_INDEX);
	EXPECT_EQ(r0.size, 0x1000, "BAR0 size");
	EXPECT_EQ(r0.flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
				    VFIO_REGION_INFO_FLAG_MMAP, "BAR0 flags");
	struct vfio_region_info r1 = region(VFIO_PCI_BAR1_REGION_INDEX);
	EXPECT_EQ(r1.size, 0x100, "BAR1 size");
	EXPECT_EQ(r1.flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
		  "BAR1 (I/O) flags: no MMAP");
	struct vfio_irq_info intx = {.argsz = sizeof(intx), .index = VFIO_PCI_INTX_IRQ_INDEX};
	EXPECT_OK(ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &intx), "GET_IRQ_INFO INTx");
	EXPECT_EQ(intx.count, 0, "INTx count without an interrupt pin");
	EXPECT_EQ(rd(CFG + 0x04, 2), 0x0003, "command after the first open: I/O and memory on");

	/* No test selected: the header reads 0. */
	EXPECT_EQ(rd(BAR(0), 8), 0, "BAR0 before a test is selected");

	/* Test 0 (mmio-no-eventfd) by pwrite; its header by pread. */
	wr(BAR(0) + HDR_TEST, 0, 1);
	EXPECT_EQ(rd(BAR(0) + HDR_TEST, 1), 0, "test");
	EXPECT_EQ(rd(BAR(0) + HDR_WIDTH, 1), 1, "width");
	EXPECT_EQ(rd(BAR(0) + HDR_OFFSET, 4), 2048, "offset");
	EXPECT_EQ(rd(BAR(0) + HDR_DATA, 1), 0xfa, "data");
	EXPECT_EQ(rd(BAR(0) + HDR_COUNT, 4), 0, "count");
	char name[32];
	read_name(BAR(0), name, 16);
	EXPECT_EQ(strcmp(name, "mmio-no-eventfd"), 0, "name %s", name);
	for (int i = 0; i < 3; ++i)
		wr(BAR(0) + 2048, 0xfa, 1);
	wr(BAR(0) + 2048, 0xce, 1); /* other data: does not count */
	EXPECT_EQ(rd(BAR(0) + HDR_COUNT, 4), 3, "count after three matching writes");

	/* The mapping shows the same header, and a store through it is a write. */
	errno = 0;
	volatile uint8_t *map = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, dev,
				     (off_t)BAR(0));
	EXPECT_OK(map == MAP_FAILED ? -1 : 0, "mmap of BAR0");
	if (map != MAP_FAILED) {
		EXPECT_EQ(map[HDR_TEST], 0, "mapped test");
		EXPECT_EQ(*(volatile uint32_t *)(map + HDR_OFFSET), 2048, "mapped offset");
		EXPECT_EQ(*(volatile uint32_t *)(map + HDR_COUNT), 3, "mapped count");
		EXPECT_EQ(strcmp((const char *)map + HDR_NAME, "mmio-no-eventfd"), 0, "mapped name");
		map[2048] = 0xfa;
		EXPECT_EQ(rd(BAR(0) + HDR_COUNT, 4), 4, "count after a store through the mapping");
		EXPECT_EQ(*(volatile uint32_t *)(map + HDR_COUNT), 4, "mapped count after it");
		EXPECT_EQ(map[2048], 0, "the offset reads 0 again, as on QEMU");
		map[HDR_TEST] = 2; /* select test 2 through the mapping */
		EXPECT_EQ(rd(BAR(0) + HDR_TEST, 1), 2, "test selected through the mapping");
		EXPECT_EQ(strcmp((const char *)map + HDR_NAME, "mmio-datamatch-eventfd"), 0,
			  "mapped name of test 2");
		/* mmio-datamatch-eventfd: its ioeventfd takes a 1-byte 0xFA; a wider write counts. */
		wr(BAR(0) + 2050, 0xfa, 1);
		EXPECT_EQ(rd(BAR(0) + HDR_COUNT, 4), 0, "a write the ioeventfd takes");
		wr(BAR(0) + 2050, 0x00fa, 2);
		EXPECT_EQ(rd(BAR(0) + HDR_COUNT, 4), 1, "a 2-byte write reaches the device");
		EXPECT_EQ(*(volatile uint32_t *)(map + HDR_COUNT), 1, "mapped count");
		munmap((void *)map, 0x1000);
	}

	/* BAR1 (I/O): a test selected there is a portio test; its header by pread. */
	wr(BAR(1) + HDR_TEST, 1, 1);
	EXPECT_EQ(rd(BAR(1) + HDR_TEST, 1), 4, "BAR1 test");
	EXPECT_EQ(rd(BAR(1) + HDR_OFFSET, 4), 132, "BAR1 offset");
	EXPECT_EQ(rd(BAR(1) + HDR_DATA, 1), 0xce, "BAR1 data (wildcard)");
	read_name(BAR(1), name, 24);
	EXPECT_EQ(strcmp(name, "portio-wildcard-eventfd"), 0, "BAR1 name %s", name);
	EXPECT_EQ(rd(BAR(1), 8), rd(BAR(0), 8), "both BARs read the current test");
	wr(BAR(1) + 132, 0x00, 2); /* wildcard: a 2-byte write counts, whatever its data */
	wr(BAR(1) + 132, 0x12, 1); /* a 1-byte one goes to the ioeventfd */
	EXPECT_EQ(rd(BAR(1) + HDR_COUNT, 4), 1, "BAR1 count");

	/* Memory decoding off: BAR0 answers EIO; the I/O BAR is not gated by it. */
	wr(CFG + 0x04, 0x0001, 2);
	uint64_t v;
	EXPECT_ERRNO(EIO, pread(dev, &v, 4, (off_t)BAR(0)), "BAR0 with memory decoding off");
	EXPECT_EQ(rd(BAR(1) + HDR_TEST, 1), 4, "BAR1 with memory decoding off");
	wr(CFG + 0x04, 0x0003, 2);

	/* Bad input: the BAR ends, zero length, unaligned, hostile test numbers. */
	uint8_t buf[64];
	EXPECT_EQ(pread(dev, buf, 0, (off_t)BAR(0)), 0, "zero length");
	EXPECT_EQ(pread(dev, buf, 64, (off_t)(BAR(0) + 0xff9)), 7, "cut at BAR0's end");
	EXPECT_EQ(pwrite(dev, buf, 64, (off_t)(BAR(0) + 0xff9)), 7, "write cut at BAR0's end");
	EXPECT_EQ(pread(dev, buf, 64, (off_t)(BAR(1) + 0xfb)), 5, "cut at BAR1's end");
	EXPECT_ERRNO(EINVAL, pread(dev, buf, 1, (off_t)(BAR(0) + 0x1000)), "past BAR0");
	EXPECT_ERRNO(EINVAL, pwrite(dev, buf, 1, (off_t)(BAR(1) + 0x100)), "past BAR1");
	EXPECT_ERRNO(EINVAL, pread(dev, buf, 1, (off_t)BAR(2)), "BAR2 is empty");
	EXPECT_EQ(pread(dev, buf, 7, (off_t)(BAR(0) + 1)), 7, "unaligned");
	EXPECT_EQ(rd(BAR(0) + HDR_TEST, 1), 4, "still test 4");
	wr(BAR(0) + HDR_TEST, 0xffffffffffffffffull, 8); /* out of range: the test stops */
	EXPECT_EQ(rd(BAR(0), 8), 0, "no test after a hostile test number");
	wr(BAR(1) + HDR_TEST, 3, 1);
	EXPECT_EQ(rd(BAR(1), 8), 0, "no test after test number 3 on BAR1");

	close(dev);
	close(iommufd);
	return test_finish();
}
