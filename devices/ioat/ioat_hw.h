// Intel I/OAT ("Crystal Beach DMA") hardware formats, described once: the BAR0 register file and
// the descriptors a driver writes into memory.
//
// Sources: Linux drivers/dma/ioat/registers.h and hw.h (register offsets, bits, the descriptor
// layout), drivers/dma/ioat/{init,dma}.c (how Linux programs them), and the ioat driver of
// Linux's VFIO selftests (tools/testing/selftests/vfio/lib/drivers/ioat/ioat.c), which drives
// channel 0 with one self-linked descriptor. Where a rule below is ours rather than the
// hardware's, the comment says so.
#pragma once

#include <bit>

#include "base/ints.h"

namespace vfio_emu::devices::ioat {

static_assert(std::endian::native == std::endian::little,
              "descriptors and registers are little-endian; the model reads them as host structs");

// ---- PCI identity ------------------------------------------------------------------------------

constexpr u16 kVendorIntel = 0x8086;
// Skylake-SP (Xeon Scalable) CB3.x: in Linux's ioat_pci_tbl (PCI_DEVICE_ID_INTEL_IOAT_SKX) and the
// only id the VFIO selftests' ioat_probe() matches.
constexpr u16 kDeviceIdSkx = 0x2021;

// CBVER values. The selftests accept 3.2 and 3.3; Linux takes any version >= 3.0 to ioat3 and
// treats SKX as 3.2 whatever it reads (ioat_pci_probe), so either works for both drivers.
constexpr u8 kCbVer32 = 0x32;
constexpr u8 kCbVer33 = 0x33;

// BAR0 is 16 KiB (QEMU's ioatdma emulation uses the same size). The register file is the first
// 0x80 * (channels + 1) bytes; the rest reads 0 (the PCI model may place the MSI-X table there).
constexpr u64 kBar0Size = 0x4000;

// Linux keeps at most IOAT_MAX_CHANS = 4 channels per device (ioat_enumerate_channels clamps).
constexpr u32 kMaxChannels = 4;

// ---- Device-wide registers (BAR0 offsets) ------------------------------------------------------

constexpr u64 kRegChanCnt = 0x00;        //  8-bit RO: number of channels, bits 4:0
constexpr u64 kRegXferCap = 0x01;        //  8-bit RO: log2 of the largest transfer, bits 4:0
constexpr u64 kRegGenCtrl = 0x02;        //  8-bit RW: bit 0 debug enable
constexpr u64 kRegIntrCtrl = 0x03;       //  8-bit: see IntrCtrl
constexpr u64 kRegAttnStatus = 0x04;     // 32-bit RO: bit n = channel n wants attention
constexpr u64 kRegCbVer = 0x08;          //  8-bit RO: major << 4 | minor
constexpr u64 kRegPerPortOffset = 0x0a;  // 16-bit RO: DCA registers (no DCA here: 0)
constexpr u64 kRegIntrDelay = 0x0c;      // 16-bit: bits 13:0 delay (RW), bit 15 coalescing (RO)
constexpr u64 kRegDeviceStatus = 0x0e;   // 16-bit RO
constexpr u64 kRegDmaCap = 0x10;         // 32-bit RO: see the kCap* bits

// INTRCTRL (registers.h IOAT_INTRCTRL_*).
constexpr u8 kIntrCtrlMasterIntEn = 0x01;   // RW: Linux sets it in every interrupt mode
constexpr u8 kIntrCtrlIntStatus = 0x02;     // RO: ATTNSTATUS != 0
constexpr u8 kIntrCtrlInt = 0x04;           // RO: INT_STATUS and MASTER_INT_EN
constexpr u8 kIntrCtrlMsixVectorCtl = 0x08; // RW: one MSI-X vector per channel
constexpr u8 kIntrCtrlWritable = kIntrCtrlMasterIntEn | kIntrCtrlMsixVectorCtl;

constexpr u16 kIntrDelayMask = 0x3fff;
constexpr u16 kIntrDelayCoalesceSupport = 0x8000;

// DMA_CAP bits (registers.h IOAT_CAP_*). This model advertises none of them: memcpy and null
// descriptors need no capability bit on CB3, and without XOR/PQ/DCA bits Linux issues nothing else.
constexpr u32 kCapPageBreak = 0x00000001;
constexpr u32 kCapDca = 0x00000010;
constexpr u32 kCapFillBlock = 0x00000040;
constexpr u32 kCapXor = 0x00000100;
constexpr u32 kCapPq = 0x00000200;
constexpr u32 kCapDwbes = 0x00002000;
constexpr u32 kCapRaid16ss = 0x00020000;

// ---- Channel registers (offsets inside a channel's 0x80-byte window) ---------------------------

constexpr u64 kChannelStride = 0x80;
// Channel n's registers start at 0x80 * (n + 1) (Linux ioat_init_channel; the selftests use
// BAR0 + IOAT_CHANNEL_MMIO_SIZE for channel 0).
constexpr u64 channel_base(u32 n) { return kChannelStride * (n + 1); }

constexpr u64 kChanCtrl = 0x00;     // 16-bit RW: see ChanCtrl
constexpr u64 kChanDmaComp = 0x02;  // 16-bit RO: compatibility
constexpr u64 kChanCmd = 0x04;      //  8-bit: commands (CB2+ offset, IOAT2_CHANCMD_OFFSET)
constexpr u64 kChanDmaCount = 0x06; // 16-bit RW: the doorbell, a running descriptor count
constexpr u64 kChanSts = 0x08;      // 64-bit RO: completed descriptor address | status
constexpr u64 kChanChainAddr = 0x10;// 64-bit RW: first descriptor (IOAT2_CHAINADDR_OFFSET)
constexpr u64 kChanCmp = 0x18;      // 64-bit RW: completion write address
constexpr u64 kChanCdar = 0x20;     // 64-bit RO: current descriptor address
constexpr u64 kChanErr = 0x28;      // 32-bit RW1C: see the kChanErr* bits
constexpr u64 kChanErrMask = 0x2c;  // 32-bit RW
constexpr u64 kChanDcaCtrl = 0x30;  // 32-bit RW: DCA target (stored, not used)

// CHANCTRL (registers.h IOAT_CHANCTRL_*). Linux writes IOAT_CHANCTRL_RUN (INT_REARM | ERR_INT_EN |
// ERR_COMPLETION_EN | ANY_ERR_ABORT_EN); the selftests write INT_REARM | ANY_ERR_ABORT_EN.
constexpr u16 kChanCtrlIntRearm = 0x0001;
constexpr u16 kChanCtrlErrCompletionEn = 0x0004;
constexpr u16 kChanCtrlAnyErrAbortEn = 0x0008;
constexpr u16 kChanCtrlErrIntEn = 0x0010;
constexpr u16 kChanCtrlDescAddrSnoop = 0x0020;
constexpr u16 kChanCtrlInUse = 0x0100;
constexpr u16 kChanCtrlComplDcaEn = 0x0200;
constexpr u16 kChanCtrlPriorityMask = 0xf000;
constexpr u16 kChanCtrlWritable = kChanCtrlIntRearm | kChanCtrlErrCompletionEn |
                                  kChanCtrlAnyErrAbortEn | kChanCtrlErrIntEn |
                                  kChanCtrlDescAddrSnoop | kChanCtrlInUse | kChanCtrlComplDcaEn |
                                  kChanCtrlPriorityMask;

constexpr u16 kDmaCompV2 = 0x0002;  // IOAT_DMA_COMP_V2: the CB2+ register layout

// CHANCMD (registers.h IOAT_CHANCMD_*). RESET reads back as set until the reset is done; the
// drivers poll for it to clear (Linux ioat_reset_sync, the selftests' ioat_reset).
constexpr u8 kChanCmdStart = 0x01;   // CB1 only
constexpr u8 kChanCmdAppend = 0x02;  // CB1 only
constexpr u8 kChanCmdSuspend = 0x04;
constexpr u8 kChanCmdAbort = 0x08;
constexpr u8 kChanCmdResume = 0x10;
constexpr u8 kChanCmdReset = 0x20;

// CHANSTS: bits 63:6 are the address of the last completed descriptor, bits 2:0 the state
// (registers.h IOAT_CHANSTS_*). The same value is what a completion write stores.
struct ChanSts {
  u64 state : 3;             // 2:0  ChanState
  u64 unaffiliated_err : 1;  // 3
  u64 soft_err : 1;          // 4
  u64 rsvd5 : 1;             // 5
  u64 completed : 58;        // 63:6 completed descriptor address >> 6
};
static_assert(sizeof(ChanSts) == 8);

enum class ChanState : u8 {
  kActive = 0,     // descriptors outstanding
  kDone = 1,       // idle: every counted descriptor completed ("idle" in Linux dma.h)
  kSuspended = 2,
  kHalted = 3,     // after reset, after ABORT, after an error
};

constexpr u64 kChanStsStateMask = 0x7;
constexpr u64 kChanStsAddrMask = ~u64{0x3f};

// CHANERR (registers.h IOAT_CHANERR_*, names as Linux's chanerr_str prints them).
constexpr u32 kChanErrSrcAddr = 0x0001;         // DMA transfer source address error
constexpr u32 kChanErrDestAddr = 0x0002;        // DMA transfer destination address error
constexpr u32 kChanErrNextAddr = 0x0004;        // next descriptor address error
constexpr u32 kChanErrNextDescAlign = 0x0008;   // descriptor error ("next desc align")
constexpr u32 kChanErrChainAddrValue = 0x0010;  // CHAINADDR value error
constexpr u32 kChanErrChanCmd = 0x0020;         // CHANCMD error
constexpr u32 kChanErrReadData = 0x0100;
constexpr u32 kChanErrWriteData = 0x0200;
constexpr u32 kChanErrControl = 0x0400;         // descriptor control error (op, reserved use)
constexpr u32 kChanErrLength = 0x0800;          // descriptor transfer size error
constexpr u32 kChanErrCompletionAddr = 0x1000;  // completion address error
constexpr u32 kChanErrIntConfiguration = 0x2000;
constexpr u32 kChanErrDescriptorCount = 0x40000;

constexpr u32 kDcaCtrlWritable = 0x0001ffff;  // CMPL_WRITE_ENABLE | target APIC id

// PCI config-space registers the drivers touch (registers.h IOAT_PCI_*): Linux and the selftests
// read CHANERR_INT and DMAUNCERRSTS and write the value back to clear them. They belong to the
// config-space model, not to BAR0.
constexpr u32 kPciDmaUncErrSts = 0x148;
constexpr u32 kPciChanErrInt = 0x180;
constexpr u32 kPciChanErrMaskInt = 0x184;

// ---- Descriptors -------------------------------------------------------------------------------

// Descriptor control word of a DMA (memcpy) descriptor, hw.h struct ioat_dma_descriptor ctl_f.
struct DescriptorControl {
  u32 int_en : 1;          // 0   interrupt when this descriptor completes
  u32 src_snoop_dis : 1;   // 1
  u32 dest_snoop_dis : 1;  // 2
  u32 compl_write : 1;     // 3   write CHANSTS to CHANCMP when this descriptor completes
  u32 fence : 1;           // 4   later descriptors wait for this one (always true here)
  u32 null : 1;            // 5   move no data
  u32 src_brk : 1;         // 6
  u32 dest_brk : 1;        // 7
  u32 bundle : 1;          // 8
  u32 dest_dca : 1;        // 9
  u32 hint : 1;            // 10
  u32 rsvd11 : 13;         // 23:11
  u32 op : 8;              // 31:24 Op
};
static_assert(sizeof(DescriptorControl) == 4);

// Operation codes (hw.h IOAT_OP_*). This model executes kCopy (and null descriptors, which are
// copies with the null bit); every other code is a control error.
enum class Op : u8 {
  kCopy = 0x00,
  kFill = 0x01,
  kXor = 0x87,
  kXorVal = 0x88,
  kPq = 0x89,
  kPqVal = 0x8a,
  kPqUpdate = 0x8b,
};

// The 64-byte DMA descriptor (hw.h struct ioat_dma_descriptor). Descriptors are 64-byte aligned;
// `next` links them (Linux: a ring of 2^16; the selftests: one descriptor linked to itself).
struct DmaDescriptor {
  u32 size;               // bytes to move; 0 is an error even for a null descriptor
  DescriptorControl ctl;
  u64 src_addr;
  u64 dst_addr;
  u64 next;
  u64 rsvd1;
  u64 rsvd2;
  u64 user1;              // ignored by hardware; drivers keep their own data here
  u64 user2;
};
static_assert(sizeof(DmaDescriptor) == 64);

constexpr u64 kDescriptorSize = sizeof(DmaDescriptor);
constexpr u64 kDescriptorAlign = 64;
// A completion write stores 8 bytes; this model requires them naturally aligned (Linux allocates
// the completion area 64-byte aligned, so this never refuses what Linux does).
constexpr u64 kCompletionAlign = 8;

}  // namespace vfio_emu::devices::ioat
