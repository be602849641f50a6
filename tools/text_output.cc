#include "tools/text_output.h"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace vfio_emu::tools {

TextTable::TextTable(std::vector<Column> columns) : columns_(std::move(columns)) {}

void TextTable::add(std::vector<std::string> cells) {
  cells.resize(columns_.size());
  rows_.push_back(std::move(cells));
}

void TextTable::print(std::FILE* out, const std::string& indent) const {
  std::vector<size_t> width(columns_.size());
  for (size_t c = 0; c < columns_.size(); ++c) {
    width[c] = columns_[c].title.size();
    for (const auto& row : rows_) width[c] = std::max(width[c], row[c].size());
  }
  auto line = [&](auto cell_of) {
    std::string s = indent;
    for (size_t c = 0; c < columns_.size(); ++c) {
      const std::string& text = cell_of(c);
      const bool last = c + 1 == columns_.size();
      const std::string pad(width[c] - text.size(), ' ');
      if (columns_[c].align == Align::kRight)
        s += pad + text;
      else
        s += last ? text : text + pad;
      if (!last) s += "  ";
    }
    std::fprintf(out, "%s\n", s.c_str());
  };
  line([&](size_t c) -> const std::string& { return columns_[c].title; });
  for (const auto& row : rows_) line([&](size_t c) -> const std::string& { return row[c]; });
}

std::string human_size(u64 bytes) {
  static const char* const kUnits[] = {"K", "M", "G", "T", "P", "E"};
  if (bytes < 1024) return std::to_string(bytes);
  int unit = 0;
  while (unit < 5 && bytes >= (u64{1} << (10 * (unit + 2)))) ++unit;
  const u64 scale = u64{1} << (10 * (unit + 1));
  if (bytes % scale == 0) return fmt::format("{}{}", bytes / scale, kUnits[unit]);
  return fmt::format("{:.1f}{}", static_cast<double>(bytes) / static_cast<double>(scale),
                     kUnits[unit]);
}

std::optional<u64> parse_u64(const std::string& text) {
  if (text.empty() || text[0] == '-' || text[0] == '+' || text[0] == ' ') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 0);
  if (errno != 0 || end == nullptr || *end != '\0') return std::nullopt;
  return static_cast<u64>(v);
}

namespace {

std::string value_text(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_null()) return "-";
  return v.dump();
}

}  // namespace

std::optional<u64> json_u64(const Json& j, const char* key) {
  const Json& v = field(j, key);
  if (v.is_number_unsigned()) return v.get<u64>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<u64>(v.get<std::int64_t>());
  if (v.is_string()) return parse_u64(v.get<std::string>());
  return std::nullopt;
}

std::string cell(const Json& j, const char* key) { return value_text(field(j, key)); }

std::string size_cell(const Json& j, const char* key) {
  const auto v = json_u64(j, key);
  return v ? human_size(*v) : "-";
}

std::string join_cell(const Json& j, const char* key, const char* sep) {
  std::string s;
  for (const Json& v : array_field(j, key)) s += (s.empty() ? "" : sep) + value_text(v);
  return s.empty() ? "-" : s;
}

const Json& field(const Json& j, const char* key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

const Json& array_field(const Json& j, const char* key) {
  static const Json kEmpty = Json::array();
  const Json& v = field(j, key);
  return v.is_array() ? v : kEmpty;
}

}  // namespace vfio_emu::tools
