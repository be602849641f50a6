#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/core_fuzzer.cc (tests/fuzz/corpus/) and its dictionary.

    tests/fuzz/make_corpus.py [OUTDIR]      (default: the corpus/ directory next to this script)

Each seed is one complete flow a real program would run (type1, type1 v1 with an emulated
group, sPAPR v1 and v2, iommufd through the cdev, the iommufd VFIO compat layer, the group path
of a device, regions and interrupts, IOMMU_OPTION), written in the fuzzer's input format
(tests/fuzz/README.md) so that mutations start from deep states. Command numbers and struct
layouts come from tests/abi/uapi.golden, the committed record of the ABI, so a seed cannot
disagree with the emulator's numbers.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "abi", "uapi.golden")

# The pretend caller of core_fuzzer.cc.
ARG_BASE = 0x7F0000000000
RW_BASE = 0x10000000
RO_BASE = 0x20000000
FD_FOREIGN = 20
FD_EVENTFD = 21
K4, M1, M2 = 0x1000, 1 << 20, 2 << 20
DDW_START = 1 << 59

# Nodes of the fuzzer's own topology, in Emulator::nodes() order.
N_CONTAINER = 0
N_GROUP = {g: g for g in range(1, 8)}       # vfio/1 .. vfio/7
N_CDEV = {i: 8 + i for i in range(8)}        # vfio/devices/vfio0 .. vfio7
N_IOMMU = 16

# Linux uAPI constants the seeds use (include/uapi/linux/vfio.h, iommufd.h).
VFIO_TYPE1_IOMMU, VFIO_SPAPR_TCE_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU = 1, 2, 3, 7
DMA_RW = 3
DMA_MAP_VADDR = 4
UNMAP_ALL, UNMAP_VADDR = 2, 4
IOAS_FIXED, IOAS_WRITE, IOAS_READ = 1, 2, 4
IRQ_DATA_NONE, IRQ_DATA_BOOL, IRQ_DATA_EVENTFD = 1, 2, 4
IRQ_ACTION_MASK, IRQ_ACTION_UNMASK, IRQ_ACTION_TRIGGER = 8, 16, 32
FEATURE_SET = 1 << 17
FEATURE_LOW_POWER_ENTRY, FEATURE_LOW_POWER_EXIT = 3, 5
DIRTY_START = 1
EEH_PE_GET_STATE, EEH_PE_INJECT_ERR = 2, 8
OPTION_RLIMIT_MODE, OPTION_HUGE_PAGES = 0, 1
OPTION_SET, OPTION_GET = 0, 1


def load_golden():
    commands, structs, current = {}, {}, None
    with open(GOLDEN) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "command":
                commands.setdefault(w[1], int(w[3], 16))
            elif w[0] == "struct":
                current = structs[w[1]] = {"size": int(w[3]), "members": {}}
            elif current is not None and len(w) == 5 and w[1] == "offset":
                current["members"][w[0].rstrip("[]")] = (int(w[2]), int(w[4]))
    return commands, structs


CMD, STRUCTS = load_golden()


def pack(name, **fields):
    """The struct `name` with `fields` set and everything else zero."""
    s = STRUCTS[name]
    buf = bytearray(s["size"])
    for field, value in fields.items():
        off, size = s["members"][field]
        buf[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return bytes(buf)


class Seed:
    """Builds one input: a configuration byte, then ops (see core_fuzzer.cc)."""

    def __init__(self, config=0):
        self.b = bytearray([config])
        self.slots = []  # node of each slot, slot i is fd 3 + i

    def open(self, node):
        self.b += bytes([0, node])
        self.slots.append(node)
        return len(self.slots) - 1

    def fd(self, slot):
        return 3 + slot

    def close(self, slot):
        self.b += bytes([1, slot])

    def ioctl_value(self, slot, name, value=0):
        self.b += bytes([3, slot, 0xFF]) + struct.pack("<I", CMD[name]) + bytes([0])
        self.b += struct.pack("<Q", value)

    def ioctl(self, slot, name, data, at_end=False):
        """A struct (bytes) at the start of the argument window (or ending at its end)."""
        self.b += bytes([3, slot, 0xFF]) + struct.pack("<I", CMD[name])
        self.b += bytes([2 if at_end else 1]) + struct.pack("<H", len(data)) + data

    def pread(self, slot, index, pos, length):
        self.b += bytes([4, slot, 0, index]) + struct.pack("<HH", pos, length)

    def pwrite(self, slot, index, pos, data):
        self.b += bytes([4, slot, 1, index]) + struct.pack("<HH", pos, len(data)) + data

    def caller(self, other_pid=False, root=False):
        self.b += bytes([5, int(other_pid) | (int(root) << 1)])

    def env(self, limit_index, caps):
        self.b += bytes([6, limit_index, caps])

    def check(self):
        self.b += bytes([7, 0, 0])

    def raise_irq(self, device, index, vector=0):
        self.b += bytes([8, device, index, vector])


def int_arg(v):
    return struct.pack("<i", v)


def type1_v2():
    s = Seed(0)
    c, g1, g3 = s.open(N_CONTAINER), s.open(N_GROUP[1]), s.open(N_GROUP[3])
    s.ioctl_value(c, "VFIO_CHECK_EXTENSION", VFIO_TYPE1v2_IOMMU)
    s.ioctl(g1, "VFIO_GROUP_GET_STATUS", pack("vfio_group_status", argsz=8))
    s.ioctl(g1, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(c)))
    s.ioctl_value(c, "VFIO_SET_IOMMU", VFIO_TYPE1v2_IOMMU)
    s.ioctl(c, "VFIO_IOMMU_GET_INFO", pack("vfio_iommu_type1_info", argsz=256) + bytes(232))
    s.ioctl(c, "VFIO_IOMMU_MAP_DMA", pack("vfio_iommu_type1_dma_map", argsz=32, flags=DMA_RW,
                                          vaddr=RW_BASE, iova=0x100000, size=M2))
    s.ioctl(c, "VFIO_IOMMU_MAP_DMA", pack("vfio_iommu_type1_dma_map", argsz=32, flags=1,
                                          vaddr=RO_BASE, iova=0x40000000, size=4 * M1))
    s.ioctl(c, "VFIO_IOMMU_DIRTY_PAGES", pack("vfio_iommu_type1_dirty_bitmap", argsz=8,
                                              flags=DIRTY_START))
    s.ioctl(g3, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(c)))  # dmar1: a second domain, replayed
    s.check()
    s.ioctl(c, "VFIO_IOMMU_UNMAP_DMA", pack("vfio_iommu_type1_dma_unmap", argsz=24,
                                            iova=0x100000, size=M2))
    s.ioctl(c, "VFIO_IOMMU_UNMAP_DMA", pack("vfio_iommu_type1_dma_unmap", argsz=24,
                                            flags=UNMAP_VADDR, iova=0x40000000, size=4 * M1))
    s.ioctl(c, "VFIO_IOMMU_MAP_DMA", pack("vfio_iommu_type1_dma_map", argsz=32, flags=DMA_MAP_VADDR,
                                          vaddr=RW_BASE + M2, iova=0x40000000, size=4 * M1))
    s.ioctl(g1, "VFIO_GROUP_GET_DEVICE_FD", b"0000:00:01.0\0")
    s.ioctl(g1, "VFIO_GROUP_UNSET_CONTAINER", b"")
    return s


def type1_v1_emulated():
    s = Seed(0x10)  # dma_entry_limit 8
    c, g7, g2 = s.open(N_CONTAINER), s.open(N_GROUP[7]), s.open(N_GROUP[2])
    s.ioctl(g7, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(c)))
    s.ioctl_value(c, "VFIO_SET_IOMMU", VFIO_TYPE1_IOMMU)
    for i in range(3):
        s.ioctl(c, "VFIO_IOMMU_MAP_DMA", pack("vfio_iommu_type1_dma_map", argsz=32,
                                              flags=DMA_RW, vaddr=RW_BASE + i * M2,
                                              iova=0x200000 * (i + 1) + K4, size=M2))
    s.ioctl(g2, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(c)))  # pins what was only recorded
    s.ioctl(c, "VFIO_IOMMU_UNMAP_DMA", pack("vfio_iommu_type1_dma_unmap", argsz=24,
                                            iova=0x201000, size=0x1000))
    s.ioctl(c, "VFIO_IOMMU_UNMAP_DMA", pack("vfio_iommu_type1_dma_unmap", argsz=24,
                                            flags=UNMAP_ALL))
    s.close(g2)
    return s


def spapr_v2():
    s = Seed(0)
    c, g4, g5 = s.open(N_CONTAINER), s.open(N_GROUP[4]), s.open(N_GROUP[5])
    s.ioctl(g4, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(c)))
    s.ioctl(g5, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(c)))
    s.ioctl_value(c, "VFIO_SET_IOMMU", VFIO_SPAPR_TCE_v2_IOMMU)
    s.ioctl(c, "VFIO_IOMMU_SPAPR_TCE_GET_INFO", pack("vfio_iommu_spapr_tce_info", argsz=32))
    s.ioctl(c, "VFIO_IOMMU_SPAPR_REGISTER_MEMORY",
            pack("vfio_iommu_spapr_register_memory", argsz=24, vaddr=RW_BASE, size=4 * M1))
    s.ioctl(c, "VFIO_IOMMU_SPAPR_TCE_CREATE",
            pack("vfio_iommu_spapr_tce_create", argsz=40, page_shift=12, window_size=16 * M1,
                 levels=2))
    s.ioctl(c, "VFIO_IOMMU_MAP_DMA", pack("vfio_iommu_type1_dma_map", argsz=32, flags=DMA_RW,
                                          vaddr=RW_BASE, iova=DDW_START, size=M1))
    s.ioctl(c, "VFIO_IOMMU_MAP_DMA", pack("vfio_iommu_type1_dma_map", argsz=32, flags=DMA_RW,
                                          vaddr=RW_BASE + M1, iova=0x1000, size=M1))
    s.check()
    s.ioctl(c, "VFIO_EEH_PE_OP", pack("vfio_eeh_pe_op", argsz=40, op=EEH_PE_INJECT_ERR))
    s.ioctl(c, "VFIO_EEH_PE_OP", pack("vfio_eeh_pe_op", argsz=40, op=EEH_PE_GET_STATE))
    s.ioctl(c, "VFIO_IOMMU_UNMAP_DMA", pack("vfio_iommu_type1_dma_unmap", argsz=24,
                                            iova=DDW_START, size=M1))
    s.ioctl(c, "VFIO_IOMMU_SPAPR_TCE_REMOVE",
            pack("vfio_iommu_spapr_tce_remove", argsz=16, start_addr=DDW_START))
    s.ioctl(c, "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY",
            pack("vfio_iommu_spapr_register_memory", argsz=24, vaddr=RW_BASE, size=4 * M1))
    return s


def spapr_v1():
    s = Seed(0)
    c, g6 = s.open(N_CONTAINER), s.open(N_GROUP[6])
    s.ioctl(g6, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(c)))
    s.ioctl_value(c, "VFIO_SET_IOMMU", VFIO_SPAPR_TCE_IOMMU)
    s.ioctl_value(c, "VFIO_IOMMU_ENABLE")
    s.ioctl(c, "VFIO_IOMMU_MAP_DMA", pack("vfio_iommu_type1_dma_map", argsz=32, flags=DMA_RW,
                                          vaddr=RW_BASE, iova=0x10000, size=M1))
    s.ioctl(c, "VFIO_IOMMU_UNMAP_DMA", pack("vfio_iommu_type1_dma_unmap", argsz=24,
                                            iova=0x10000, size=0x8000))
    s.ioctl_value(c, "VFIO_IOMMU_DISABLE")
    return s


def iommufd_cdev():
    s = Seed(0)
    i, d0, d1 = s.open(N_IOMMU), s.open(N_CDEV[0]), s.open(N_CDEV[1])
    s.ioctl(i, "IOMMU_IOAS_ALLOC", pack("iommu_ioas_alloc", size=12))
    s.ioctl(i, "IOMMU_IOAS_MAP", pack("iommu_ioas_map", size=40,
                                      flags=IOAS_FIXED | IOAS_READ | IOAS_WRITE, ioas_id=1,
                                      user_va=RW_BASE, length=M2, iova=0x100000))
    s.ioctl(i, "IOMMU_IOAS_MAP", pack("iommu_ioas_map", size=40, flags=IOAS_READ, ioas_id=1,
                                      user_va=RO_BASE + K4, length=3 * K4))
    s.ioctl(d0, "VFIO_DEVICE_BIND_IOMMUFD", pack("vfio_device_bind_iommufd", argsz=24,
                                                 iommufd=s.fd(i)))
    s.ioctl(d1, "VFIO_DEVICE_BIND_IOMMUFD", pack("vfio_device_bind_iommufd", argsz=16,
                                                 iommufd=s.fd(i)))
    s.ioctl(d0, "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            pack("vfio_device_attach_iommufd_pt", argsz=12, pt_id=1))
    s.ioctl(d1, "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            pack("vfio_device_attach_iommufd_pt", argsz=12, pt_id=1))
    s.ioctl(i, "IOMMU_IOAS_ALLOC", pack("iommu_ioas_alloc", size=12))
    s.ioctl(i, "IOMMU_IOAS_COPY", pack("iommu_ioas_copy", size=40,
                                       flags=IOAS_FIXED | IOAS_READ | IOAS_WRITE,
                                       dst_ioas_id=5, src_ioas_id=1, length=M2,
                                       dst_iova=0x300000 + K4, src_iova=0x100000))
    s.ioctl(i, "IOMMU_HWPT_ALLOC", pack("iommu_hwpt_alloc", size=48, dev_id=2, pt_id=5))
    s.ioctl(d0, "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            pack("vfio_device_attach_iommufd_pt", argsz=12, pt_id=6))
    s.check()
    s.ioctl(i, "IOMMU_GET_HW_INFO", pack("iommu_hw_info", size=40, dev_id=2, data_len=24,
                                         data_uptr=ARG_BASE + 0x100))
    s.ioctl(i, "IOMMU_IOAS_IOVA_RANGES", pack("iommu_ioas_iova_ranges", size=32, ioas_id=1,
                                              num_iovas=4, allowed_iovas=ARG_BASE + 0x100))
    s.ioctl(i, "IOMMU_IOAS_UNMAP", pack("iommu_ioas_unmap", size=24, ioas_id=1, iova=0x100000,
                                        length=M2))
    s.ioctl(d1, "VFIO_DEVICE_DETACH_IOMMUFD_PT",
            pack("vfio_device_detach_iommufd_pt", argsz=8))
    s.ioctl(i, "IOMMU_DESTROY", pack("iommu_destroy", size=8, id=1))
    s.close(i)
    return s


def iommufd_compat():
    s = Seed(0)
    i, g1, d2 = s.open(N_IOMMU), s.open(N_GROUP[1]), s.open(N_CDEV[3])
    s.ioctl(g1, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(i)))
    s.ioctl_value(i, "VFIO_CHECK_EXTENSION", VFIO_TYPE1v2_IOMMU)
    s.ioctl_value(i, "VFIO_SET_IOMMU", VFIO_TYPE1v2_IOMMU)
    s.ioctl(i, "VFIO_IOMMU_MAP_DMA", pack("vfio_iommu_type1_dma_map", argsz=32, flags=DMA_RW,
                                          vaddr=RW_BASE, iova=0x100000, size=M2))
    s.ioctl(i, "IOMMU_VFIO_IOAS", pack("iommu_vfio_ioas", size=12, op=0))
    s.ioctl(d2, "VFIO_DEVICE_BIND_IOMMUFD", pack("vfio_device_bind_iommufd", argsz=24,
                                                 iommufd=s.fd(i)))
    s.ioctl(d2, "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            pack("vfio_device_attach_iommufd_pt", argsz=12, pt_id=1))
    s.ioctl(i, "VFIO_IOMMU_GET_INFO", pack("vfio_iommu_type1_info", argsz=128) + bytes(104))
    s.ioctl(i, "VFIO_IOMMU_UNMAP_DMA", pack("vfio_iommu_type1_dma_unmap", argsz=24,
                                            iova=0x100000, size=M2))
    s.ioctl(g1, "VFIO_GROUP_UNSET_CONTAINER", b"")
    return s


def group_path():
    s = Seed(0)
    c, g1, d0 = s.open(N_CONTAINER), s.open(N_GROUP[1]), s.open(N_CDEV[0])
    s.ioctl(g1, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(c)))
    s.ioctl_value(c, "VFIO_SET_IOMMU", VFIO_TYPE1v2_IOMMU)
    s.ioctl(g1, "VFIO_EMU_GROUP_DEVICE", b"0000:00:01.0\0")
    s.ioctl_value(d0, "VFIO_EMU_DEVICE_USE_GROUP", s.fd(g1))
    s.ioctl(d0, "VFIO_DEVICE_GET_INFO", pack("vfio_device_info", argsz=24))
    s.close(g1)  # its release waits for the device file
    s.ioctl(d0, "VFIO_DEVICE_RESET", b"")
    return s


def regions_and_irqs():
    s = Seed(0)
    i, d0, d2 = s.open(N_IOMMU), s.open(N_CDEV[0]), s.open(N_CDEV[2])
    for d in (d0, d2):
        s.ioctl(d, "VFIO_DEVICE_BIND_IOMMUFD", pack("vfio_device_bind_iommufd", argsz=24,
                                                    iommufd=s.fd(i)))
    s.ioctl(d0, "VFIO_DEVICE_GET_REGION_INFO", pack("vfio_region_info", argsz=32, index=0))
    s.ioctl(d0, "VFIO_DEVICE_GET_IRQ_INFO", pack("vfio_irq_info", argsz=16, index=0))
    s.pread(d0, 7, 0, 64)
    s.pwrite(d0, 7, 4, b"\x06\x04")
    s.pwrite(d0, 0, 0x100, b"\xaa" * 16)
    s.pread(d0, 0, 0x3ff0, 32)
    s.ioctl(d0, "VFIO_DEVICE_SET_IRQS",
            pack("vfio_irq_set", argsz=24, flags=IRQ_DATA_EVENTFD | IRQ_ACTION_TRIGGER,
                 index=0, count=1) + int_arg(FD_EVENTFD))
    s.ioctl(d0, "VFIO_DEVICE_SET_IRQS",
            pack("vfio_irq_set", argsz=24, flags=IRQ_DATA_EVENTFD | IRQ_ACTION_UNMASK,
                 index=0, count=1) + int_arg(FD_EVENTFD))
    s.raise_irq(0, 0)
    s.ioctl(d0, "VFIO_DEVICE_SET_IRQS",
            pack("vfio_irq_set", argsz=21, flags=IRQ_DATA_BOOL | IRQ_ACTION_MASK, index=0,
                 count=1) + b"\x01")
    s.ioctl(d0, "VFIO_DEVICE_SET_IRQS",
            pack("vfio_irq_set", argsz=24, flags=IRQ_DATA_EVENTFD | IRQ_ACTION_TRIGGER,
                 index=4, count=1) + int_arg(FD_FOREIGN))
    s.ioctl(d0, "VFIO_DEVICE_FEATURE",
            pack("vfio_device_feature", argsz=8, flags=FEATURE_SET | FEATURE_LOW_POWER_ENTRY))
    s.pread(d0, 7, 0, 4)
    s.ioctl(d0, "VFIO_DEVICE_FEATURE",
            pack("vfio_device_feature", argsz=8, flags=FEATURE_SET | FEATURE_LOW_POWER_EXIT))
    s.ioctl(d2, "VFIO_DEVICE_RESET", b"")  # 00:02.0's reset fails: a bad state
    s.close(d0)
    return s


def options():
    s = Seed(0)
    s.env(2, 1)  # CAP_SYS_RESOURCE
    i = s.open(N_IOMMU)
    s.ioctl(i, "IOMMU_OPTION", pack("iommu_option", size=24, option_id=OPTION_RLIMIT_MODE,
                                    op=OPTION_SET, val64=1))
    s.ioctl(i, "IOMMU_IOAS_ALLOC", pack("iommu_ioas_alloc", size=12))
    s.ioctl(i, "IOMMU_OPTION", pack("iommu_option", size=24, option_id=OPTION_HUGE_PAGES,
                                    op=OPTION_SET, object_id=1, val64=0))
    s.ioctl(i, "IOMMU_IOAS_ALLOW_IOVAS",
            pack("iommu_ioas_allow_iovas", size=24, ioas_id=1, num_iovas=1,
                 allowed_iovas=ARG_BASE + 0x40) + bytes(40) +
            struct.pack("<QQ", 0x100000, 0x7fffffff))
    s.caller(other_pid=True)
    d4 = s.open(N_CDEV[4])  # a TCE device: no paging domain
    s.ioctl(d4, "VFIO_DEVICE_BIND_IOMMUFD", pack("vfio_device_bind_iommufd", argsz=24,
                                                 iommufd=s.fd(i)))
    s.ioctl(d4, "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            pack("vfio_device_attach_iommufd_pt", argsz=12, pt_id=1))
    return s


def builtin_type1():
    s = Seed(1)  # the built-in topology: nodes vfio/vfio, vfio/1..4, vfio0..3, iommu
    c, g1 = s.open(0), s.open(1)
    s.ioctl(g1, "VFIO_GROUP_SET_CONTAINER", int_arg(s.fd(c)))
    s.ioctl_value(c, "VFIO_SET_IOMMU", VFIO_TYPE1v2_IOMMU)
    s.ioctl(c, "VFIO_IOMMU_MAP_DMA", pack("vfio_iommu_type1_dma_map", argsz=32, flags=DMA_RW,
                                          vaddr=RW_BASE, iova=0, size=M2))
    s.check()
    return s


SEEDS = [type1_v2, type1_v1_emulated, spapr_v2, spapr_v1, iommufd_cdev, iommufd_compat,
         group_path, regions_and_irqs, options, builtin_type1]


def le(v, n):
    return "".join("\\x%02x" % b for b in v.to_bytes(n, "little"))


def write_dict(path):
    entries = [("arg_base", ARG_BASE, 8), ("rw_base", RW_BASE, 8), ("ro_base", RO_BASE, 8),
               ("page", K4, 8), ("huge", M2, 8), ("gig", 1 << 30, 8),
               ("u64_max", (1 << 64) - 1, 8), ("msi", 0xFEE00000, 8), ("ddw_start", DDW_START, 8),
               ("fd_slot0", 3, 4), ("fd_foreign", FD_FOREIGN, 4), ("fd_eventfd", FD_EVENTFD, 4)]
    with open(path, "w") as f:
        f.write("# Written by make_corpus.py: the pretend caller's addresses and fds "
                "(little endian).\n")
        for name, v, n in entries:
            f.write('%s="%s"\n' % (name, le(v, n)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    for make in SEEDS:
        seed = make().b
        with open(os.path.join(out, make.__name__), "wb") as f:
            f.write(bytes(seed))
        # The same flow through the CUSE retry protocol (configuration bit 5).
        with open(os.path.join(out, make.__name__ + "_retry"), "wb") as f:
            f.write(bytes([seed[0] | 0x20]) + bytes(seed[1:]))
    write_dict(os.path.join(HERE, "core.dict"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
