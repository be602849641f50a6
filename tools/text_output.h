// Text for people: aligned tables, human sizes ("4K", "2M", "1.5G"), and the daemon's JSON
// values as table cells. Reading a field never throws: a field an older or newer daemon does not
// send shows as "-".
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace vfio_emu::tools {

using Json = nlohmann::ordered_json;
using u64 = std::uint64_t;

// A table printed with columns padded to their widest cell, two spaces apart.
class TextTable {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string title;
    Align align = Align::kLeft;
  };

  explicit TextTable(std::vector<Column> columns);
  void add(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  // Prints the titles and the rows, each line prefixed by `indent`. The last column is not padded.
  void print(std::FILE* out, const std::string& indent = "") const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// 4096 -> "4K", 2097152 -> "2M", 1610612736 -> "1.5G", 1000 -> "1000"; one decimal when the
// size is not a whole number of the unit.
std::string human_size(u64 bytes);

// A number written as the protocol writes it: "0x1000", "4096", or a JSON number.
std::optional<u64> parse_u64(const std::string& text);
std::optional<u64> json_u64(const Json& j, const char* key);

// j[key] as a cell: strings as they are, numbers in decimal, true/false as yes/no, null or
// missing as "-".
std::string cell(const Json& j, const char* key);
// j[key] as a human size ("-" if missing).
std::string size_cell(const Json& j, const char* key);
// The elements of an array field joined with `sep` ("-" if empty or missing).
std::string join_cell(const Json& j, const char* key, const char* sep = ",");

// j[key], or null if j is not an object or has no such key.
const Json& field(const Json& j, const char* key);
// j[key] if it is an array, else an empty array: iterating a missing list shows nothing.
const Json& array_field(const Json& j, const char* key);

}  // namespace vfio_emu::tools
