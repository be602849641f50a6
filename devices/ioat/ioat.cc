#include "devices/ioat/ioat.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <optional>

#include "base/errno_name.h"

namespace vfio_emu::devices::ioat {
namespace {

// Where a register lives in BAR0: its first byte and its width.
struct Span {
  u64 offset;
  u32 width;
};

constexpr std::array<Span, 10> kDeviceRegs = {{
    {kRegChanCnt, 1}, {kRegXferCap, 1}, {kRegGenCtrl, 1}, {kRegIntrCtrl, 1},
    {kRegAttnStatus, 4}, {kRegCbVer, 1}, {kRegPerPortOffset, 2}, {kRegIntrDelay, 2},
    {kRegDeviceStatus, 2}, {kRegDmaCap, 4},
}};

constexpr std::array<Span, 11> kChannelRegs = {{
    {kChanCtrl, 2}, {kChanDmaComp, 2}, {kChanCmd, 1}, {kChanDmaCount, 2}, {kChanSts, 8},
    {kChanChainAddr, 8}, {kChanCmp, 8}, {kChanCdar, 8}, {kChanErr, 4}, {kChanErrMask, 4},
    {kChanDcaCtrl, 4},
}};

// The register holding BAR0 byte `b`, if any (as an absolute span).
std::optional<Span> register_at(u64 b, u32 channels) {
  if (b < kChannelStride) {
    for (const Span& s : kDeviceRegs)
      if (b >= s.offset && b < s.offset + s.width) return s;
    return std::nullopt;
  }
  const u64 ch = b / kChannelStride - 1;
  if (ch >= channels) return std::nullopt;
  const u64 rel = b % kChannelStride;
  for (const Span& s : kChannelRegs)
    if (rel >= s.offset && rel < s.offset + s.width) return Span{b - rel + s.offset, s.width};
  return std::nullopt;
}

}  // namespace

std::vector<RegisterSpan> bar0_registers(u32 channels) {
  std::vector<RegisterSpan> regs;
  for (const Span& s : kDeviceRegs) regs.push_back(RegisterSpan{s.offset, s.width});
  for (u32 ch = 0; ch < channels && ch < kMaxChannels; ++ch)
    for (const Span& s : kChannelRegs)
      regs.push_back(RegisterSpan{channel_base(ch) + s.offset, s.width});
  return regs;
}

namespace {

bool valid_access(u64 offset, u32 size) {
  return (size == 1 || size == 2 || size == 4 || size == 8) && offset < kBar0Size &&
         size <= kBar0Size - offset;
}

u64 merge(u64 old, u64 data, u64 mask) { return (old & ~mask) | (data & mask); }

constexpr u64 kBounceMax = 1024 * 1024;

}  // namespace

IoatDevice::IoatDevice(IoatConfig config, DmaPort& dma, InterruptSink& irq)
    : config_(std::move(config)), dma_(dma), irq_(irq),
      log_(config_.log ? config_.log : spdlog::default_logger()) {
  const u64 bounce = std::min<u64>(kBounceMax, u64{1} << config_.xfercap_log);
  for (u32 i = 0; i < kMaxChannels; ++i) {
    chans_[i].index = i;
    if (i < config_.channels) chans_[i].bounce.resize(bounce);
  }
}

IoatDevice::~IoatDevice() = default;

Result<std::unique_ptr<IoatDevice>> IoatDevice::create(IoatConfig config, DmaPort& dma,
                                                       InterruptSink& irq) {
  if (config.channels < 1 || config.channels > kMaxChannels) return err(EINVAL);
  if (config.xfercap_log < 12 || config.xfercap_log > 24) return err(EINVAL);
  if (config.version != kCbVer32 && config.version != kCbVer33) return err(EINVAL);
  return std::unique_ptr<IoatDevice>(new IoatDevice(std::move(config), dma, irq));
}

// ---- State helpers -----------------------------------------------------------------------------

ChanState IoatDevice::state(const Channel& ch) const {
  return static_cast<ChanState>(ch.chansts & kChanStsStateMask);
}

void IoatDevice::set_state(Channel& ch, ChanState s) {
  ch.chansts = (ch.chansts & ~kChanStsStateMask) | static_cast<u64>(s);
}

bool IoatDevice::runnable(const Channel& ch) const {
  return state(ch) == ChanState::kActive && outstanding(ch) != 0 && !ch.in_flight &&
         !ch.reset_pending && !ch.suspend_pending && !ch.abort_pending && reset_waiters_ == 0;
}

bool IoatDevice::has_work_locked() const {
  for (u32 i = 0; i < config_.channels; ++i)
    if (runnable(chans_[i])) return true;
  return false;
}

// Linux sets MASTER_INT_EN (with MSIX_VECTOR_CONTROL in MSI-X mode, ioat_dma_setup_interrupts);
// the selftests set MSIX_VECTOR_CONTROL alone (ioat_init) and expect their MSI-X vector 0 to
// fire, so either bit enables interrupts.
bool IoatDevice::interrupts_enabled() const {
  return (intrctrl_ & (kIntrCtrlMasterIntEn | kIntrCtrlMsixVectorCtl)) != 0;
}

// INT_REARM arms one interrupt: firing disarms the channel until the driver writes CHANCTRL with
// INT_REARM again (Linux does at the end of each cleanup). Our rule: an interrupt that comes due
// while disarmed is remembered and fires at the rearm, so none is lost.
int IoatDevice::raise_locked(Channel& ch) {
  if (!interrupts_enabled()) return -1;
  if (!(ch.chanctrl & kChanCtrlIntRearm)) {
    ch.irq_pending = true;
    return -1;
  }
  ch.chanctrl &= static_cast<u16>(~kChanCtrlIntRearm);
  ch.irq_pending = false;
  attnstatus_ |= u32{1} << ch.index;
  // One vector per channel in MSI-X mode; in MSI/INTx mode the device has one interrupt.
  return (intrctrl_ & kIntrCtrlMsixVectorCtl) ? static_cast<int>(ch.index) : 0;
}

// ---- MMIO --------------------------------------------------------------------------------------

u64 IoatDevice::mmio_read(u64 offset, u32 size) {
  if (!valid_access(offset, size)) return 0;
  std::lock_guard lock(mu_);
  u64 value = 0;
  std::optional<Span> cached;
  u64 reg_value = 0;
  for (u32 i = 0; i < size; ++i) {
    const u64 b = offset + i;
    const std::optional<Span> s = register_at(b, config_.channels);
    if (!s) continue;
    if (!cached || cached->offset != s->offset) {
      cached = s;
      reg_value = read_reg_locked(s->offset, s->width);
    }
    value |= ((reg_value >> (8 * (b - s->offset))) & 0xff) << (8 * i);
  }
  return value;
}

void IoatDevice::mmio_write(u64 offset, u64 value, u32 size) {
  if (!valid_access(offset, size)) return;
  std::vector<int> vectors;
  {
    std::lock_guard lock(mu_);
    u32 i = 0;
    while (i < size) {
      const std::optional<Span> s = register_at(offset + i, config_.channels);
      if (!s) {
        ++i;
        continue;
      }
      // Every byte of this access that falls in register *s, placed where it sits in it.
      u64 data = 0;
      u64 mask = 0;
      for (; i < size && offset + i < s->offset + s->width; ++i) {
        const u64 shift = 8 * (offset + i - s->offset);
        data |= ((value >> (8 * i)) & 0xff) << shift;
        mask |= u64{0xff} << shift;
      }
      const int v = write_reg_locked(s->offset, s->width, data, mask);
      if (v >= 0) vectors.push_back(v);
    }
  }
  for (int v : vectors) irq_.msix(static_cast<u32>(v));
}

u64 IoatDevice::read_reg_locked(u64 reg_offset, u32) {
  if (reg_offset < kChannelStride) {
    switch (reg_offset) {
      case kRegChanCnt: return config_.channels;
      case kRegXferCap: return config_.xfercap_log;
      case kRegGenCtrl: return genctrl_;
      case kRegIntrCtrl: {
        u8 v = intrctrl_;
        if (attnstatus_ != 0) v |= kIntrCtrlIntStatus;
        if (attnstatus_ != 0 && (intrctrl_ & kIntrCtrlMasterIntEn)) v |= kIntrCtrlInt;
        return v;
      }
      case kRegAttnStatus: return attnstatus_;
      case kRegCbVer: return config_.version;
      case kRegIntrDelay: return intrdelay_;  // no coalescing: bit 15 reads 0
      default: return 0;  // PERPORTOFFSET, DEVICE_STATUS, DMA_CAP
    }
  }
  const Channel& ch = chans_[reg_offset / kChannelStride - 1];
  switch (reg_offset % kChannelStride) {
    case kChanCtrl: return ch.chanctrl;
    case kChanDmaComp: return kDmaCompV2;
    case kChanCmd: return ch.reset_pending ? kChanCmdReset : 0;
    case kChanDmaCount: return ch.dmacount;
    case kChanSts: return ch.chansts;
    case kChanChainAddr: return ch.chainaddr;
    case kChanCmp: return ch.chancmp;
    case kChanCdar: return ch.cdar;
    case kChanErr: return ch.chanerr;
    case kChanErrMask: return ch.chanerr_mask;
    case kChanDcaCtrl: return ch.dcactrl;
    default: return 0;
  }
}

int IoatDevice::write_reg_locked(u64 reg_offset, u32, u64 data, u64 mask) {
  if (reg_offset >= kChannelStride)
    return write_channel_reg_locked(chans_[reg_offset / kChannelStride - 1],
                                    reg_offset % kChannelStride, data, mask);
  switch (reg_offset) {
    case kRegGenCtrl:
      genctrl_ = static_cast<u8>(merge(genctrl_, data, mask) & 0x01);
      break;
    case kRegIntrCtrl:
      intrctrl_ = static_cast<u8>(merge(intrctrl_, data, mask) & kIntrCtrlWritable);
      break;
    case kRegIntrDelay:
      intrdelay_ = static_cast<u16>(merge(intrdelay_, data, mask) & kIntrDelayMask);
      break;
    default:
      break;  // read-only
  }
  return -1;
}

int IoatDevice::write_channel_reg_locked(Channel& ch, u64 reg, u64 data, u64 mask) {
  switch (reg) {
    case kChanCtrl: {
      ch.chanctrl = static_cast<u16>(merge(ch.chanctrl, data, mask) & kChanCtrlWritable);
      if (!(ch.chanctrl & kChanCtrlIntRearm)) return -1;
      attnstatus_ &= ~(u32{1} << ch.index);
      return ch.irq_pending ? raise_locked(ch) : -1;
    }
    case kChanCmd:
      chancmd_locked(ch, static_cast<u8>(data & 0xff));
      return -1;
    case kChanDmaCount:
      ch.dmacount = static_cast<u16>(merge(ch.dmacount, data, mask));
      doorbell_locked(ch);
      return -1;
    case kChanChainAddr:
      ch.chainaddr = merge(ch.chainaddr, data, mask);
      // A new chain starts here and the count starts again from 0 (Linux __ioat_restart_chan
      // zeroes its dmacount when it rewrites CHAINADDR; the selftests write CHAINADDR and then a
      // DMACOUNT of 1 for every copy). A running channel keeps following its chain. (A channel
      // that shows DONE while its last completion write is in flight takes the new chain: process()
      // has already moved past next_desc and done_count.)
      if (state(ch) == ChanState::kActive) {
        if (log_allowed(ch))
          log_->warn("ioat chan {}: CHAINADDR {:#x} written while active, ignored", ch.index,
                     ch.chainaddr);
        return -1;
      }
      ch.next_desc = ch.chainaddr;
      ch.next_from_chainaddr = true;
      ch.done_count = 0;
      return -1;
    case kChanCmp:
      ch.chancmp = merge(ch.chancmp, data, mask);
      return -1;
    case kChanErr:
      ch.chanerr &= ~static_cast<u32>(data & mask);  // write 1 to clear
      return -1;
    case kChanErrMask:
      ch.chanerr_mask = static_cast<u32>(merge(ch.chanerr_mask, data, mask));
      return -1;
    case kChanDcaCtrl:
      ch.dcactrl = static_cast<u32>(merge(ch.dcactrl, data, mask) & kDcaCtrlWritable);
      return -1;
    default:
      return -1;  // DMA_COMP, CHANSTS, CDAR: read-only
  }
}

void IoatDevice::chancmd_locked(Channel& ch, u8 cmd) {
  if (cmd & kChanCmdReset) {
    // The reset waits for the descriptor in flight; CHANCMD reads RESET until then.
    if (ch.in_flight)
      ch.reset_pending = true;
    else
      reset_channel_locked(ch);
    return;
  }
  if (cmd & kChanCmdAbort) {
    if (ch.in_flight)
      ch.abort_pending = true;
    else if (!ch.error_halted)
      set_state(ch, ChanState::kHalted);
  } else if (cmd & kChanCmdSuspend) {
    if (ch.in_flight)
      ch.suspend_pending = true;
    else if (state(ch) == ChanState::kActive || state(ch) == ChanState::kDone)
      set_state(ch, ChanState::kSuspended);
  }
  if (cmd & kChanCmdResume) {
    ch.suspend_pending = false;
    if (state(ch) == ChanState::kSuspended) {
      set_state(ch, outstanding(ch) ? ChanState::kActive : ChanState::kDone);
      work_cv_.notify_all();
    }
  }
  if (cmd & (kChanCmdStart | kChanCmdAppend))
    log_->debug("ioat chan {}: CHANCMD {:#x}: START/APPEND are CB1 commands, ignored", ch.index,
                cmd);
}

// DMACOUNT is the driver's running count of descriptors it has made valid; the channel runs
// until its own count of completed descriptors equals it. A doorbell also restarts a channel
// that is DONE, SUSPENDED (the selftests ring after SUSPEND) or HALTED by a reset or ABORT, but
// never one halted by an error: that takes a reset.
void IoatDevice::doorbell_locked(Channel& ch) {
  if (ch.error_halted) {
    log_->debug("ioat chan {}: DMACOUNT {:#x} while halted by CHANERR {:#x}, ignored", ch.index,
                ch.dmacount, ch.chanerr);
    return;
  }
  if (outstanding(ch) == 0) return;
  if (state(ch) != ChanState::kActive) set_state(ch, ChanState::kActive);
  work_cv_.notify_all();
}

void IoatDevice::reset_channel_locked(Channel& ch) {
  std::vector<u8> bounce = std::move(ch.bounce);
  const u32 index = ch.index;
  ch = Channel{};
  ch.index = index;
  ch.bounce = std::move(bounce);
  attnstatus_ &= ~(u32{1} << index);
}

void IoatDevice::settle_locked(Channel& ch) {
  if (ch.reset_pending) {
    reset_channel_locked(ch);
    return;
  }
  if (ch.abort_pending) {
    ch.abort_pending = false;
    ch.suspend_pending = false;
    if (!ch.error_halted) set_state(ch, ChanState::kHalted);
  } else if (ch.suspend_pending) {
    ch.suspend_pending = false;
    if (state(ch) == ChanState::kActive || state(ch) == ChanState::kDone)
      set_state(ch, ChanState::kSuspended);
  }
}

void IoatDevice::reset() {
  std::unique_lock lock(mu_);
  ++reset_waiters_;  // process() starts nothing new while a reset waits
  idle_cv_.wait(lock, [&] {
    return std::none_of(chans_.begin(), chans_.end(), [](const Channel& c) { return c.in_flight; });
  });
  --reset_waiters_;
  for (Channel& ch : chans_) reset_channel_locked(ch);
  genctrl_ = 0;
  intrctrl_ = 0;
  intrdelay_ = 0;
  attnstatus_ = 0;
}

// ---- Processing --------------------------------------------------------------------------------

bool IoatDevice::has_work() {
  std::lock_guard lock(mu_);
  return has_work_locked();
}

bool IoatDevice::wait_for_work(std::chrono::nanoseconds timeout) {
  std::unique_lock lock(mu_);
  const u64 gen = wake_gen_;
  work_cv_.wait_for(lock, timeout, [&] { return wake_gen_ != gen || has_work_locked(); });
  return has_work_locked();
}

void IoatDevice::wake() {
  {
    std::lock_guard lock(mu_);
    ++wake_gen_;
  }
  work_cv_.notify_all();
}

u32 IoatDevice::process(u32 budget) {
  u32 ran = 0;
  while (ran < budget) {
    std::unique_lock lock(mu_);
    Channel* ch = nullptr;
    for (u32 k = 0; k < config_.channels && !ch; ++k) {
      Channel& c = chans_[(next_channel_ + k) % config_.channels];
      if (runnable(c)) ch = &c;
    }
    if (!ch) break;
    next_channel_ = (ch->index + 1) % config_.channels;
    ch->in_flight = true;
    ch->cdar = ch->next_desc;
    const u64 desc_addr = ch->next_desc;
    const bool from_chainaddr = ch->next_from_chainaddr;
    lock.unlock();

    Outcome o = execute(*ch, desc_addr, from_chainaddr, u32{1} << config_.xfercap_log);
    ++ran;

    lock.lock();
    if (ch->reset_pending) {
      // Reset while in flight: the descriptor reports nothing (no status, completion write or
      // interrupt); whatever it copied stays copied, as on hardware.
      ch->in_flight = false;
      settle_locked(*ch);
      lock.unlock();
      idle_cv_.notify_all();
      continue;
    }
    // What the descriptor asks for, decided with the registers as they are now.
    bool write_completion = false;
    bool interrupt = false;
    if (o.error == 0) {
      ++ch->done_count;
      ch->next_desc = o.desc.next;
      ch->next_from_chainaddr = false;
      ch->chansts = (desc_addr & kChanStsAddrMask) |
                    static_cast<u64>(outstanding(*ch) ? ChanState::kActive : ChanState::kDone);
      write_completion = o.desc.ctl.compl_write;
      interrupt = o.desc.ctl.int_en;
    } else {
      ch->chanerr |= o.error;
      ch->error_halted = true;
      set_state(*ch, ChanState::kHalted);
      log_halt(*ch, o, o.error);
      write_completion = (ch->chanctrl & kChanCtrlErrCompletionEn) != 0;
      interrupt = (ch->chanctrl & kChanCtrlErrIntEn) && !(o.error & ch->chanerr_mask);
    }
    const u64 completion_addr = ch->chancmp;
    const u64 completion_value = ch->chansts;
    lock.unlock();

    // The channel stays in flight during the completion write, so a reset still waits for it.
    u32 completion_error = 0;
    if (write_completion) {
      if (completion_addr % kCompletionAlign != 0) {
        completion_error = kChanErrCompletionAddr;
      } else if (Status s = dma_.write(completion_addr, &completion_value, 8); !s) {
        completion_error = kChanErrCompletionAddr;
        o.dma_errno = s.error();
      }
      o.fault_iova = completion_addr;
    }

    lock.lock();
    if (completion_error != 0) {
      ch->chanerr |= completion_error;
      const bool first_error = !ch->error_halted;
      ch->error_halted = true;
      set_state(*ch, ChanState::kHalted);
      log_halt(*ch, o, completion_error);
      // A descriptor whose completion write failed reports through the error interrupt only; a
      // halt already being reported keeps its own.
      if (first_error)
        interrupt = (ch->chanctrl & kChanCtrlErrIntEn) && !(completion_error & ch->chanerr_mask);
    }
    ch->in_flight = false;
    const bool reset_came = ch->reset_pending;
    settle_locked(*ch);
    const int vector = (interrupt && !reset_came) ? raise_locked(*ch) : -1;
    lock.unlock();
    idle_cv_.notify_all();
    if (vector >= 0) irq_.msix(static_cast<u32>(vector));
  }
  return ran;
}

IoatDevice::Outcome IoatDevice::execute(Channel& ch, u64 desc_addr, bool from_chainaddr,
                                        u32 max_size) {
  Outcome o;
  o.desc_addr = desc_addr;
  if (desc_addr % kDescriptorAlign != 0) {
    o.error = from_chainaddr ? kChanErrChainAddrValue : kChanErrNextDescAlign;
    return o;
  }
  if (Status s = dma_.read(desc_addr, &o.desc, kDescriptorSize); !s) {
    o.error = kChanErrNextAddr;
    o.dma_errno = s.error();
    o.fault_iova = desc_addr;
    return o;
  }
  o.fetched = true;
  const DmaDescriptor& d = o.desc;
  if (d.ctl.op != static_cast<u32>(Op::kCopy)) {
    o.error = kChanErrControl;
    return o;
  }
  // Size 0 is an error even for a null descriptor (Linux __ioat_start_null_desc: "channel
  // returns error when size is 0"); a copy is at most 2^XFERCAP bytes (Linux splits at it).
  if (d.size == 0 || d.size > max_size) {
    o.error = kChanErrLength;
    return o;
  }
  if (!d.ctl.null) copy(ch, d, o);
  return o;
}

void IoatDevice::copy(Channel& ch, const DmaDescriptor& d, Outcome& o) {
  // An address range that wraps past 2^64 cannot be mapped: report it as that side's error.
  if (d.src_addr + (d.size - 1) < d.src_addr) {
    o.error = kChanErrSrcAddr;
    o.fault_iova = d.src_addr;
    return;
  }
  if (d.dst_addr + (d.size - 1) < d.dst_addr) {
    o.error = kChanErrDestAddr;
    o.fault_iova = d.dst_addr;
    return;
  }
  u64 done = 0;
  while (done < d.size) {
    const u64 n = std::min<u64>(d.size - done, ch.bounce.size());
    if (Status s = dma_.read(d.src_addr + done, ch.bounce.data(), n); !s) {
      o.error = kChanErrSrcAddr;
      o.dma_errno = s.error();
      o.fault_iova = d.src_addr + done;
      return;
    }
    if (Status s = dma_.write(d.dst_addr + done, ch.bounce.data(), n); !s) {
      o.error = kChanErrDestAddr;
      o.dma_errno = s.error();
      o.fault_iova = d.dst_addr + done;
      return;
    }
    done += n;
  }
}

bool IoatDevice::log_allowed(const Channel& ch) const {
  const LogRateLimiter::Verdict v = log_limit_.allow(static_cast<pid_t>(ch.index));
  if (v.log && v.suppressed != 0)
    log_->warn("ioat chan {}: {} log lines suppressed", ch.index, v.suppressed);
  return v.log;
}

void IoatDevice::log_halt(const Channel& ch, const Outcome& o, u32 error) const {
  if (!log_allowed(ch)) return;
  if (!o.fetched) {
    log_->warn("ioat chan {}: halted, CHANERR {:#x}: descriptor at {:#x} unreadable ({})",
               ch.index, error, o.desc_addr, o.dma_errno ? errno_name(o.dma_errno) : "misaligned");
    return;
  }
  const DmaDescriptor& d = o.desc;
  log_->warn(
      "ioat chan {}: halted, CHANERR {:#x}: desc {:#x} op {:#x} ctl {:#x} size {:#x} src {:#x} "
      "dst {:#x} completion {:#x}; fault iova {:#x} ({})",
      ch.index, error, o.desc_addr, static_cast<u32>(d.ctl.op), std::bit_cast<u32>(d.ctl), d.size,
      d.src_addr, d.dst_addr, ch.chancmp, o.fault_iova,
      o.dma_errno ? errno_name(o.dma_errno) : "-");
}

}  // namespace vfio_emu::devices::ioat
