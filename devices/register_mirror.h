// Keeps a register file and the BAR window a program maps (devices/bar_window.h) coherent.
//
// A program's store to a mapped register reaches no one: it lands in shared memory. The mirror
// finds it by comparing each register's window value with the value it last showed there, and
// hands it to the model as a register write. The model's registers reach the window through
// publish(), which replaces the value shown only if the program has not written the register
// since (a compare-and-exchange), so a store racing a publish is never lost: it is collected by
// the next scan.
//
// What this cannot see: a store of the value the window already shows. A model chooses what it
// shows so that the writes its drivers make are changes (a command register reads 0 once the
// command is taken; the I/OAT model shows a suspended channel's CHAINADDR and DMACOUNT as 0).
// Ordering: x86 makes a program's stores visible in program order and keeps loads in order. A
// scan reads command registers first, then doorbells, then the rest, and applies the rest first,
// then doorbells, then commands: when a scan sees a doorbell, it also sees every register the
// program wrote before ringing it, and when it sees a command, it also sees a doorbell rung
// before it (a driver that resets or suspends a channel right after ringing it gets them in that
// order; a driver never rings right after a command in one scan: it waits until the command is
// taken). The other way, registers a driver waits on are published last (status, then command
// registers): a driver that sees the change it waited for, and reads on at once, reads the rest
// already published.
#pragma once

#include <vector>

#include "base/ints.h"
#include "devices/bar_window.h"

namespace vfio_emu::devices {

struct MirroredRegister {
  enum class Role : u8 {
    kPlain,     // applied in the order listed
    kDoorbell,  // read before and applied after plain registers
    kStatus,    // published after plain registers and doorbells (a program that waits on it
                // sees them already published)
    kCommand,   // a register a driver writes a command to and polls until the device has taken
                // it: read first and applied last (after a doorbell of the same scan), published
                // last of all, after the status registers (a driver that sees the command taken
                // reads the state it left: I/OAT's CHANCMD reset, then CHANSTS)
  };
  u64 offset;  // in the BAR, naturally aligned for its width
  u32 width;   // 1, 2, 4 or 8
  Role role = Role::kPlain;
};

class RegisterMirror {
 public:
  struct Write {
    size_t index;  // into the register list
    u64 offset;
    u32 width;
    u64 value;
  };

  // `regs` must lie inside `window` and be naturally aligned.
  RegisterMirror(BarWindow& window, std::vector<MirroredRegister> regs);

  const std::vector<MirroredRegister>& registers() const { return regs_; }

  // Appends what the program stored through its mapping since the last call, in the order to
  // apply it. Returns how many were appended.
  size_t collect(std::vector<Write>& out);

  // Shows `value` in register `index`'s window bytes unless the program has stored there since
  // the last collect(). Call for every register in publish_order().
  void publish(size_t index, u64 value);
  // The register indexes in publishing order (status, then command registers last).
  const std::vector<size_t>& publish_order() const { return publish_order_; }

 private:
  BarWindow& window_;
  std::vector<MirroredRegister> regs_;
  std::vector<u64> shown_;            // what the window holds as far as we know
  std::vector<size_t> scan_order_;    // commands, doorbells, the rest
  std::vector<size_t> apply_order_;   // the rest, doorbells, commands
  std::vector<size_t> publish_order_; // status last
  std::vector<u64> scanned_;          // scratch: values of one scan, by index
};

}  // namespace vfio_emu::devices
