// The store instructions `vfio-emu run` carries out for a trapped BAR mapping (tools/x86_store.h).
#include <catch2/catch.hpp>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "tools/x86_store.h"

using vfio_emu::tools::decode_x86_store;
using vfio_emu::tools::X86Store;
using Source = X86Store::Source;

namespace {

X86Store decoded(std::initializer_list<std::uint8_t> bytes) {
  std::vector<std::uint8_t> code(bytes);
  X86Store s;
  INFO("bytes: " << code.size());
  REQUIRE(decode_x86_store(code, &s));
  return s;
}

bool refused(std::initializer_list<std::uint8_t> bytes) {
  std::vector<std::uint8_t> code(bytes);
  X86Store s;
  return !decode_x86_store(code, &s);
}

}  // namespace

TEST_CASE("x86 store: MOV from a register, every width and addressing form", "[x86]") {
  X86Store s = decoded({0x88, 0x07});  // mov [rdi], al
  CHECK((s.length == 2 && s.width == 1 && s.source == Source::kGpr && s.reg == 0));
  s = decoded({0x88, 0x27});  // mov [rdi], ah
  CHECK((s.length == 2 && s.width == 1 && s.source == Source::kGprHigh8 && s.reg == 0));
  s = decoded({0x40, 0x88, 0x37});  // mov [rdi], sil (REX: no high byte registers)
  CHECK((s.length == 3 && s.width == 1 && s.source == Source::kGpr && s.reg == 6));
  s = decoded({0x66, 0x89, 0x47, 0x06});  // mov [rdi+6], ax
  CHECK((s.length == 4 && s.width == 2 && s.reg == 0));
  s = decoded({0x89, 0x87, 0x80, 0x00, 0x00, 0x00});  // mov [rdi+0x80], eax
  CHECK((s.length == 6 && s.width == 4));
  s = decoded({0x48, 0x89, 0x04, 0x24});  // mov [rsp], rax (SIB)
  CHECK((s.length == 4 && s.width == 8 && s.reg == 0));
  s = decoded({0x48, 0x89, 0x44, 0x24, 0x08});  // mov [rsp+8], rax (SIB + disp8)
  CHECK((s.length == 5 && s.width == 8));
  s = decoded({0x4c, 0x89, 0x05, 0x10, 0x00, 0x00, 0x00});  // mov [rip+0x10], r8
  CHECK((s.length == 7 && s.width == 8 && s.reg == 8));
  s = decoded({0x4a, 0x89, 0x14, 0xc5, 0x00, 0x10, 0x00, 0x00});  // mov [r8*8+0x1000], rdx
  CHECK((s.length == 8 && s.width == 8 && s.reg == 2));
  s = decoded({0x41, 0x89, 0x55, 0x00});  // mov [r13+0], edx (rbp/r13 base needs a disp8)
  CHECK((s.length == 4 && s.width == 4 && s.reg == 2));
  s = decoded({0x64, 0x48, 0x89, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00});  // mov fs:[0x28], rax
  CHECK((s.length == 9 && s.width == 8));
  s = decoded({0x67, 0x89, 0x07});  // mov [edi], eax (32-bit addressing)
  CHECK((s.length == 3 && s.width == 4));
}

TEST_CASE("x86 store: MOV of an immediate", "[x86]") {
  X86Store s = decoded({0xc6, 0x07, 0x20});  // mov byte [rdi], 0x20
  CHECK((s.length == 3 && s.width == 1 && s.source == Source::kImmediate && s.immediate == 0x20));
  s = decoded({0x66, 0xc7, 0x47, 0x06, 0x01, 0x00});  // mov word [rdi+6], 1
  CHECK((s.length == 6 && s.width == 2 && s.immediate == 1));
  s = decoded({0xc7, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12});
  CHECK((s.length == 11 && s.width == 4 && s.immediate == 0x12345678));  // mov dword [0x1000], imm
  s = decoded({0x48, 0xc7, 0x07, 0xff, 0xff, 0xff, 0xff});  // mov qword [rdi], -1
  CHECK((s.length == 7 && s.width == 8 && s.immediate == ~std::uint64_t{0}));
  s = decoded({0xc7, 0x07, 0xff, 0xff, 0xff, 0xff});  // mov dword [rdi], 0xffffffff
  CHECK((s.width == 4 && s.immediate == 0xffffffffu));
}

TEST_CASE("x86 store: MOVNTI and SSE stores", "[x86]") {
  X86Store s = decoded({0x0f, 0xc3, 0x07});  // movnti [rdi], eax
  CHECK((s.length == 3 && s.width == 4 && s.source == Source::kGpr));
  s = decoded({0x48, 0x0f, 0xc3, 0x0f});  // movnti [rdi], rcx
  CHECK((s.length == 4 && s.width == 8 && s.reg == 1));
  s = decoded({0x66, 0x0f, 0xd6, 0x07});  // movq [rdi], xmm0
  CHECK((s.length == 4 && s.width == 8 && s.source == Source::kXmm && s.reg == 0));
  s = decoded({0x66, 0x48, 0x0f, 0x7e, 0x0f});  // movq [rdi], xmm1
  CHECK((s.length == 5 && s.width == 8 && s.reg == 1));
  s = decoded({0x66, 0x0f, 0x7e, 0x07});  // movd [rdi], xmm0
  CHECK((s.width == 4));
  s = decoded({0xf3, 0x0f, 0x7f, 0x07});  // movdqu [rdi], xmm0
  CHECK((s.length == 4 && s.width == 16));
  s = decoded({0x66, 0x0f, 0x7f, 0x47, 0x10});  // movdqa [rdi+0x10], xmm0
  CHECK((s.length == 5 && s.width == 16));
  s = decoded({0x44, 0x0f, 0x11, 0x3f});  // movups [rdi], xmm15
  CHECK((s.length == 4 && s.width == 16 && s.reg == 15));
  s = decoded({0xf3, 0x0f, 0x11, 0x07});  // movss [rdi], xmm0
  CHECK((s.width == 4));
  s = decoded({0xf2, 0x0f, 0x11, 0x07});  // movsd [rdi], xmm0
  CHECK((s.width == 8));
  s = decoded({0x66, 0x0f, 0xe7, 0x07});  // movntdq [rdi], xmm0
  CHECK((s.width == 16));
}

TEST_CASE("x86 store: what is not a plain store is refused", "[x86]") {
  CHECK(refused({0x89, 0xc0}));                    // mov eax, eax: a register destination
  CHECK(refused({0x8b, 0x07}));                    // mov eax, [rdi]: a load
  CHECK(refused({0xf0, 0x09, 0x07}));              // lock or [rdi], eax
  CHECK(refused({0x09, 0x07}));                    // or [rdi], eax: read-modify-write
  CHECK(refused({0x83, 0x0f, 0x01}));              // or dword [rdi], 1
  CHECK(refused({0x87, 0x07}));                    // xchg [rdi], eax
  CHECK(refused({0xf3, 0xaa}));                    // rep stosb
  CHECK(refused({0xc5, 0xfa, 0x7f, 0x07}));        // vmovdqu [rdi], xmm0 (VEX)
  CHECK(refused({0xc7, 0x4f, 0x00, 0, 0, 0, 0}));  // C7 /1 is no MOV
  CHECK(refused({0x0f, 0x7f, 0x07}));              // movq [rdi], mm0 (MMX)
  CHECK(refused({0xf3, 0x0f, 0x7e, 0x07}));        // movq xmm0, [rdi]: a load
  // Truncated: the displacement or immediate is missing.
  CHECK(refused({0x89, 0x87, 0x80}));
  CHECK(refused({0xc7, 0x07, 0x01, 0x00}));
  CHECK(refused({0x48}));
  CHECK(refused({}));
  // More than 15 bytes of prefixes is no instruction.
  CHECK(refused({0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
                 0x66, 0x89, 0x07}));
}
