// The arguments of one control request (tools/control-protocol.md), read with their types
// checked. Requests come from any process of the daemon's user and are untrusted: a wrong type
// is an answer ({"ok": false, "errno": "EINVAL"}), never an exception out of a lookup, and a
// message never echoes a whole array or object (it could be nested thousands deep).
#pragma once

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "core/emulator.h"

namespace vfio_emu::cuse {

using Json = nlohmann::ordered_json;
using core::u64;

// "42" or "0x2a" (no sign, no octal, no spaces, no overflow).
std::optional<u64> parse_number(std::string_view text);

// A value for an error message: scalars as JSON (long strings cut short), arrays and objects by
// their type only.
std::string describe(const Json& value);

class ControlArguments {
 public:
  explicit ControlArguments(const Json& request) : request_(request) {}

  // Each getter returns the argument, or nullopt when it is absent (missing or null) or wrong;
  // the first wrong one is remembered in error().

  // An id, address or count: a non-negative JSON integer, or a string "42" / "0x2a".
  std::optional<u64> number(const char* key);
  // A bool.
  std::optional<bool> flag(const char* key);
  // One of `allowed` (strings).
  std::optional<std::string> choice(const char* key, std::initializer_list<std::string_view> allowed);
  // An IOAS id, "CTX:IOAS" or "IOAS" (numbers as in number(), the IOAS at most 2^32-1), or a
  // non-negative integer IOAS; returned as the string the inspector takes.
  std::optional<std::string> ioas(const char* key);
  // A cursor the daemon gave out earlier ("next"): a string of at most 64 bytes.
  std::optional<std::string> cursor(const char* key);
  // A page size: a number() in [1, 2^64-1], limited to `cap`; `fallback` when absent.
  size_t page_size(const char* key, size_t fallback, size_t cap);

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // Records a failure of the caller's own (e.g. a missing required argument).
  void fail(std::string message);

 private:
  const Json* find(const char* key) const;

  const Json& request_;
  std::string error_;
};

}  // namespace vfio_emu::cuse
