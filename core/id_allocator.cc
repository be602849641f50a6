#include "core/id_allocator.h"

#include <new>

#include <cerrno>
#include <iterator>

namespace vfio_emu::core {

Result<u32> IdAllocator::alloc() {
  if (!freed_.empty()) {
    const u32 id = *freed_.begin();
    freed_.erase(freed_.begin());
    return id;
  }
  if (next_ > last_) return err(EBUSY);
  return static_cast<u32>(next_++);
}

void IdAllocator::free(u32 id) {
  if (id < first_ || id >= next_ || freed_.count(id) != 0) return;
  if (id + u64{1} != next_) {
    // Freeing runs in release paths, after the change it undoes is made: it must not fail. If
    // the set cannot take the id, the id is simply never handed out again.
    try {
      freed_.insert(id);
    } catch (const std::bad_alloc&) {
    }
    return;
  }
  // The highest id in use: the free ids just below it join the free top of the range, so that
  // freed_ holds only holes below an id in use.
  --next_;
  while (!freed_.empty() && *freed_.rbegin() + u64{1} == next_) {
    freed_.erase(std::prev(freed_.end()));
    --next_;
  }
}

}  // namespace vfio_emu::core
