// Result<T>: a value or an errno, the error type of every layer.
//
// Errors travel as values (SerenityOS ErrorOr / TRY style). An error is a positive errno value as
// Linux would return it to user space (EINVAL, ENOENT, ...). It builds with g++ 12 and clang++ 14,
// which is why this is not std::expected.
//
//   Result<u64> unmap(...);
//   u64 bytes = TRY(domain.unmap(first, last));
//
// base/ is below every layer: iommu/, core/, cuse/ and tools/ all speak it.
#pragma once

#include <cerrno>
#include <new>
#include <type_traits>
#include <utility>

#include "base/ints.h"

namespace vfio_emu {

// An error: a positive errno. Internal, non-errno conditions (e.g. "the CUSE retry protocol needs
// more of the caller's memory") use values above kFirstInternalCode so they can never be confused
// with a Linux errno.
struct Err {
  int code;
};

constexpr int kFirstInternalCode = 100000;

// Not an errno: the CUSE retry protocol needs more of the caller's memory before the handler can
// go on. The transport answers FUSE_IOCTL_RETRY and runs the handler again from the start when
// the data arrives, which is why handlers read everything before they change anything.
constexpr int kNeedRetry = kFirstInternalCode + 1;

// Not an errno: the handler needs an fd argument resolved, and the transport can do that only off
// the threads that serve requests (identifying a file is itself a request to this daemon, and no
// request thread may wait on one). The transport runs the call again from the start on a thread of
// its own. Like kNeedRetry, it may come only before the handler has changed anything.
constexpr int kNeedDefer = kFirstInternalCode + 2;

// Whether `e` is one of the codes above rather than an answer for the caller.
constexpr bool is_internal_code(int e) { return e == kNeedRetry || e == kNeedDefer; }

[[nodiscard]] constexpr Err err(int code) { return Err{code}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  // NOLINTNEXTLINE(google-explicit-constructor): implicit by design, like ErrorOr.
  Result(const T& v) : ok_(true) { new (&storage_.value) T(v); }
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(T&& v) : ok_(true) { new (&storage_.value) T(std::move(v)); }
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Err e) : ok_(false) { storage_.error = e.code; }

  Result(const Result& o) : ok_(o.ok_) {
    if (ok_)
      new (&storage_.value) T(o.storage_.value);
    else
      storage_.error = o.storage_.error;
  }
  Result(Result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_(o.ok_) {
    if (ok_)
      new (&storage_.value) T(std::move(o.storage_.value));
    else
      storage_.error = o.storage_.error;
  }
  Result& operator=(Result o) noexcept(std::is_nothrow_move_constructible_v<T>) {
    this->~Result();
    new (this) Result(std::move(o));
    return *this;
  }
  ~Result() {
    if (ok_) storage_.value.~T();
  }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  // The errno; only meaningful when !ok().
  int error() const { return ok_ ? 0 : storage_.error; }

  T& value() & { return storage_.value; }
  const T& value() const& { return storage_.value; }
  T&& value() && { return std::move(storage_.value); }
  T& operator*() & { return storage_.value; }
  const T& operator*() const& { return storage_.value; }
  T* operator->() { return &storage_.value; }
  const T* operator->() const { return &storage_.value; }

  // Used by TRY: moves the value out.
  T take() { return std::move(storage_.value); }

 private:
  union Storage {
    Storage() {}
    ~Storage() {}
    T value;
    int error;
  } storage_;
  bool ok_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Err e) : error_(e.code) {}

  bool ok() const { return error_ == 0; }
  explicit operator bool() const { return error_ == 0; }
  int error() const { return error_; }
  void take() {}

 private:
  int error_ = 0;
};

using Status = Result<void>;

}  // namespace vfio_emu

// TRY(expr): evaluate a Result; on error return the error from the enclosing function, otherwise
// yield the value. A GNU statement expression, supported by both g++ and clang++.
#define TRY(expr)                                                   \
  ({                                                                \
    auto _try_result = (expr);                                      \
    if (!_try_result.ok()) return ::vfio_emu::Err{_try_result.error()}; \
    _try_result.take();                                             \
  })
