#include "cuse/control_arguments.h"

#include <algorithm>
#include <charconv>
#include <limits>

namespace vfio_emu::cuse {

std::optional<u64> parse_number(std::string_view text) {
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  if (text.empty()) return std::nullopt;
  u64 v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

std::string describe(const Json& value) {
  if (value.is_array() || value.is_object()) return std::string("an ") + value.type_name();
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

const Json* ControlArguments::find(const char* key) const {
  const auto it = request_.find(key);
  if (it == request_.end() || it->is_null()) return nullptr;
  return &*it;
}

void ControlArguments::fail(std::string message) {
  if (error_.empty()) error_ = std::move(message);
}

std::optional<u64> ControlArguments::number(const char* key) {
  const Json* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_number_unsigned()) return v->get<u64>();
  if (v->is_number_integer() && v->get<std::int64_t>() >= 0)
    return static_cast<u64>(v->get<std::int64_t>());
  if (v->is_string())
    if (auto n = parse_number(v->get_ref<const std::string&>())) return n;
  fail(std::string("\"") + key + "\" must be a non-negative integer (a number, \"42\" or "
       "\"0x2a\"), not " + describe(*v));
  return std::nullopt;
}

std::optional<bool> ControlArguments::flag(const char* key) {
  const Json* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_boolean()) return v->get<bool>();
  fail(std::string("\"") + key + "\" must be true or false, not " + describe(*v));
  return std::nullopt;
}

std::optional<std::string> ControlArguments::choice(const char* key,
                                                    std::initializer_list<std::string_view> allowed) {
  const Json* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_string())
    for (std::string_view a : allowed)
      if (v->get_ref<const std::string&>() == a) return std::string(a);
  std::string names;
  for (std::string_view a : allowed) names += std::string(names.empty() ? "\"" : " or \"") += std::string(a) + "\"";
  fail(std::string("\"") + key + "\" must be " + names + ", not " + describe(*v));
  return std::nullopt;
}

std::optional<std::string> ControlArguments::ioas(const char* key) {
  const Json* v = find(key);
  if (v == nullptr) return std::nullopt;
  constexpr u64 kMaxIoas = std::numeric_limits<std::uint32_t>::max();
  // Handed on in decimal, the one spelling the inspector reads the same way.
  if (v->is_number_unsigned() && v->get<u64>() <= kMaxIoas) return std::to_string(v->get<u64>());
  if (v->is_string()) {
    const std::string_view s = v->get_ref<const std::string&>();
    const size_t colon = s.find(':');
    const auto ioas = parse_number(colon == std::string_view::npos ? s : s.substr(colon + 1));
    if (ioas && *ioas <= kMaxIoas) {
      if (colon == std::string_view::npos) return std::to_string(*ioas);
      if (const auto ctx = parse_number(s.substr(0, colon)))
        return std::to_string(*ctx) + ":" + std::to_string(*ioas);
    }
  }
  fail(std::string("\"") + key + "\" must be an IOAS id, \"CTX:IOAS\" or \"IOAS\", not " +
       describe(*v));
  return std::nullopt;
}

std::optional<std::string> ControlArguments::cursor(const char* key) {
  const Json* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_string() && v->get_ref<const std::string&>().size() <= 64)
    return v->get<std::string>();
  fail(std::string("\"") + key + "\" must be the \"next\" of a previous reply, not " +
       describe(*v));
  return std::nullopt;
}

size_t ControlArguments::page_size(const char* key, size_t fallback, size_t cap) {
  const auto n = number(key);
  if (!n) return fallback;
  if (*n == 0) {
    fail(std::string("\"") + key + "\" must be at least 1");
    return fallback;
  }
  return static_cast<size_t>(std::min<u64>(*n, cap));
}

}  // namespace vfio_emu::cuse
