// The integer names every layer uses.
#pragma once

#include <cstdint>

namespace vfio_emu {

using u8 = std::uint8_t;
using u16 = std::uint16_t;
using u32 = std::uint32_t;
using u64 = std::uint64_t;

constexpr u64 kU64Max = ~u64{0};

}  // namespace vfio_emu
