// The x86-64 instructions a driver stores to MMIO with, decoded so that `vfio-emu run` can carry
// out a store that trapped on a write-protected BAR mapping (tools/store_watch.h): how many bytes
// it stores, where the value comes from, and how long the instruction is (execution resumes
// after it). The address is the fault's, not decoded.
//
// Understood (with any legacy prefixes, REX, and every ModRM/SIB/displacement form):
//   88 /r        MOV r/m8, r8 (AH..BH without REX)      C6 /0 ib  MOV r/m8, imm8
//   89 /r        MOV r/m16/32/64, r                      C7 /0 iw/id  MOV r/m16/32/64, imm
//   0F C3 /r     MOVNTI m32/64, r
//   66 0F 7E /r  MOVD/MOVQ m32/64, xmm                   66 0F D6 /r  MOVQ m64, xmm
//   0F 11, 0F 29, 0F 2B, 66 0F 11, 66 0F 29, 66 0F 2B, 66 0F 7F, F3 0F 7F, 66 0F E7
//                MOVUPS/MOVAPS/MOVNTPS/MOVUPD/MOVAPD/MOVNTPD/MOVDQA/MOVDQU/MOVNTDQ m128, xmm
//   F3 0F 11, F2 0F 11  MOVSS m32, xmm / MOVSD m64, xmm
// What Linux's readX/writeX, DPDK's and SPDK's register accessors and compilers emit for volatile
// stores. Not understood (the program gets the SIGSEGV, with a log line): read-modify-write
// instructions (OR/AND/ADD... to memory, XCHG, LOCK), string stores (REP STOS/MOVS), VEX/EVEX
// (AVX) stores, and anything with a register destination.
#pragma once

#include <cstdint>
#include <span>

namespace vfio_emu::tools {

struct X86Store {
  enum class Source { kGpr, kGprHigh8, kImmediate, kXmm };
  unsigned length = 0;  // of the instruction, in bytes
  unsigned width = 0;   // bytes stored: 1, 2, 4, 8 or 16
  Source source = Source::kGpr;
  unsigned reg = 0;     // kGpr/kGprHigh8: ModRM numbering (0 rax, 1 rcx, ... 15 r15); kXmm: 0..15
  std::uint64_t immediate = 0;  // kImmediate: sign-extended to the width
};

// Decodes `code` (the bytes at the faulting instruction, up to 15) as one of the stores above.
bool decode_x86_store(std::span<const std::uint8_t> code, X86Store* out);

}  // namespace vfio_emu::tools
