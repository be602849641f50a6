#include "tools/x86_store.h"

namespace vfio_emu::tools {
namespace {

constexpr unsigned kMaxLength = 15;  // the architectural limit

// Length of a memory ModRM operand (ModRM, SIB, displacement) at code[at]; 0 if the operand is a
// register (mod 3) or the bytes end first.
unsigned memory_operand_length(std::span<const std::uint8_t> code, unsigned at) {
  if (at >= code.size()) return 0;
  const std::uint8_t modrm = code[at];
  const unsigned mod = modrm >> 6, rm = modrm & 7;
  if (mod == 3) return 0;
  unsigned n = 1;
  unsigned base = rm;
  if (rm == 4) {  // a SIB byte
    if (at + 1 >= code.size()) return 0;
    base = code[at + 1] & 7;
    ++n;
  }
  if (mod == 1) {
    n += 1;
  } else if (mod == 2) {
    n += 4;
  } else if (rm == 5 || (rm == 4 && base == 5)) {
    n += 4;  // RIP-relative disp32, or SIB without a base: disp32
  }
  return at + n <= code.size() ? n : 0;
}

}  // namespace

bool decode_x86_store(std::span<const std::uint8_t> code, X86Store* out) {
  if (code.size() > kMaxLength) code = code.first(kMaxLength);
  unsigned i = 0;
  bool opsize = false, rep = false, repne = false;
  // Legacy prefixes: operand size, REP/REPNE (F3 selects MOVDQU), segment, address size, LOCK.
  for (; i < code.size(); ++i) {
    const std::uint8_t b = code[i];
    if (b == 0x66) {
      opsize = true;
    } else if (b == 0xf3) {
      rep = true;
    } else if (b == 0xf2) {
      repne = true;
    } else if (b == 0x2e || b == 0x3e || b == 0x26 || b == 0x64 || b == 0x65 ||
               b == 0x36 || b == 0x67) {
    } else if (b == 0xf0) {
      return false;  // LOCK: a read-modify-write
    } else {
      break;
    }
  }
  std::uint8_t rex = 0;
  if (i < code.size() && (code[i] & 0xf0) == 0x40) rex = code[i++];
  const bool w = rex & 8;
  const unsigned r_ext = rex & 4 ? 8 : 0;
  if (i >= code.size()) return false;
  X86Store s;
  const std::uint8_t op = code[i++];
  auto finish = [&](unsigned after_modrm_imm) {
    const unsigned m = memory_operand_length(code, i);
    if (m == 0 || i + m + after_modrm_imm > code.size()) return false;
    s.length = i + m + after_modrm_imm;
    return true;
  };
  auto reg_field = [&]() { return ((code[i] >> 3) & 7) + r_ext; };
  const unsigned gpr_width = w ? 8 : opsize ? 2 : 4;
  if (op == 0x88 || op == 0x89) {
    if (i >= code.size()) return false;
    s.width = op == 0x88 ? 1 : gpr_width;
    s.reg = reg_field();
    // Without REX, byte registers 4-7 are AH, CH, DH, BH.
    if (op == 0x88 && rex == 0 && s.reg >= 4 && s.reg < 8) {
      s.source = X86Store::Source::kGprHigh8;
      s.reg -= 4;
    }
    if (!finish(0)) return false;
  } else if (op == 0xc6 || op == 0xc7) {
    if (i >= code.size() || ((code[i] >> 3) & 7) != 0) return false;
    s.width = op == 0xc6 ? 1 : gpr_width;
    const unsigned imm = op == 0xc6 ? 1 : opsize && !w ? 2 : 4;
    if (!finish(imm)) return false;
    std::uint64_t v = 0;
    for (unsigned k = 0; k < imm; ++k) v |= std::uint64_t{code[s.length - imm + k]} << (8 * k);
    if (imm == 4 && (v & 0x80000000u)) v |= 0xffffffff00000000ull;  // sign-extended to 64
    s.immediate = s.width == 8 ? v : v & ((std::uint64_t{1} << (8 * s.width)) - 1);
    s.source = X86Store::Source::kImmediate;
  } else if (op == 0x0f) {
    if (i + 1 >= code.size()) return false;
    const std::uint8_t op2 = code[i++];
    s.reg = reg_field();
    const bool plain = !rep && !repne;
    if (op2 == 0xc3 && !opsize && plain) {  // MOVNTI
      s.width = w ? 8 : 4;
    } else if (op2 == 0x7e && opsize && plain) {  // MOVD/MOVQ r/m, xmm
      s.width = w ? 8 : 4;
      s.source = X86Store::Source::kXmm;
    } else if (op2 == 0xd6 && opsize && plain) {  // MOVQ m64, xmm
      s.width = 8;
      s.source = X86Store::Source::kXmm;
    } else if (op2 == 0x11) {  // MOVUPS/MOVUPD m128; F3: MOVSS m32; F2: MOVSD m64
      s.width = rep ? 4 : repne ? 8 : 16;
      s.source = X86Store::Source::kXmm;
    } else if ((((op2 == 0x29 || op2 == 0x2b) && plain) || (op2 == 0x7f && (opsize != rep) && !repne) ||
                (op2 == 0xe7 && opsize && plain))) {
      s.width = 16;
      s.source = X86Store::Source::kXmm;
    } else {
      return false;
    }
    if (!finish(0)) return false;
  } else {
    return false;
  }
  *out = s;
  return true;
}

}  // namespace vfio_emu::tools
