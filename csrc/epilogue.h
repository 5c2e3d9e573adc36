// The per-position epilogue shared by the fused direct kernels (filterbank.cpp) and the FFT
// backend's per-filter-group kernels (fft_filters.cpp): BatchNorm, ReLU, the pooled terms, the mask bits, and
// on the way back dz from the mask bits and the bin weights.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "tiles.h"

namespace sincfb_cpu {

// Per-position epilogue terms of one row of a tile, computed in one vectorised pass:
// zhat = (y - mu) * rstd and z = zhat * gamma + beta as the reference composite rounds them; then
// relu(z), the indicator of z > 0 and zhat where z > 0 (the three things pooled per bin).
// NaN and Inf behave as in the composite (compiled without -ffast-math, so IEEE comparisons
// hold): the ReLU mask is !(z <= 0), so a NaN z passes itself (relu(NaN) is NaN) and, like
// torch's ReLU backward, its gradient; off the mask the zhat term is zhat - zhat (0, or NaN for
// a non-finite zhat), so dgamma = sum(w * S) is non-finite where the composite's
// sum(dz * zhat) meets 0 * Inf (sincfb/pooling.py: relu_mask, masked_zhat).
template <typename scalar_t>
struct RowTerms {
  std::vector<scalar_t> active, count, normalised;
  std::vector<uint8_t> flags;
  explicit RowTerms(int64_t n) : active(n), count(n), normalised(n), flags(n + 8) {}

  void compute(const scalar_t* y, int64_t t, scalar_t mu, scalar_t rstd, scalar_t gamma,
               scalar_t beta) {
    scalar_t *act = active.data(), *cnt = count.data(), *nrm = normalised.data();
    uint8_t* flag = flags.data();
#pragma omp simd
    for (int64_t j = 0; j < t; ++j) {
      const scalar_t zhat = (y[j] - mu) * rstd;
      const scalar_t z = zhat * gamma + beta;
      const bool positive = !(z <= scalar_t(0));
      act[j] = positive ? z : scalar_t(0);
      cnt[j] = positive ? scalar_t(1) : scalar_t(0);
      nrm[j] = positive ? zhat : zhat - zhat;
      flag[j] = positive ? 1 : 0;
    }
  }
};

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

// Packs the flags of tile positions [0, t_own) into bytes (bit q of byte j = position 8j + q).
// The tile starts on a byte boundary; bits past t_own (only at the end of a row) are zero.
inline void write_mask(uint8_t* flags, int64_t t_own, uint8_t* bytes) {
  const int64_t padded = (t_own + 7) / 8 * 8;
  std::fill(flags + t_own, flags + padded, uint8_t(0));
  for (int64_t j = 0; j < padded; j += 8) {
    uint64_t eight;  // byte q holds flag q (0 or 1); the multiply gathers bit 0 of each byte
    std::memcpy(&eight, flags + j, 8);
    bytes[j / 8] = static_cast<uint8_t>((eight * 0x0102040810204080ull) >> 56);
  }
}

// dz for one tile: the bin weights spread over the positions of their bins, times the ReLU mask.
template <typename scalar_t>
void relu_mask_gradient_tile(const scalar_t* w_row, const std::vector<BinSpan>& spans,
                             const uint8_t* bytes, int64_t t, scalar_t* dz) {
  std::fill(dz, dz + t, scalar_t(0));
  for (const BinSpan& s : spans) {
    const scalar_t value = w_row[s.bin];
    for (int64_t j = s.lo; j < s.hi; ++j) dz[j] += value;
  }
  for (int64_t j0 = 0; j0 < t; j0 += 8) {
    const unsigned byte = bytes[j0 >> 3];
    const int64_t m = std::min<int64_t>(8, t - j0);
    for (int64_t q = 0; q < m; ++q) dz[j0 + q] = ((byte >> q) & 1u) ? dz[j0 + q] : scalar_t(0);
  }
}

}  // namespace sincfb_cpu
