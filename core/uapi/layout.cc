#include "core/uapi/layout.h"

#include <array>
#include <cstddef>

namespace vfio_emu::uapi {
namespace {

constexpr std::size_t align_up(std::size_t value, std::size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// True if `members`, in declaration order, explain every byte of a struct of `struct_size` bytes:
// each member starts where the previous one ends, rounded up to its own alignment (or at the same
// offset as the previous one, as a union alternative); a flexible array member comes last; the
// struct ends at the last member rounded up to the struct's alignment. A member left out of a
// list in layout.h leaves a gap that breaks the first rule. The one omission this cannot see is a
// member that fits where padding would otherwise be (a u32 before an 8-aligned member); the spec
// offsets in tests/abi/abi_static_assert.cc and review of the golden file diff are the guard there.
template <std::size_t N>
constexpr bool members_cover_struct(const std::array<MemberLayout, N>& members, std::size_t struct_size,
                                    std::size_t struct_alignment) {
  std::size_t end = 0;
  for (std::size_t i = 0; i < N; ++i) {
    const MemberLayout& member = members[i];
    const bool union_alternative = i > 0 && member.offset == members[i - 1].offset;
    if (!union_alternative && member.offset != align_up(end, member.alignment)) return false;
    if (member.flexible_array) {
      if (i != N - 1) return false;
      continue;
    }
    const std::size_t member_end = member.offset + member.size;
    end = member_end > end ? member_end : end;
  }
  return align_up(end, struct_alignment) == struct_size;
}

#define VFIO_EMU_MEMBER_LAYOUT(type, member) member_layout<decltype(type::member)>(#member, offsetof(type, member)),

#define VFIO_EMU_DEFINE_MEMBER_LAYOUTS(type, ...)                                                        \
  static_assert(std::is_standard_layout_v<type> && std::is_trivially_copyable_v<type>,                  \
                #type " must be a plain C struct");                                                       \
  constexpr std::array type##_members{VFIO_EMU_FOR_EACH_MEMBER(VFIO_EMU_MEMBER_LAYOUT, type, __VA_ARGS__)}; \
  static_assert(members_cover_struct(type##_members, sizeof(type), alignof(type)),                        \
                #type ": the member list in core/uapi/layout.h does not match the struct");

VFIO_EMU_UAPI_STRUCTS(VFIO_EMU_DEFINE_MEMBER_LAYOUTS)

#define VFIO_EMU_STRUCT_LAYOUT(type, ...) \
  StructLayout{#type, sizeof(type), alignof(type), {type##_members.begin(), type##_members.end()}},

}  // namespace

const std::vector<StructLayout>& uapi_struct_layouts() {
  static const std::vector<StructLayout> layouts{VFIO_EMU_UAPI_STRUCTS(VFIO_EMU_STRUCT_LAYOUT)};
  return layouts;
}

}  // namespace vfio_emu::uapi
