#include "devices/register_mirror.h"

#include <utility>

namespace vfio_emu::devices {

using Role = MirroredRegister::Role;

RegisterMirror::RegisterMirror(BarWindow& window, std::vector<MirroredRegister> regs)
    : window_(window), regs_(std::move(regs)), shown_(regs_.size()), scanned_(regs_.size()) {
  for (size_t i = 0; i < regs_.size(); ++i) shown_[i] = window_.load(regs_[i].offset, regs_[i].width);
  // Scanned: commands, doorbells, the rest; applied: the rest, doorbells, commands. A scan that
  // sees a command also sees a doorbell rung before it (stores become visible in program order),
  // and a scan that sees a doorbell sees what was written before ringing it.
  auto add = [this](std::vector<size_t>& order, Role role) {
    for (size_t i = 0; i < regs_.size(); ++i) {
      const bool other = regs_[i].role != Role::kCommand && regs_[i].role != Role::kDoorbell;
      if (role == Role::kPlain ? other : regs_[i].role == role) order.push_back(i);
    }
  };
  for (Role r : {Role::kCommand, Role::kDoorbell, Role::kPlain}) add(scan_order_, r);
  for (Role r : {Role::kPlain, Role::kDoorbell, Role::kCommand}) add(apply_order_, r);
  // What a driver waits on goes last: status registers, then command registers.
  for (Role last : {Role::kPlain, Role::kStatus, Role::kCommand}) {
    for (size_t i = 0; i < regs_.size(); ++i) {
      const Role r = regs_[i].role == Role::kDoorbell ? Role::kPlain : regs_[i].role;
      if (r == last) publish_order_.push_back(i);
    }
  }
}

size_t RegisterMirror::collect(std::vector<Write>& out) {
  for (size_t i : scan_order_) scanned_[i] = window_.load(regs_[i].offset, regs_[i].width);
  size_t n = 0;
  for (size_t i : apply_order_) {
    if (scanned_[i] == shown_[i]) continue;
    shown_[i] = scanned_[i];
    out.push_back(Write{i, regs_[i].offset, regs_[i].width, scanned_[i]});
    ++n;
  }
  return n;
}

void RegisterMirror::publish(size_t index, u64 value) {
  const MirroredRegister& r = regs_[index];
  const u64 mask = r.width == 8 ? ~u64{0} : (u64{1} << (8 * r.width)) - 1;
  value &= mask;
  if (value == shown_[index]) return;
  // Fails only if the program stored meanwhile: then shown_ stays, and the next collect() sees
  // the store as a write.
  if (window_.compare_exchange(r.offset, r.width, shown_[index], value)) shown_[index] = value;
}

}  // namespace vfio_emu::devices
