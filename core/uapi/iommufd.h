// The Linux iommufd user-space ABI (include/uapi/linux/iommufd.h, Linux 6.18) as our own C++
// definitions. Debian 12's Linux 6.1 headers do not have this file at all.
//
// Names are the kernel's. Where Linux uses a named enum, so do we (unscoped, with a fixed
// underlying type, so the enumerators sit in vfio_emu::uapi like the kernel's do in C); anonymous
// enums and macros become `constexpr` integers. Every 64-bit field is __aligned_u64 upstream, hence
// `alignas(8)` on each. Layouts are LP64.
//
// Sources:
// - Command numbers 0x80..0x94 and the structs of DESTROY, IOAS_*, OPTION and VFIO_IOAS: the spec
//   (shared/spec/linux-vfio-uapi.md §1.3, §5.1, §5.2), which agrees with upstream.
// - The rest, which the spec does not lay out, from upstream include/uapi/linux/iommufd.h at
//   b4d90dbc4c1b (the newest stored version; it has IOMMUFD_CMD_HW_QUEUE_ALLOC = 0x94):
//   iommu_hwpt_alloc (fault_id and __reserved2 were added after 03476e687eb0, ≈v6.7, which ended at
//   data_uptr), iommu_hw_info (03476e687eb0 had `out_data_type; __reserved` where 6.18 has the
//   in/out union and out_max_pasid_log2 + __reserved[3]; same offsets, 40 bytes),
//   iommu_hw_info_vtd, iommu_hwpt_vtd_s1, the dirty-tracking structs, and the structs of the
//   commands the emulator only rejects (invalidate, fault queue, vIOMMU, vDEVICE, change process,
//   vEVENTQ, HW queue), kept so the dispatcher knows their minimum sizes.
//
// Include this before <linux/iommufd.h> if a translation unit needs both: the kernel header's
// macros have the names of our ioctl numbers.
#pragma once

#if defined(_UAPI_IOMMUFD_H)
#error "include core/uapi/iommufd.h before <linux/iommufd.h>: its macros have the names of our constants"
#endif

#include <cstdint>

namespace vfio_emu::uapi {

// ---- Encoding ---------------------------------------------------------------------------------
// _IO(IOMMUFD_TYPE, cmd): same type byte as VFIO, numbers from 0x80. The iommufd node forwards
// numbers below 0x80 to its VFIO container emulation (spec §1.3). Every struct starts with `size`.

constexpr std::uint32_t IOMMUFD_TYPE = ';';  // 0x3B

// _IO(IOMMUFD_TYPE, cmd)
constexpr std::uint32_t iommufd_io(std::uint32_t cmd) { return (IOMMUFD_TYPE << 8) | cmd; }

constexpr std::uint32_t IOMMUFD_CMD_BASE = 0x80;
constexpr std::uint32_t IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE;
constexpr std::uint32_t IOMMUFD_CMD_IOAS_ALLOC = 0x81;
constexpr std::uint32_t IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82;
constexpr std::uint32_t IOMMUFD_CMD_IOAS_COPY = 0x83;
constexpr std::uint32_t IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84;
constexpr std::uint32_t IOMMUFD_CMD_IOAS_MAP = 0x85;
constexpr std::uint32_t IOMMUFD_CMD_IOAS_UNMAP = 0x86;
constexpr std::uint32_t IOMMUFD_CMD_OPTION = 0x87;
constexpr std::uint32_t IOMMUFD_CMD_VFIO_IOAS = 0x88;
constexpr std::uint32_t IOMMUFD_CMD_HWPT_ALLOC = 0x89;
constexpr std::uint32_t IOMMUFD_CMD_GET_HW_INFO = 0x8a;
constexpr std::uint32_t IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b;
constexpr std::uint32_t IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c;
constexpr std::uint32_t IOMMUFD_CMD_HWPT_INVALIDATE = 0x8d;
constexpr std::uint32_t IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8e;
constexpr std::uint32_t IOMMUFD_CMD_IOAS_MAP_FILE = 0x8f;
constexpr std::uint32_t IOMMUFD_CMD_VIOMMU_ALLOC = 0x90;
constexpr std::uint32_t IOMMUFD_CMD_VDEVICE_ALLOC = 0x91;
constexpr std::uint32_t IOMMUFD_CMD_IOAS_CHANGE_PROCESS = 0x92;
constexpr std::uint32_t IOMMUFD_CMD_VEVENTQ_ALLOC = 0x93;
constexpr std::uint32_t IOMMUFD_CMD_HW_QUEUE_ALLOC = 0x94;

constexpr std::uint32_t IOMMU_DESTROY = iommufd_io(IOMMUFD_CMD_DESTROY);                      // 0x3B80
constexpr std::uint32_t IOMMU_IOAS_ALLOC = iommufd_io(IOMMUFD_CMD_IOAS_ALLOC);                // 0x3B81
constexpr std::uint32_t IOMMU_IOAS_ALLOW_IOVAS = iommufd_io(IOMMUFD_CMD_IOAS_ALLOW_IOVAS);    // 0x3B82
constexpr std::uint32_t IOMMU_IOAS_COPY = iommufd_io(IOMMUFD_CMD_IOAS_COPY);                  // 0x3B83
constexpr std::uint32_t IOMMU_IOAS_IOVA_RANGES = iommufd_io(IOMMUFD_CMD_IOAS_IOVA_RANGES);    // 0x3B84
constexpr std::uint32_t IOMMU_IOAS_MAP = iommufd_io(IOMMUFD_CMD_IOAS_MAP);                    // 0x3B85
constexpr std::uint32_t IOMMU_IOAS_UNMAP = iommufd_io(IOMMUFD_CMD_IOAS_UNMAP);                // 0x3B86
constexpr std::uint32_t IOMMU_OPTION = iommufd_io(IOMMUFD_CMD_OPTION);                        // 0x3B87
constexpr std::uint32_t IOMMU_VFIO_IOAS = iommufd_io(IOMMUFD_CMD_VFIO_IOAS);                  // 0x3B88
constexpr std::uint32_t IOMMU_HWPT_ALLOC = iommufd_io(IOMMUFD_CMD_HWPT_ALLOC);                // 0x3B89
constexpr std::uint32_t IOMMU_GET_HW_INFO = iommufd_io(IOMMUFD_CMD_GET_HW_INFO);              // 0x3B8A
constexpr std::uint32_t IOMMU_HWPT_SET_DIRTY_TRACKING =
    iommufd_io(IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING);                                          // 0x3B8B
constexpr std::uint32_t IOMMU_HWPT_GET_DIRTY_BITMAP =
    iommufd_io(IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP);                                            // 0x3B8C
constexpr std::uint32_t IOMMU_HWPT_INVALIDATE = iommufd_io(IOMMUFD_CMD_HWPT_INVALIDATE);      // 0x3B8D
constexpr std::uint32_t IOMMU_FAULT_QUEUE_ALLOC = iommufd_io(IOMMUFD_CMD_FAULT_QUEUE_ALLOC);  // 0x3B8E
constexpr std::uint32_t IOMMU_IOAS_MAP_FILE = iommufd_io(IOMMUFD_CMD_IOAS_MAP_FILE);          // 0x3B8F
constexpr std::uint32_t IOMMU_VIOMMU_ALLOC = iommufd_io(IOMMUFD_CMD_VIOMMU_ALLOC);            // 0x3B90
constexpr std::uint32_t IOMMU_VDEVICE_ALLOC = iommufd_io(IOMMUFD_CMD_VDEVICE_ALLOC);          // 0x3B91
constexpr std::uint32_t IOMMU_IOAS_CHANGE_PROCESS =
    iommufd_io(IOMMUFD_CMD_IOAS_CHANGE_PROCESS);                                              // 0x3B92
constexpr std::uint32_t IOMMU_VEVENTQ_ALLOC = iommufd_io(IOMMUFD_CMD_VEVENTQ_ALLOC);          // 0x3B93
constexpr std::uint32_t IOMMU_HW_QUEUE_ALLOC = iommufd_io(IOMMUFD_CMD_HW_QUEUE_ALLOC);        // 0x3B94

// The highest iommufd number in use.
constexpr std::uint32_t IOMMUFD_LAST_CMD = IOMMUFD_CMD_HW_QUEUE_ALLOC;

// ---- Objects and IO address spaces (spec §5.2) --------------------------------------------------

struct iommu_destroy {
  std::uint32_t size;
  std::uint32_t id;  // any destroyable object
};
static_assert(sizeof(iommu_destroy) == 8);

struct iommu_ioas_alloc {
  std::uint32_t size;
  std::uint32_t flags;  // must be 0
  std::uint32_t out_ioas_id;
};
static_assert(sizeof(iommu_ioas_alloc) == 12);

struct iommu_iova_range {
  alignas(8) std::uint64_t start;
  alignas(8) std::uint64_t last;  // inclusive
};
static_assert(sizeof(iommu_iova_range) == 16);

struct iommu_ioas_iova_ranges {
  std::uint32_t size;
  std::uint32_t ioas_id;
  std::uint32_t num_iovas;  // in: capacity of allowed_iovas; out: total number of ranges
  std::uint32_t __reserved;
  alignas(8) std::uint64_t allowed_iovas;  // user address of iommu_iova_range[num_iovas]
  alignas(8) std::uint64_t out_iova_alignment;
};
static_assert(sizeof(iommu_ioas_iova_ranges) == 32);

struct iommu_ioas_allow_iovas {
  std::uint32_t size;
  std::uint32_t ioas_id;
  std::uint32_t num_iovas;
  std::uint32_t __reserved;
  alignas(8) std::uint64_t allowed_iovas;  // user address of iommu_iova_range[num_iovas]
};
static_assert(sizeof(iommu_ioas_allow_iovas) == 24);

// Flags of IOAS_MAP, IOAS_MAP_FILE and IOAS_COPY.
enum iommufd_ioas_map_flags : std::uint32_t {
  IOMMU_IOAS_MAP_FIXED_IOVA = 1U << 0,  // clear: the kernel picks the IOVA (never 0)
  IOMMU_IOAS_MAP_WRITEABLE = 1U << 1,
  IOMMU_IOAS_MAP_READABLE = 1U << 2,
};

struct iommu_ioas_map {
  std::uint32_t size;
  std::uint32_t flags;  // iommufd_ioas_map_flags
  std::uint32_t ioas_id;
  std::uint32_t __reserved;
  alignas(8) std::uint64_t user_va;
  alignas(8) std::uint64_t length;
  alignas(8) std::uint64_t iova;  // in with FIXED_IOVA; always out
};
static_assert(sizeof(iommu_ioas_map) == 40);

struct iommu_ioas_map_file {
  std::uint32_t size;
  std::uint32_t flags;  // iommufd_ioas_map_flags
  std::uint32_t ioas_id;
  std::int32_t fd;                 // memfd
  alignas(8) std::uint64_t start;  // byte offset in the file
  alignas(8) std::uint64_t length;
  alignas(8) std::uint64_t iova;
};
static_assert(sizeof(iommu_ioas_map_file) == 40);

struct iommu_ioas_copy {
  std::uint32_t size;
  std::uint32_t flags;  // iommufd_ioas_map_flags
  std::uint32_t dst_ioas_id;
  std::uint32_t src_ioas_id;
  alignas(8) std::uint64_t length;
  alignas(8) std::uint64_t dst_iova;
  alignas(8) std::uint64_t src_iova;
};
static_assert(sizeof(iommu_ioas_copy) == 40);

// iova = 0, length = U64_MAX unmaps everything.
struct iommu_ioas_unmap {
  std::uint32_t size;
  std::uint32_t ioas_id;
  alignas(8) std::uint64_t iova;
  alignas(8) std::uint64_t length;  // in: bytes to unmap; out: bytes unmapped
};
static_assert(sizeof(iommu_ioas_unmap) == 24);

enum iommufd_option : std::uint32_t {
  IOMMU_OPTION_RLIMIT_MODE = 0,  // global: 0 per-user accounting, 1 per-process
  IOMMU_OPTION_HUGE_PAGES = 1,   // per IOAS: 0 maps everything with PAGE_SIZE
};

enum iommufd_option_ops : std::uint16_t {
  IOMMU_OPTION_OP_SET = 0,
  IOMMU_OPTION_OP_GET = 1,
};

struct iommu_option {
  std::uint32_t size;
  std::uint32_t option_id;  // iommufd_option
  std::uint16_t op;         // iommufd_option_ops
  std::uint16_t __reserved;
  std::uint32_t object_id;  // 0 for global options
  alignas(8) std::uint64_t val64;
};
static_assert(sizeof(iommu_option) == 24);

enum iommufd_vfio_ioas_op : std::uint16_t {
  IOMMU_VFIO_IOAS_GET = 0,
  IOMMU_VFIO_IOAS_SET = 1,
  IOMMU_VFIO_IOAS_CLEAR = 2,
};

struct iommu_vfio_ioas {
  std::uint32_t size;
  std::uint32_t ioas_id;
  std::uint16_t op;  // iommufd_vfio_ioas_op
  std::uint16_t __reserved;
};
static_assert(sizeof(iommu_vfio_ioas) == 12);

// ---- Hardware page tables -----------------------------------------------------------------------

enum iommufd_hwpt_alloc_flags : std::uint32_t {
  IOMMU_HWPT_ALLOC_NEST_PARENT = 1U << 0,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1U << 1,
  IOMMU_HWPT_FAULT_ID_VALID = 1U << 2,
  IOMMU_HWPT_ALLOC_PASID = 1U << 3,
};

enum iommu_hwpt_data_type : std::uint32_t {
  IOMMU_HWPT_DATA_NONE = 0,
  IOMMU_HWPT_DATA_VTD_S1 = 1,
  IOMMU_HWPT_DATA_ARM_SMMUV3 = 2,
};

enum iommu_hwpt_vtd_s1_flags : std::uint32_t {
  IOMMU_VTD_S1_SRE = 1U << 0,
  IOMMU_VTD_S1_EAFE = 1U << 1,
  IOMMU_VTD_S1_WPE = 1U << 2,
};

// Data of IOMMU_HWPT_DATA_VTD_S1: a user-managed VT-d stage-1 table nested on a parent HWPT.
struct iommu_hwpt_vtd_s1 {
  alignas(8) std::uint64_t flags;  // iommu_hwpt_vtd_s1_flags
  alignas(8) std::uint64_t pgtbl_addr;
  std::uint32_t addr_width;
  std::uint32_t __reserved;
};
static_assert(sizeof(iommu_hwpt_vtd_s1) == 24);

struct iommu_hwpt_alloc {
  std::uint32_t size;
  std::uint32_t flags;  // iommufd_hwpt_alloc_flags
  std::uint32_t dev_id;
  std::uint32_t pt_id;  // IOAS, parent HWPT or vIOMMU
  std::uint32_t out_hwpt_id;
  std::uint32_t __reserved;
  std::uint32_t data_type;  // iommu_hwpt_data_type
  std::uint32_t data_len;
  alignas(8) std::uint64_t data_uptr;
  std::uint32_t fault_id;  // with IOMMU_HWPT_FAULT_ID_VALID
  std::uint32_t __reserved2;
};
static_assert(sizeof(iommu_hwpt_alloc) == 48);

// ---- Hardware information -----------------------------------------------------------------------

enum iommu_hw_info_vtd_flags : std::uint32_t {
  IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1U << 0,
};

// GET_HW_INFO data for IOMMU_HW_INFO_TYPE_INTEL_VTD: the raw VT-d CAP_REG and ECAP_REG.
struct iommu_hw_info_vtd {
  std::uint32_t flags;  // iommu_hw_info_vtd_flags
  std::uint32_t __reserved;
  alignas(8) std::uint64_t cap_reg;
  alignas(8) std::uint64_t ecap_reg;
};
static_assert(sizeof(iommu_hw_info_vtd) == 24);

enum iommu_hw_info_type : std::uint32_t {
  IOMMU_HW_INFO_TYPE_NONE = 0,     // output: the driver reports no data
  IOMMU_HW_INFO_TYPE_DEFAULT = 0,  // input: whatever the driver reports by default
  IOMMU_HW_INFO_TYPE_INTEL_VTD = 1,
  IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2,
  IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3,
};

enum iommufd_hw_capabilities : std::uint64_t {
  IOMMU_HW_CAP_DIRTY_TRACKING = 1U << 0,
  IOMMU_HW_CAP_PCI_PASID_EXEC = 1U << 1,
  IOMMU_HW_CAP_PCI_PASID_PRIV = 1U << 2,
  IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1U << 3,
};

enum iommufd_hw_info_flags : std::uint32_t {
  IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1U << 0,  // in_data_type selects the data type
};

struct iommu_hw_info {
  std::uint32_t size;
  std::uint32_t flags;  // iommufd_hw_info_flags
  std::uint32_t dev_id;
  std::uint32_t data_len;  // in: buffer length; out: length the kernel has
  alignas(8) std::uint64_t data_uptr;
  union {
    std::uint32_t in_data_type;   // with IOMMU_HW_INFO_FLAG_INPUT_TYPE
    std::uint32_t out_data_type;  // iommu_hw_info_type
  };
  std::uint8_t out_max_pasid_log2;  // 0: no PASID support
  std::uint8_t __reserved[3];
  alignas(8) std::uint64_t out_capabilities;  // iommufd_hw_capabilities
};
static_assert(sizeof(iommu_hw_info) == 40);

// ---- Dirty tracking -----------------------------------------------------------------------------

enum iommufd_hwpt_set_dirty_tracking_flags : std::uint32_t {
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1,
};

struct iommu_hwpt_set_dirty_tracking {
  std::uint32_t size;
  std::uint32_t flags;  // iommufd_hwpt_set_dirty_tracking_flags
  std::uint32_t hwpt_id;
  std::uint32_t __reserved;
};
static_assert(sizeof(iommu_hwpt_set_dirty_tracking) == 16);

enum iommufd_hwpt_get_dirty_bitmap_flags : std::uint32_t {
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1,
};

struct iommu_hwpt_get_dirty_bitmap {
  std::uint32_t size;
  std::uint32_t hwpt_id;
  std::uint32_t flags;  // iommufd_hwpt_get_dirty_bitmap_flags
  std::uint32_t __reserved;
  alignas(8) std::uint64_t iova;
  alignas(8) std::uint64_t length;
  alignas(8) std::uint64_t page_size;  // IOVA bytes per bit
  alignas(8) std::uint64_t data;       // user address of the bitmap
};
static_assert(sizeof(iommu_hwpt_get_dirty_bitmap) == 48);

// ---- Commands the emulator only rejects; layouts for their minimum sizes ------------------------

enum iommu_hwpt_invalidate_data_type : std::uint32_t {
  IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0,
  IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1,
};

enum iommu_hwpt_vtd_s1_invalidate_flags : std::uint32_t {
  IOMMU_VTD_INV_FLAGS_LEAF = 1U << 0,
};

struct iommu_hwpt_vtd_s1_invalidate {
  alignas(8) std::uint64_t addr;
  alignas(8) std::uint64_t npages;
  std::uint32_t flags;  // iommu_hwpt_vtd_s1_invalidate_flags
  std::uint32_t __reserved;
};
static_assert(sizeof(iommu_hwpt_vtd_s1_invalidate) == 24);

struct iommu_hwpt_invalidate {
  std::uint32_t size;
  std::uint32_t hwpt_id;
  alignas(8) std::uint64_t data_uptr;
  std::uint32_t data_type;  // iommu_hwpt_invalidate_data_type
  std::uint32_t entry_len;
  std::uint32_t entry_num;  // in: requests; out: requests handled
  std::uint32_t __reserved;
};
static_assert(sizeof(iommu_hwpt_invalidate) == 32);

struct iommu_fault_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t out_fault_id;
  std::uint32_t out_fault_fd;
};
static_assert(sizeof(iommu_fault_alloc) == 16);

enum iommu_viommu_type : std::uint32_t {
  IOMMU_VIOMMU_TYPE_DEFAULT = 0,
  IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1,
  IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = 2,
};

struct iommu_viommu_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t type;  // iommu_viommu_type
  std::uint32_t dev_id;
  std::uint32_t hwpt_id;
  std::uint32_t out_viommu_id;
  std::uint32_t data_len;
  std::uint32_t __reserved;
  alignas(8) std::uint64_t data_uptr;
};
static_assert(sizeof(iommu_viommu_alloc) == 40);

struct iommu_vdevice_alloc {
  std::uint32_t size;
  std::uint32_t viommu_id;
  std::uint32_t dev_id;
  std::uint32_t out_vdevice_id;
  alignas(8) std::uint64_t virt_id;
};
static_assert(sizeof(iommu_vdevice_alloc) == 24);

struct iommu_ioas_change_process {
  std::uint32_t size;
  std::uint32_t __reserved;
};
static_assert(sizeof(iommu_ioas_change_process) == 8);

enum iommu_veventq_type : std::uint32_t {
  IOMMU_VEVENTQ_TYPE_DEFAULT = 0,
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1,
  IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2,
};

struct iommu_veventq_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t viommu_id;
  std::uint32_t type;  // iommu_veventq_type
  std::uint32_t veventq_depth;
  std::uint32_t out_veventq_id;
  std::uint32_t out_veventq_fd;
  std::uint32_t __reserved;
};
static_assert(sizeof(iommu_veventq_alloc) == 32);

enum iommu_hw_queue_type : std::uint32_t {
  IOMMU_HW_QUEUE_TYPE_DEFAULT = 0,
  IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV = 1,
};

struct iommu_hw_queue_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t viommu_id;
  std::uint32_t type;  // iommu_hw_queue_type
  std::uint32_t index;
  std::uint32_t out_hw_queue_id;
  alignas(8) std::uint64_t nesting_parent_iova;
  alignas(8) std::uint64_t length;
};
static_assert(sizeof(iommu_hw_queue_alloc) == 40);

}  // namespace vfio_emu::uapi
