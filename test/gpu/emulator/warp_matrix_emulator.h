// Warp-level matrix instructions of sm_80+ tensor cores, emulated: mma.sync.aligned.m16n8k16 (f16 / bf16
// inputs, f32 accumulators) and ldmatrix.sync.aligned.m8n8.x4 (with and without .trans). Each lane holds
// exactly the fragment the PTX ISA assigns it (section 9.7.14.5.8, "Matrix Fragments for mma.m16n8k16 with
// floating point type", and ldmatrix's fragment figure), so a kernel that builds fragments at the wrong
// indices computes wrong numbers here as on the hardware. Both are warp collectives, like the shuffles: every
// lane publishes its registers (or its row address), waits until all 32 lanes have, reads what the hardware
// would route to it, and waits again before the slots are reused. A lane that exited, or a warp that is not
// whole, fails loudly: the hardware requires all 32 lanes to execute the same .aligned instruction.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "common/half.h"

struct alignas(16) uint4 {
  unsigned x, y, z, w;
};

namespace pagedlm::emu {

namespace warp_matrix {

// What one lane publishes for one collective.
struct Slot {
  unsigned registers[6];
  const void* address;
  bool arrived;
};

// [warp][lane]: blocks run one at a time, and a warp's slots are only touched inside its collectives.
inline thread_local Slot slots[32][32];

inline int warp_of_thread() {
  const unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return static_cast<int>(linear / 32);
}

// Publishes, waits for the whole warp, runs `read(warp_slots)`, waits again, and withdraws.
template <typename Read>
void collective(const char* what, const unsigned* registers, int count, const void* address, Read&& read) {
  Slot* warp = slots[warp_of_thread()];
  Slot& mine = warp[lane_id()];
  for (int i = 0; i < count; ++i) mine.registers[i] = registers[i];
  mine.address = address;
  mine.arrived = true;
  sync_warp();
  for (int lane = 0; lane < 32; ++lane) {
    if (!warp[lane].arrived) {
      std::fprintf(stderr, "cuda emulator: %s with lane %d of warp %d absent (all 32 lanes must execute it)\n", what, lane, warp_of_thread());
      std::abort();
    }
  }
  read(warp);
  sync_warp();
  mine.arrived = false;
}

inline float element(unsigned pair, int high, bool bf16) {
  const uint16_t bits = static_cast<uint16_t>(high ? pair >> 16 : pair & 0xffffu);
  if (bf16) {
    const unsigned wide = static_cast<unsigned>(bits) << 16;
    float f;
    std::memcpy(&f, &wide, 4);
    return f;
  }
  return fp16_to_float(bits);
}

}  // namespace warp_matrix

// d += A (16x16, row) x B (16x8, col). Fragments, with g = lane / 4 and t = lane % 4:
//   A: a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]
//   B: b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g]
//   C/D: d[0], d[1] = D[g][2t, 2t+1]; d[2], d[3] = D[g+8][2t, 2t+1]
// (each register's lower half holds the lower column or row index). Products are exact in f32; the sum is
// taken in double and rounded once, which the hardware's f32 accumulation matches within its rounding.
inline void mma_m16n8k16(float d[4], const unsigned a[4], const unsigned b[2], bool bf16) {
  const unsigned mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  float out[4];
  warp_matrix::collective("mma.sync.m16n8k16", mine, 6, nullptr, [&](const warp_matrix::Slot* warp) {
    const auto a_at = [&](int row, int col) {
      const int lane = (row % 8) * 4 + (col % 8) / 2;
      const int reg = (row >= 8 ? 1 : 0) + (col >= 8 ? 2 : 0);
      return warp_matrix::element(warp[lane].registers[reg], col % 2, bf16);
    };
    const auto b_at = [&](int row, int col) {
      const int lane = col * 4 + (row % 8) / 2;
      const int reg = 4 + (row >= 8 ? 1 : 0);
      return warp_matrix::element(warp[lane].registers[reg], row % 2, bf16);
    };
    const int g = lane_id() / 4, t = lane_id() % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + i % 2;
      double sum = 0;
      for (int k = 0; k < 16; ++k) sum += static_cast<double>(a_at(row, k)) * b_at(k, col);
      out[i] = static_cast<float>(static_cast<double>(d[i]) + sum);
    }
  });
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lanes 8j..8j+7 give the addresses of rows 0..7 of matrix j (16
// bytes each, 16-byte aligned); r[j] receives matrix j's elements [lane / 4][2 (lane % 4), +1], or with
// `transpose` the elements [2 (lane % 4), +1][lane / 4].
inline void ldmatrix_x4(unsigned r[4], const void* row_address, bool transpose) {
  if (reinterpret_cast<uintptr_t>(row_address) % 16 != 0) {
    std::fprintf(stderr, "cuda emulator: ldmatrix row address %p is not 16-byte aligned\n", row_address);
    std::abort();
  }
  warp_matrix::collective("ldmatrix.x4", nullptr, 0, row_address, [&](const warp_matrix::Slot* warp) {
    const int lane = lane_id();
    for (int j = 0; j < 4; ++j) {
      const auto at = [&](int row, int col) {
        uint16_t bits;
        std::memcpy(&bits, static_cast<const uint16_t*>(warp[8 * j + row].address) + col, 2);
        return static_cast<unsigned>(bits);
      };
      const int a = lane / 4, b = 2 * (lane % 4);
      r[j] = transpose ? at(b, a) | at(b + 1, a) << 16 : at(a, b) | at(a, b + 1) << 16;
    }
  });
}

}  // namespace pagedlm::emu
