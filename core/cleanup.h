// A cleanup guard that is cancelled on success: multi-step changes stay all-or-nothing on every
// way out of the scope, early error returns (TRY) and exceptions (std::bad_alloc) alike.
//
//   auto it = dmas_.emplace(iova, dma).first;
//   Cleanup unrecord([&] { dmas_.erase(it); });
//   TRY(pin_and_map(call, it->second));
//   unrecord.cancel();
#pragma once

#include <utility>

namespace vfio_emu::core {

template <class Undo>
class [[nodiscard]] Cleanup {
 public:
  explicit Cleanup(Undo undo) : undo_(std::move(undo)) {}
  ~Cleanup() {
    if (armed_) undo_();
  }
  Cleanup(const Cleanup&) = delete;
  Cleanup& operator=(const Cleanup&) = delete;

  // The change is complete: nothing to undo.
  void cancel() { armed_ = false; }

 private:
  Undo undo_;
  bool armed_ = true;
};

}  // namespace vfio_emu::core
