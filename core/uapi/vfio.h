// The Linux VFIO user-space ABI (include/uapi/linux/vfio.h, Linux 6.18), written out as our own
// C++ definitions so the emulator does not depend on the build host's kernel headers (Debian 12
// ships Linux 6.1 headers, which lack the device cdev ioctls).
//
// Names are the kernel's, so handlers read like drivers/vfio. Constants that Linux defines as
// macros or anonymous enums are `constexpr` integers here; structs use fixed-width types and
// `alignas(8)` exactly where Linux uses __aligned_u64 (a plain __u64 is 8-aligned on LP64 anyway).
// Every layout is LP64 (x86_64, aarch64, ppc64le); the emulator does not serve 32-bit callers.
//
// Sources: upstream include/uapi/linux/vfio.h at 02256acf1e81 (has the BIND token, PASID attach and
// the DMA_BUF feature), cross-checked by tests/abi against the system's Linux 6.1 header and
// against shared/spec/linux-vfio-uapi.md. The EEH error type/function numbers come from
// arch/powerpc/include/uapi/asm/eeh.h, which x86 systems do not install.
//
// Include this before <linux/vfio.h> if a translation unit needs both (only the ABI tests do): the
// kernel header's macros have the same names as the constants below.
#pragma once

#if defined(_UAPIVFIO_H)
#error "include core/uapi/vfio.h before <linux/vfio.h>: its macros have the names of our constants"
#endif

#include <cstdint>

namespace vfio_emu::uapi {

// ---- Encoding ---------------------------------------------------------------------------------
// Every VFIO ioctl is _IO(VFIO_TYPE, VFIO_BASE + n): direction and size are 0, so the request is
// 0x3B00 | (0x64 + n). Structs grow at the end and carry their own size in `argsz` (spec §1).

constexpr std::uint32_t VFIO_API_VERSION = 0;
constexpr std::uint32_t VFIO_TYPE = ';';  // 0x3B
constexpr std::uint32_t VFIO_BASE = 100;  // 0x64

// _IO(VFIO_TYPE, VFIO_BASE + offset)
constexpr std::uint32_t vfio_io(std::uint32_t offset) { return (VFIO_TYPE << 8) | (VFIO_BASE + offset); }

// ---- Extensions: the argument of VFIO_CHECK_EXTENSION and VFIO_SET_IOMMU (spec §1.2) ----------

constexpr std::uint32_t VFIO_TYPE1_IOMMU = 1;
constexpr std::uint32_t VFIO_SPAPR_TCE_IOMMU = 2;
constexpr std::uint32_t VFIO_TYPE1v2_IOMMU = 3;
constexpr std::uint32_t VFIO_DMA_CC_IOMMU = 4;  // changes as groups come and go
constexpr std::uint32_t VFIO_EEH = 5;
// Renamed __VFIO_RESERVED_TYPE1_NESTING_IOMMU upstream once nesting support was removed; we keep the
// 6.1 name (a leading double underscore is reserved in C++) and never advertise it.
constexpr std::uint32_t VFIO_TYPE1_NESTING_IOMMU = 6;
constexpr std::uint32_t VFIO_SPAPR_TCE_v2_IOMMU = 7;
constexpr std::uint32_t VFIO_NOIOMMU_IOMMU = 8;
constexpr std::uint32_t VFIO_UNMAP_ALL = 9;      // VFIO_DMA_UNMAP_FLAG_ALL is supported
constexpr std::uint32_t VFIO_UPDATE_VADDR = 10;  // VFIO_DMA_{MAP,UNMAP}_FLAG_VADDR are supported

// ---- Ioctl numbers (spec §1.1) ------------------------------------------------------------------
// One number can mean different things on different nodes; the aliases are spelled out below.

// Container, /dev/vfio/vfio.
constexpr std::uint32_t VFIO_GET_API_VERSION = vfio_io(0);  // 0x3B64, no argument
constexpr std::uint32_t VFIO_CHECK_EXTENSION = vfio_io(1);  // 0x3B65, extension id by value
constexpr std::uint32_t VFIO_SET_IOMMU = vfio_io(2);        // 0x3B66, extension id by value

// Group, /dev/vfio/$GROUP.
constexpr std::uint32_t VFIO_GROUP_GET_STATUS = vfio_io(3);       // 0x3B67, vfio_group_status
constexpr std::uint32_t VFIO_GROUP_SET_CONTAINER = vfio_io(4);    // 0x3B68, pointer to int fd
constexpr std::uint32_t VFIO_GROUP_UNSET_CONTAINER = vfio_io(5);  // 0x3B69, no argument
constexpr std::uint32_t VFIO_GROUP_GET_DEVICE_FD = vfio_io(6);    // 0x3B6A, pointer to a string

// Device, from GET_DEVICE_FD or /dev/vfio/devices/vfioN.
constexpr std::uint32_t VFIO_DEVICE_GET_INFO = vfio_io(7);                 // 0x3B6B
constexpr std::uint32_t VFIO_DEVICE_GET_REGION_INFO = vfio_io(8);          // 0x3B6C
constexpr std::uint32_t VFIO_DEVICE_GET_IRQ_INFO = vfio_io(9);             // 0x3B6D
constexpr std::uint32_t VFIO_DEVICE_SET_IRQS = vfio_io(10);                // 0x3B6E
constexpr std::uint32_t VFIO_DEVICE_RESET = vfio_io(11);                   // 0x3B6F
constexpr std::uint32_t VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = vfio_io(12);  // 0x3B70
constexpr std::uint32_t VFIO_DEVICE_PCI_HOT_RESET = vfio_io(13);           // 0x3B71
constexpr std::uint32_t VFIO_DEVICE_QUERY_GFX_PLANE = vfio_io(14);         // 0x3B72
constexpr std::uint32_t VFIO_DEVICE_GET_GFX_DMABUF = vfio_io(15);          // 0x3B73
constexpr std::uint32_t VFIO_DEVICE_IOEVENTFD = vfio_io(16);               // 0x3B74
constexpr std::uint32_t VFIO_DEVICE_FEATURE = vfio_io(17);                 // 0x3B75
constexpr std::uint32_t VFIO_DEVICE_BIND_IOMMUFD = vfio_io(18);            // 0x3B76, cdev only
constexpr std::uint32_t VFIO_DEVICE_ATTACH_IOMMUFD_PT = vfio_io(19);       // 0x3B77, cdev only
constexpr std::uint32_t VFIO_DEVICE_DETACH_IOMMUFD_PT = vfio_io(20);       // 0x3B78, cdev only

// Container with an IOMMU driver set (type1 or sPAPR TCE).
constexpr std::uint32_t VFIO_IOMMU_GET_INFO = vfio_io(12);                 // 0x3B70, type1
constexpr std::uint32_t VFIO_IOMMU_SPAPR_TCE_GET_INFO = vfio_io(12);       // 0x3B70, sPAPR
constexpr std::uint32_t VFIO_IOMMU_MAP_DMA = vfio_io(13);                  // 0x3B71
constexpr std::uint32_t VFIO_IOMMU_UNMAP_DMA = vfio_io(14);                // 0x3B72
constexpr std::uint32_t VFIO_IOMMU_ENABLE = vfio_io(15);                   // 0x3B73, sPAPR v1
constexpr std::uint32_t VFIO_IOMMU_DISABLE = vfio_io(16);                  // 0x3B74, sPAPR v1
constexpr std::uint32_t VFIO_IOMMU_DIRTY_PAGES = vfio_io(17);              // 0x3B75, type1
constexpr std::uint32_t VFIO_IOMMU_SPAPR_REGISTER_MEMORY = vfio_io(17);    // 0x3B75, sPAPR v2
constexpr std::uint32_t VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY = vfio_io(18);  // 0x3B76, sPAPR v2
constexpr std::uint32_t VFIO_IOMMU_SPAPR_TCE_CREATE = vfio_io(19);         // 0x3B77, sPAPR v2
constexpr std::uint32_t VFIO_IOMMU_SPAPR_TCE_REMOVE = vfio_io(20);         // 0x3B78, sPAPR v2
constexpr std::uint32_t VFIO_EEH_PE_OP = vfio_io(21);                      // 0x3B79, sPAPR

// The highest VFIO number in use; private numbers must stay clear of it (core/uapi/vfio_emu.h).
constexpr std::uint32_t VFIO_LAST_IOCTL_NR = VFIO_BASE + 21;  // 0x79

// ---- Capability chains --------------------------------------------------------------------------
// INFO ioctls may append capabilities after the fixed struct. `next` is an offset from the start
// of the info buffer; 0 ends the chain.

struct vfio_info_cap_header {
  std::uint16_t id;
  std::uint16_t version;
  std::uint32_t next;
};
static_assert(sizeof(vfio_info_cap_header) == 8);

// ---- Group --------------------------------------------------------------------------------------

struct vfio_group_status {
  std::uint32_t argsz;
  std::uint32_t flags;
};
static_assert(sizeof(vfio_group_status) == 8);

constexpr std::uint32_t VFIO_GROUP_FLAGS_VIABLE = 1U << 0;
constexpr std::uint32_t VFIO_GROUP_FLAGS_CONTAINER_SET = 1U << 1;

// ---- Device information ------------------------------------------------------------------------

// Linux 6.1 ended at cap_offset (20 bytes); `pad` makes the size 8-aligned (24) in newer headers.
struct vfio_device_info {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t num_regions;  // highest region index + 1
  std::uint32_t num_irqs;     // highest IRQ index + 1
  std::uint32_t cap_offset;   // valid with VFIO_DEVICE_FLAGS_CAPS
  std::uint32_t pad;
};
static_assert(sizeof(vfio_device_info) == 24);

constexpr std::uint32_t VFIO_DEVICE_FLAGS_RESET = 1U << 0;  // VFIO_DEVICE_RESET is supported
constexpr std::uint32_t VFIO_DEVICE_FLAGS_PCI = 1U << 1;
constexpr std::uint32_t VFIO_DEVICE_FLAGS_PLATFORM = 1U << 2;
constexpr std::uint32_t VFIO_DEVICE_FLAGS_AMBA = 1U << 3;
constexpr std::uint32_t VFIO_DEVICE_FLAGS_CCW = 1U << 4;
constexpr std::uint32_t VFIO_DEVICE_FLAGS_AP = 1U << 5;
constexpr std::uint32_t VFIO_DEVICE_FLAGS_FSL_MC = 1U << 6;
constexpr std::uint32_t VFIO_DEVICE_FLAGS_CAPS = 1U << 7;  // cap_offset is valid
constexpr std::uint32_t VFIO_DEVICE_FLAGS_CDX = 1U << 8;

struct vfio_region_info {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t index;
  std::uint32_t cap_offset;  // valid with VFIO_REGION_INFO_FLAG_CAPS
  alignas(8) std::uint64_t size;
  alignas(8) std::uint64_t offset;  // of the region within the device fd (pread/pwrite/mmap)
};
static_assert(sizeof(vfio_region_info) == 32);

constexpr std::uint32_t VFIO_REGION_INFO_FLAG_READ = 1U << 0;
constexpr std::uint32_t VFIO_REGION_INFO_FLAG_WRITE = 1U << 1;
constexpr std::uint32_t VFIO_REGION_INFO_FLAG_MMAP = 1U << 2;
constexpr std::uint32_t VFIO_REGION_INFO_FLAG_CAPS = 1U << 3;
// Capability ids of vfio_region_info's chain.
constexpr std::uint16_t VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
constexpr std::uint16_t VFIO_REGION_INFO_CAP_TYPE = 2;
constexpr std::uint16_t VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3;

struct vfio_irq_info {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t index;
  std::uint32_t count;  // interrupts within this index
};
static_assert(sizeof(vfio_irq_info) == 16);

constexpr std::uint32_t VFIO_IRQ_INFO_EVENTFD = 1U << 0;
constexpr std::uint32_t VFIO_IRQ_INFO_MASKABLE = 1U << 1;
constexpr std::uint32_t VFIO_IRQ_INFO_AUTOMASKED = 1U << 2;
constexpr std::uint32_t VFIO_IRQ_INFO_NORESIZE = 1U << 3;

// `data` holds `count` u8 booleans or s32 eventfds, as the DATA_* flag says.
struct vfio_irq_set {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t index;
  std::uint32_t start;
  std::uint32_t count;
  std::uint8_t data[];
};
static_assert(sizeof(vfio_irq_set) == 20);

constexpr std::uint32_t VFIO_IRQ_SET_DATA_NONE = 1U << 0;
constexpr std::uint32_t VFIO_IRQ_SET_DATA_BOOL = 1U << 1;
constexpr std::uint32_t VFIO_IRQ_SET_DATA_EVENTFD = 1U << 2;
constexpr std::uint32_t VFIO_IRQ_SET_ACTION_MASK = 1U << 3;
constexpr std::uint32_t VFIO_IRQ_SET_ACTION_UNMASK = 1U << 4;
constexpr std::uint32_t VFIO_IRQ_SET_ACTION_TRIGGER = 1U << 5;
constexpr std::uint32_t VFIO_IRQ_SET_DATA_TYPE_MASK =
    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
constexpr std::uint32_t VFIO_IRQ_SET_ACTION_TYPE_MASK =
    VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

// vfio-pci's fixed region and IRQ indexes. Indexes >= VFIO_PCI_NUM_REGIONS are device specific.
constexpr std::uint32_t VFIO_PCI_BAR0_REGION_INDEX = 0;
constexpr std::uint32_t VFIO_PCI_BAR1_REGION_INDEX = 1;
constexpr std::uint32_t VFIO_PCI_BAR2_REGION_INDEX = 2;
constexpr std::uint32_t VFIO_PCI_BAR3_REGION_INDEX = 3;
constexpr std::uint32_t VFIO_PCI_BAR4_REGION_INDEX = 4;
constexpr std::uint32_t VFIO_PCI_BAR5_REGION_INDEX = 5;
constexpr std::uint32_t VFIO_PCI_ROM_REGION_INDEX = 6;
constexpr std::uint32_t VFIO_PCI_CONFIG_REGION_INDEX = 7;
constexpr std::uint32_t VFIO_PCI_VGA_REGION_INDEX = 8;
constexpr std::uint32_t VFIO_PCI_NUM_REGIONS = 9;

constexpr std::uint32_t VFIO_PCI_INTX_IRQ_INDEX = 0;
constexpr std::uint32_t VFIO_PCI_MSI_IRQ_INDEX = 1;
constexpr std::uint32_t VFIO_PCI_MSIX_IRQ_INDEX = 2;
constexpr std::uint32_t VFIO_PCI_ERR_IRQ_INDEX = 3;
constexpr std::uint32_t VFIO_PCI_REQ_IRQ_INDEX = 4;
constexpr std::uint32_t VFIO_PCI_NUM_IRQS = 5;

// ---- PCI hot reset ------------------------------------------------------------------------------

// A device opened through a group reports group_id; one opened as a cdev reports devid (6.6+).
struct vfio_pci_dependent_device {
  union {
    std::uint32_t group_id;
    std::uint32_t devid;
  };
  std::uint16_t segment;
  std::uint8_t bus;
  std::uint8_t devfn;
};
static_assert(sizeof(vfio_pci_dependent_device) == 8);

constexpr std::uint32_t VFIO_PCI_DEVID_OWNED = 0;
constexpr std::int32_t VFIO_PCI_DEVID_NOT_OWNED = -1;

struct vfio_pci_hot_reset_info {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t count;
  vfio_pci_dependent_device devices[];
};
static_assert(sizeof(vfio_pci_hot_reset_info) == 12);

constexpr std::uint32_t VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1U << 0;
constexpr std::uint32_t VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1U << 1;

struct vfio_pci_hot_reset {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t count;
  std::int32_t group_fds[];
};
static_assert(sizeof(vfio_pci_hot_reset) == 12);

// ---- Device features ----------------------------------------------------------------------------

struct vfio_device_feature {
  std::uint32_t argsz;
  std::uint32_t flags;  // feature index in the low 16 bits, plus GET/SET/PROBE
  std::uint8_t data[];
};
static_assert(sizeof(vfio_device_feature) == 8);

constexpr std::uint32_t VFIO_DEVICE_FEATURE_MASK = 0xffff;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_GET = 1U << 16;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_SET = 1U << 17;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_PROBE = 1U << 18;

constexpr std::uint32_t VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_MIGRATION = 1;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_BUS_MASTER = 10;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_DMA_BUF = 11;
constexpr std::uint32_t VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 = 12;

// ---- Device cdev and iommufd (Linux 6.6+; spec §5.10) -------------------------------------------

// 16 bytes in 6.6; token_uuid_ptr (and FLAG_TOKEN) were added in 2025. The kernel requires
// argsz >= 16, so both sizes are accepted.
struct vfio_device_bind_iommufd {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::int32_t iommufd;
  std::uint32_t out_devid;                  // iommufd object id, >= 1
  alignas(8) std::uint64_t token_uuid_ptr;  // user address of a 16-byte UUID, with FLAG_TOKEN
};
static_assert(sizeof(vfio_device_bind_iommufd) == 24);

constexpr std::uint32_t VFIO_DEVICE_BIND_FLAG_TOKEN = 1U << 0;

// 12 bytes before PASID support; pasid is read only with VFIO_DEVICE_ATTACH_PASID.
struct vfio_device_attach_iommufd_pt {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t pt_id;  // in: IOAS or HWPT id; out: the HWPT that was attached
  std::uint32_t pasid;
};
static_assert(sizeof(vfio_device_attach_iommufd_pt) == 16);

constexpr std::uint32_t VFIO_DEVICE_ATTACH_PASID = 1U << 0;

// 8 bytes before PASID support; pasid is read only with VFIO_DEVICE_DETACH_PASID.
struct vfio_device_detach_iommufd_pt {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t pasid;
};
static_assert(sizeof(vfio_device_detach_iommufd_pt) == 12);

constexpr std::uint32_t VFIO_DEVICE_DETACH_PASID = 1U << 0;

// ---- Type1 IOMMU (spec §3) ----------------------------------------------------------------------

// 24 bytes in every header: 6.1 had implicit tail padding where newer headers name `pad`.
struct vfio_iommu_type1_info {
  std::uint32_t argsz;
  std::uint32_t flags;
  alignas(8) std::uint64_t iova_pgsizes;  // bitmap of supported page sizes
  std::uint32_t cap_offset;               // valid with VFIO_IOMMU_INFO_CAPS
  std::uint32_t pad;
};
static_assert(sizeof(vfio_iommu_type1_info) == 24);

constexpr std::uint32_t VFIO_IOMMU_INFO_PGSIZES = 1U << 0;
constexpr std::uint32_t VFIO_IOMMU_INFO_CAPS = 1U << 1;

// Capability ids in the VFIO_IOMMU_GET_INFO chain; each is version 1.
constexpr std::uint16_t VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
constexpr std::uint16_t VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
constexpr std::uint16_t VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

struct vfio_iova_range {
  std::uint64_t start;
  std::uint64_t end;  // inclusive
};
static_assert(sizeof(vfio_iova_range) == 16);

struct vfio_iommu_type1_info_cap_iova_range {
  vfio_info_cap_header header;
  std::uint32_t nr_iovas;
  std::uint32_t reserved;
  vfio_iova_range iova_ranges[];
};
static_assert(sizeof(vfio_iommu_type1_info_cap_iova_range) == 16);

struct vfio_iommu_type1_info_cap_migration {
  vfio_info_cap_header header;
  std::uint32_t flags;
  std::uint64_t pgsize_bitmap;          // after 4 bytes of implicit padding
  std::uint64_t max_dirty_bitmap_size;  // bytes
};
static_assert(sizeof(vfio_iommu_type1_info_cap_migration) == 32);

// 12 bytes; in the chain it occupies 16 since capabilities are 8-aligned (≈6.6+).
struct vfio_iommu_type1_info_dma_avail {
  vfio_info_cap_header header;
  std::uint32_t avail;
};
static_assert(sizeof(vfio_iommu_type1_info_dma_avail) == 12);

struct vfio_iommu_type1_dma_map {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint64_t vaddr;  // in the caller's address space
  std::uint64_t iova;
  std::uint64_t size;
};
static_assert(sizeof(vfio_iommu_type1_dma_map) == 32);

constexpr std::uint32_t VFIO_DMA_MAP_FLAG_READ = 1U << 0;   // the device may read
constexpr std::uint32_t VFIO_DMA_MAP_FLAG_WRITE = 1U << 1;  // the device may write
constexpr std::uint32_t VFIO_DMA_MAP_FLAG_VADDR = 1U << 2;  // update the vaddr of a mapping

// Linux declares `data` as `__u64 __user *`; it is an address in the caller, not in the daemon.
struct vfio_bitmap {
  std::uint64_t pgsize;  // bytes per bit
  std::uint64_t size;    // bytes of bitmap
  std::uint64_t data;
};
static_assert(sizeof(vfio_bitmap) == 24);

// `data` holds a vfio_bitmap with VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP.
struct vfio_iommu_type1_dma_unmap {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint64_t iova;
  std::uint64_t size;  // in: length; out: bytes unmapped
  std::uint8_t data[];
};
static_assert(sizeof(vfio_iommu_type1_dma_unmap) == 24);

constexpr std::uint32_t VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1U << 0;
constexpr std::uint32_t VFIO_DMA_UNMAP_FLAG_ALL = 1U << 1;  // iova and size must be 0
constexpr std::uint32_t VFIO_DMA_UNMAP_FLAG_VADDR = 1U << 2;

// `data` holds a vfio_iommu_type1_dirty_bitmap_get with FLAG_GET_BITMAP.
struct vfio_iommu_type1_dirty_bitmap {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint8_t data[];
};
static_assert(sizeof(vfio_iommu_type1_dirty_bitmap) == 8);

constexpr std::uint32_t VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1U << 0;
constexpr std::uint32_t VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1U << 1;
constexpr std::uint32_t VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1U << 2;

struct vfio_iommu_type1_dirty_bitmap_get {
  std::uint64_t iova;
  std::uint64_t size;
  vfio_bitmap bitmap;
};
static_assert(sizeof(vfio_iommu_type1_dirty_bitmap_get) == 40);

// ---- sPAPR TCE IOMMU (spec §4) ------------------------------------------------------------------
// MAP_DMA and UNMAP_DMA reuse the type1 structs; IOVAs are absolute PCI bus addresses.

struct vfio_iommu_spapr_tce_ddw_info {
  std::uint64_t pgsizes;  // bitmap of supported page sizes
  std::uint32_t max_dynamic_windows_supported;
  std::uint32_t levels;
};
static_assert(sizeof(vfio_iommu_spapr_tce_ddw_info) == 16);

struct vfio_iommu_spapr_tce_info {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t dma32_window_start;  // bytes, absolute bus address
  std::uint32_t dma32_window_size;   // bytes
  vfio_iommu_spapr_tce_ddw_info ddw;  // valid with VFIO_IOMMU_SPAPR_INFO_DDW
};
static_assert(sizeof(vfio_iommu_spapr_tce_info) == 32);

constexpr std::uint32_t VFIO_IOMMU_SPAPR_INFO_DDW = 1U << 0;

// Argument of REGISTER_MEMORY and UNREGISTER_MEMORY.
struct vfio_iommu_spapr_register_memory {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint64_t vaddr;
  std::uint64_t size;
};
static_assert(sizeof(vfio_iommu_spapr_register_memory) == 24);

struct vfio_iommu_spapr_tce_create {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t page_shift;  // in
  std::uint32_t __resv1;
  std::uint64_t window_size;  // in
  std::uint32_t levels;       // in
  std::uint32_t __resv2;
  std::uint64_t start_addr;  // out: bus address chosen by the platform
};
static_assert(sizeof(vfio_iommu_spapr_tce_create) == 40);

struct vfio_iommu_spapr_tce_remove {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint64_t start_addr;  // the window to remove
};
static_assert(sizeof(vfio_iommu_spapr_tce_remove) == 16);

// ---- EEH (spec §4.10) ---------------------------------------------------------------------------

struct vfio_eeh_pe_err {
  std::uint32_t type;  // EEH_ERR_TYPE_*
  std::uint32_t func;  // EEH_ERR_FUNC_*
  std::uint64_t addr;
  std::uint64_t mask;
};
static_assert(sizeof(vfio_eeh_pe_err) == 24);

struct vfio_eeh_pe_op {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t op;  // VFIO_EEH_PE_*
  union {
    vfio_eeh_pe_err err;  // VFIO_EEH_PE_INJECT_ERR
  };
};
static_assert(sizeof(vfio_eeh_pe_op) == 40);

constexpr std::uint32_t VFIO_EEH_PE_DISABLE = 0;
constexpr std::uint32_t VFIO_EEH_PE_ENABLE = 1;
constexpr std::uint32_t VFIO_EEH_PE_UNFREEZE_IO = 2;
constexpr std::uint32_t VFIO_EEH_PE_UNFREEZE_DMA = 3;
constexpr std::uint32_t VFIO_EEH_PE_GET_STATE = 4;  // returns one of VFIO_EEH_PE_STATE_*
constexpr std::uint32_t VFIO_EEH_PE_RESET_DEACTIVATE = 5;
constexpr std::uint32_t VFIO_EEH_PE_RESET_HOT = 6;
constexpr std::uint32_t VFIO_EEH_PE_RESET_FUNDAMENTAL = 7;
constexpr std::uint32_t VFIO_EEH_PE_CONFIGURE = 8;
constexpr std::uint32_t VFIO_EEH_PE_INJECT_ERR = 9;

constexpr std::uint32_t VFIO_EEH_PE_STATE_NORMAL = 0;
constexpr std::uint32_t VFIO_EEH_PE_STATE_RESET = 1;
constexpr std::uint32_t VFIO_EEH_PE_STATE_STOPPED = 2;  // DMA and IO stopped
constexpr std::uint32_t VFIO_EEH_PE_STATE_STOPPED_DMA = 4;
constexpr std::uint32_t VFIO_EEH_PE_STATE_UNAVAIL = 5;

// vfio_eeh_pe_err.type and .func, from arch/powerpc/include/uapi/asm/eeh.h.
constexpr std::uint32_t EEH_ERR_TYPE_32 = 0;
constexpr std::uint32_t EEH_ERR_TYPE_64 = 1;
constexpr std::uint32_t EEH_ERR_FUNC_MIN = 0;
constexpr std::uint32_t EEH_ERR_FUNC_LD_MEM_ADDR = 0;
constexpr std::uint32_t EEH_ERR_FUNC_LD_MEM_DATA = 1;
constexpr std::uint32_t EEH_ERR_FUNC_LD_IO_ADDR = 2;
constexpr std::uint32_t EEH_ERR_FUNC_LD_IO_DATA = 3;
constexpr std::uint32_t EEH_ERR_FUNC_LD_CFG_ADDR = 4;
constexpr std::uint32_t EEH_ERR_FUNC_LD_CFG_DATA = 5;
constexpr std::uint32_t EEH_ERR_FUNC_ST_MEM_ADDR = 6;
constexpr std::uint32_t EEH_ERR_FUNC_ST_MEM_DATA = 7;
constexpr std::uint32_t EEH_ERR_FUNC_ST_IO_ADDR = 8;
constexpr std::uint32_t EEH_ERR_FUNC_ST_IO_DATA = 9;
constexpr std::uint32_t EEH_ERR_FUNC_ST_CFG_ADDR = 10;
constexpr std::uint32_t EEH_ERR_FUNC_ST_CFG_DATA = 11;
constexpr std::uint32_t EEH_ERR_FUNC_DMA_RD_ADDR = 12;
constexpr std::uint32_t EEH_ERR_FUNC_DMA_RD_DATA = 13;
constexpr std::uint32_t EEH_ERR_FUNC_DMA_RD_MASTER = 14;
constexpr std::uint32_t EEH_ERR_FUNC_DMA_RD_TARGET = 15;
constexpr std::uint32_t EEH_ERR_FUNC_DMA_WR_ADDR = 16;
constexpr std::uint32_t EEH_ERR_FUNC_DMA_WR_DATA = 17;
constexpr std::uint32_t EEH_ERR_FUNC_DMA_WR_MASTER = 18;
constexpr std::uint32_t EEH_ERR_FUNC_DMA_WR_TARGET = 19;
constexpr std::uint32_t EEH_ERR_FUNC_MAX = 19;

}  // namespace vfio_emu::uapi
