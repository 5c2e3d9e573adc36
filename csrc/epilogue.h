// The per-position epilogue shared by the fused direct kernels (filterbank.cpp) and the FFT
// backend's per-filter-group kernels (fft_filters.cpp): BatchNorm, ReLU, the pooled terms, the mask bits, and
// on the way back dz from the mask bits and the bin weights.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "tiles.h"

namespace sincfb_cpu {

// Sum of v[lo, hi): runs of kRun in the data dtype (vectorised), added up in float64 so the
// rounding error does not grow with the bin size.
constexpr int64_t kRun = 256;

template <typename scalar_t>
double segment_sum(const scalar_t* v, int64_t lo, int64_t hi) {
  double total = 0;
  for (int64_t r0 = lo; r0 < hi; r0 += kRun) {
    const int64_t r1 = std::min(hi, r0 + kRun);
    scalar_t run = 0;
#pragma omp simd reduction(+ : run)
    for (int64_t j = r0; j < r1; ++j) run += v[j];
    total += run;
  }
  return total;
}

// Per-position epilogue terms of one row of a tile, computed in one vectorised pass:
// zhat = (y - mu) * rstd and z = zhat * gamma + beta as the reference composite rounds them; then
// relu(z), the indicator of z > 0 and zhat where z > 0 (the three things pooled per bin).
// NaN and Inf behave as in the composite (compiled without -ffast-math, so IEEE comparisons
// hold): the ReLU mask is !(z <= 0), so a NaN z passes itself (relu(NaN) is NaN) and, like
// torch's ReLU backward, its gradient; off the mask the zhat term is zhat - zhat (0, or NaN for
// a non-finite zhat), so dgamma = sum(w * S) is non-finite where the composite's
// sum(dz * zhat) meets 0 * Inf (sincfb/pooling.py: relu_mask, masked_zhat).
// The selects are written without branches so that the loop vectorises; GCC if-converts them
// only under -fno-trapping-math (sincfb/_build.py), which changes no result.
template <typename scalar_t>
struct RowTerms {
  std::vector<scalar_t> active, count, normalised;
  std::vector<uint8_t> flags;
  explicit RowTerms(int64_t n) : active(n), count(n), normalised(n), flags(n + 8) {}

  void compute(const scalar_t* y, int64_t t, scalar_t mu, scalar_t rstd, scalar_t gamma,
               scalar_t beta) {
    scalar_t* __restrict act = active.data();
    scalar_t* __restrict cnt = count.data();
    scalar_t* __restrict nrm = normalised.data();
#pragma omp simd
    for (int64_t j = 0; j < t; ++j) {
      const scalar_t zhat = (y[j] - mu) * rstd;
      const scalar_t z = zhat * gamma + beta;
      const bool off = z <= scalar_t(0);
      act[j] = off ? scalar_t(0) : z;
      cnt[j] = off ? scalar_t(0) : scalar_t(1);
      nrm[j] = off ? zhat - zhat : zhat;
    }
  }

  // Adds the three pooled sums over positions [lo, hi) to sums[0..2] (relu(z), count, zhat):
  // one pass, float runs of kRun, float64 totals.
  void add_sums(int64_t lo, int64_t hi, double* sums) const {
    const scalar_t *act = active.data(), *cnt = count.data(), *nrm = normalised.data();
    for (int64_t r0 = lo; r0 < hi; r0 += kRun) {
      const int64_t r1 = std::min(hi, r0 + kRun);
      scalar_t sa = 0, sc = 0, sn = 0;
#pragma omp simd reduction(+ : sa, sc, sn)
      for (int64_t j = r0; j < r1; ++j) {
        sa += act[j];
        sc += cnt[j];
        sn += nrm[j];
      }
      sums[0] += sa;
      sums[1] += sc;
      sums[2] += sn;
    }
  }

  // Packs the mask of positions [0, t) into bytes (bit q of byte j = position 8j + q). The tile
  // starts on a byte boundary; bits past t (only at the end of a row) are zero.
  void write_mask(int64_t t, uint8_t* bytes) {
    const scalar_t* cnt = count.data();
    uint8_t* __restrict flag = flags.data();
#pragma omp simd
    for (int64_t j = 0; j < t; ++j) flag[j] = cnt[j] != scalar_t(0);
    const int64_t padded = (t + 7) / 8 * 8;
    std::fill(flag + t, flag + padded, uint8_t(0));
    for (int64_t j = 0; j < padded; j += 8) {
      uint64_t eight;  // byte q holds flag q (0 or 1); the multiply gathers bit 0 of each byte
      std::memcpy(&eight, flag + j, 8);
      bytes[j / 8] = static_cast<uint8_t>((eight * 0x0102040810204080ull) >> 56);
    }
  }
};

// kByteFlags[v]: the eight bits of byte v spread over eight bytes (bit q -> byte q, 0 or 1), as
// one little-endian uint64, so unpacking a mask byte is one load.
struct ByteFlags {
  uint64_t spread[256];
  constexpr ByteFlags() : spread() {
    for (int v = 0; v < 256; ++v) {
      uint64_t eight = 0;
      for (int q = 0; q < 8; ++q) eight |= uint64_t((v >> q) & 1) << (8 * q);
      spread[v] = eight;
    }
  }
};
inline constexpr ByteFlags kByteFlags{};

// dz for one tile of t <= kTile positions: the bin weights spread over the positions of their
// bins, times the ReLU mask (a select, so a non-finite weight off the mask gives 0, as torch's
// ReLU backward does).
template <typename scalar_t>
void relu_mask_gradient_tile(const scalar_t* w_row, const std::vector<BinSpan>& spans,
                             const uint8_t* bytes, int64_t t, scalar_t* __restrict dz) {
  TORCH_CHECK(t <= kTile, "relu_mask_gradient_tile: a tile holds at most kTile positions");
  uint8_t flag[kTile + 8];
  std::fill(dz, dz + t, scalar_t(0));
  for (const BinSpan& s : spans) {
    const scalar_t value = w_row[s.bin];
#pragma omp simd
    for (int64_t j = s.lo; j < s.hi; ++j) dz[j] += value;
  }
  for (int64_t j0 = 0; j0 < t; j0 += 8) {
    std::memcpy(flag + j0, &kByteFlags.spread[bytes[j0 >> 3]], 8);
  }
#pragma omp simd
  for (int64_t j = 0; j < t; ++j) dz[j] = flag[j] ? dz[j] : scalar_t(0);
}

}  // namespace sincfb_cpu
