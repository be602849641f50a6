/*
 * ioat_memcpy: a user-space driver of an Intel I/OAT DMA engine (Crystal Beach DMA 3.x) through
 * VFIO's device cdev and iommufd: map memory for the device, program a memcpy descriptor, ring
 * the doorbell, wait for the completion interrupt (MSI-X vector 0 on an eventfd), check the copy.
 *
 *   ioat_memcpy [DIR [CDEV [--fault | --pread]]]
 *
 *   DIR      where the nodes are: DIR/vfio/devices/CDEV and DIR/iommu (default /dev)
 *   CDEV     the ioat device's cdev name (default vfio4, the built-in machine's)
 *   --fault  copy to an IOVA that is not mapped: the IOMMU refuses the write, the channel halts
 *            with CHANERR's destination-address bit, and `vfio-emu faults` shows the fault
 *   --pread  reach the registers with pread/pwrite even where BAR0 can be mapped
 *
 * The registers are loads and stores to BAR0 mapped with mmap where the region says it can be
 * (VFIO_REGION_INFO_FLAG_MMAP), as a driver does; otherwise pread/pwrite of the BAR0 region,
 * which every VFIO device supports.
 * Exits 0 on success; on failure names the step and the error and exits 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfio_emu_compat.h"

/* Registers of BAR0 (Linux drivers/dma/ioat/registers.h); channel 0 is at 0x80. */
#define IOAT_CHANCNT 0x00
#define IOAT_INTRCTRL 0x03
#define IOAT_CBVER 0x08
#define IOAT_INTRCTRL_MASTER_INT_EN 0x01
#define IOAT_INTRCTRL_MSIX_VECTOR_CONTROL 0x08
#define CHAN 0x80
#define IOAT_CHANCTRL (CHAN + 0x00)
#define IOAT_CHANCMD (CHAN + 0x04)
#define IOAT_DMACOUNT (CHAN + 0x06)
#define IOAT_CHANSTS (CHAN + 0x08)
#define IOAT_CHAINADDR (CHAN + 0x10)
#define IOAT_CHANCMP (CHAN + 0x18)
#define IOAT_CHANERR (CHAN + 0x28)
#define IOAT_CHANCTRL_INT_REARM 0x0001
#define IOAT_CHANCTRL_ERR_COMPLETION_EN 0x0004
#define IOAT_CHANCTRL_ANY_ERR_ABORT_EN 0x0008
#define IOAT_CHANCTRL_ERR_INT_EN 0x0010
#define IOAT_CHANCMD_RESET 0x20
#define IOAT_CHANSTS_STATUS 0x7
#define IOAT_CHANSTS_HALTED 0x3

/* The 64-byte memcpy descriptor (drivers/dma/ioat/hw.h). */
struct ioat_dma_descriptor {
	uint32_t size;
	uint32_t ctl; /* bit 0 int_en, bit 3 compl_write; op (31:24) 0 = copy */
	uint64_t src_addr;
	uint64_t dst_addr;
	uint64_t next;
	uint64_t rsv1, rsv2, user1, user2;
};
#define DESC_INT_EN 0x1
#define DESC_COMPL_WRITE 0x8

#define COPY_SIZE (64 * 1024)
#define IOVA_SRC 0x100000
#define IOVA_DST 0x200000
#define IOVA_DESC 0x300000
#define IOVA_COMPL 0x400000
#define IOVA_UNMAPPED 0x900000

static int dev_fd;
static uint64_t bar0;         /* BAR0's offset in the device fd */
static volatile uint8_t *mmio; /* BAR0 mapped, or NULL: pread/pwrite */

static void fail(const char *what)
{
	fprintf(stderr, "ioat_memcpy: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t reg_read(uint64_t off, size_t size)
{
	uint64_t v = 0;
	if (mmio) {
		switch (size) {
		case 1: return *(volatile uint8_t *)(mmio + off);
		case 2: return *(volatile uint16_t *)(mmio + off);
		case 4: return *(volatile uint32_t *)(mmio + off);
		default: return *(volatile uint64_t *)(mmio + off);
		}
	}
	if (pread(dev_fd, &v, size, (off_t)(bar0 + off)) != (ssize_t)size)
		fail("pread BAR0");
	return v;
}

static void reg_write(uint64_t off, uint64_t v, size_t size)
{
	if (mmio) {
		switch (size) {
		case 1: *(volatile uint8_t *)(mmio + off) = (uint8_t)v; return;
		case 2: *(volatile uint16_t *)(mmio + off) = (uint16_t)v; return;
		case 4: *(volatile uint32_t *)(mmio + off) = (uint32_t)v; return;
		default: *(volatile uint64_t *)(mmio + off) = v; return;
		}
	}
	if (pwrite(dev_fd, &v, size, (off_t)(bar0 + off)) != (ssize_t)size)
		fail("pwrite BAR0");
}

static void *map_for_device(int iommufd, uint32_t ioas, uint64_t iova, size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fail("mmap");
	memset(p, 0, size);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)p,
		.length = size,
		.iova = iova,
	};
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		fail("IOMMU_IOAS_MAP");
	return p;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/dev";
	const char *cdev = argc > 2 ? argv[2] : "vfio4";
	const int provoke_fault = argc > 3 && strcmp(argv[3], "--fault") == 0;
	const int use_pread = argc > 3 && strcmp(argv[3], "--pread") == 0;
	char path[4096];

	/* The device, bound to an iommufd and attached to an I/O address space. */
	snprintf(path, sizeof(path), "%s/iommu", dir);
	int iommufd = open(path, O_RDWR | O_CLOEXEC);
	if (iommufd < 0)
		fail(path);
	snprintf(path, sizeof(path), "%s/vfio/devices/%s", dir, cdev);
	dev_fd = open(path, O_RDWR | O_CLOEXEC);
	if (dev_fd < 0)
		fail(path);
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	if (ioctl(dev_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		fail("VFIO_DEVICE_BIND_IOMMUFD");
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		fail("IOMMU_IOAS_ALLOC");
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach),
							.pt_id = alloc.out_ioas_id };
	if (ioctl(dev_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT");

	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR0_REGION_INDEX };
	if (ioctl(dev_fd, VFIO_DEVICE_GET_REGION_INFO, &bar))
		fail("VFIO_DEVICE_GET_REGION_INFO");
	bar0 = bar.offset;
	if ((bar.flags & VFIO_REGION_INFO_FLAG_MMAP) && !use_pread) {
		void *m = mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev_fd,
			       (off_t)bar.offset);
		if (m == MAP_FAILED)
			fail("mmap BAR0");
		mmio = m;
	}
	printf("BAR0: %#llx bytes, registers by %s; CB version %#x, %u channel(s)\n",
	       (unsigned long long)bar.size, mmio ? "mmap" : "pread/pwrite",
	       (unsigned)reg_read(IOAT_CBVER, 1), (unsigned)(reg_read(IOAT_CHANCNT, 1) & 0x1f));

	/* MSI-X vector 0 (channel 0's completion interrupt) on an eventfd. */
	int efd = eventfd(0, EFD_CLOEXEC);
	if (efd < 0)
		fail("eventfd");
	char irq_buf[sizeof(struct vfio_irq_set) + sizeof(int)];
	struct vfio_irq_set *irq = (struct vfio_irq_set *)irq_buf;
	irq->argsz = sizeof(irq_buf);
	irq->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	irq->index = VFIO_PCI_MSIX_IRQ_INDEX;
	irq->start = 0;
	irq->count = 1;
	memcpy(irq->data, &efd, sizeof(efd));
	if (ioctl(dev_fd, VFIO_DEVICE_SET_IRQS, irq))
		fail("VFIO_DEVICE_SET_IRQS (MSI-X)");

	/* Memory the device reads and writes. */
	uint8_t *src = map_for_device(iommufd, alloc.out_ioas_id, IOVA_SRC, COPY_SIZE);
	uint8_t *dst = map_for_device(iommufd, alloc.out_ioas_id, IOVA_DST, COPY_SIZE);
	struct ioat_dma_descriptor *desc = map_for_device(iommufd, alloc.out_ioas_id, IOVA_DESC,
							   4096);
	uint64_t *compl = map_for_device(iommufd, alloc.out_ioas_id, IOVA_COMPL, 4096);
	for (size_t i = 0; i < COPY_SIZE; i++)
		src[i] = (uint8_t)(i * 13 + 7);

	/* Reset channel 0, then enable its interrupt and error reporting. */
	reg_write(IOAT_CHANCMD, IOAT_CHANCMD_RESET, 1);
	/* As Linux's drivers: poll with a sleep, give up after 5 s. */
	for (int i = 0; reg_read(IOAT_CHANCMD, 1) & IOAT_CHANCMD_RESET; i++) {
		if (i > 5000)
			fail("channel reset does not finish");
		usleep(1000);
	}
	reg_write(IOAT_INTRCTRL, IOAT_INTRCTRL_MASTER_INT_EN | IOAT_INTRCTRL_MSIX_VECTOR_CONTROL, 1);
	reg_write(IOAT_CHANCTRL,
		  IOAT_CHANCTRL_INT_REARM | IOAT_CHANCTRL_ERR_COMPLETION_EN |
			  IOAT_CHANCTRL_ANY_ERR_ABORT_EN | IOAT_CHANCTRL_ERR_INT_EN,
		  2);
	reg_write(IOAT_CHANCMP, IOVA_COMPL, 8);

	/* One memcpy descriptor, linked to itself; the doorbell counts one. */
	desc->size = COPY_SIZE;
	desc->ctl = DESC_INT_EN | DESC_COMPL_WRITE;
	desc->src_addr = IOVA_SRC;
	desc->dst_addr = provoke_fault ? IOVA_UNMAPPED : IOVA_DST;
	desc->next = IOVA_DESC;
	reg_write(IOAT_CHAINADDR, IOVA_DESC, 8);
	reg_write(IOAT_DMACOUNT, 1, 2);

	struct pollfd p = { .fd = efd, .events = POLLIN };
	int ready = poll(&p, 1, 10000);
	if (ready < 0)
		fail("poll");
	if (ready == 0) {
		errno = ETIMEDOUT;
		fail("waiting for the completion interrupt");
	}
	uint64_t count;
	if (read(efd, &count, sizeof(count)) != sizeof(count))
		fail("read eventfd");

	const uint64_t chansts = reg_read(IOAT_CHANSTS, 8);
	const uint32_t chanerr = (uint32_t)reg_read(IOAT_CHANERR, 4);
	printf("interrupt; CHANSTS %#llx, CHANERR %#x, completion %#llx\n",
	       (unsigned long long)chansts, chanerr, (unsigned long long)*compl);
	if (provoke_fault) {
		if ((chansts & IOAT_CHANSTS_STATUS) != IOAT_CHANSTS_HALTED || chanerr == 0) {
			fprintf(stderr, "ioat_memcpy: the channel did not halt on the fault\n");
			return 1;
		}
		printf("the IOMMU refused the write to %#x: channel halted (see `vfio-emu faults`)\n",
		       IOVA_UNMAPPED);
		return 0;
	}
	if ((chansts & IOAT_CHANSTS_STATUS) == IOAT_CHANSTS_HALTED || chanerr != 0) {
		fprintf(stderr, "ioat_memcpy: the channel halted\n");
		return 1;
	}
	if ((*compl & ~0x3fULL) != IOVA_DESC || memcmp(src, dst, COPY_SIZE) != 0) {
		fprintf(stderr, "ioat_memcpy: the copy or its completion write is wrong\n");
		return 1;
	}
	printf("copied %u bytes through the IOMMU: ok\n", COPY_SIZE);
	return 0;
}
