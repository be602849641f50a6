// Result<T>: a value or an errno, the error type of every layer.
//
// Errors travel as values (SerenityOS ErrorOr / TRY style). An error is a positive errno value as
// Linux would return it to user space (EINVAL, ENOENT, ...). It builds with g++ 12 and clang++ 14,
// which is why this is not std::expected.
//
//   Result<u64> unmap(...);
//   u64 bytes = TRY(domain.unmap(first, last));
//
// The lowest layer (iommu/) owns this header; core/, cuse/ and tools/ use it too.
#pragma once

#include <cerrno>
#include <new>
#include <type_traits>
#include <utility>

namespace vfio_emu {

// An error: a positive errno. Internal, non-errno conditions (e.g. "the CUSE retry protocol needs
// more of the caller's memory") use values above kFirstInternalCode so they can never be confused
// with a Linux errno.
struct Err {
  int code;
};

constexpr int kFirstInternalCode = 100000;

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
