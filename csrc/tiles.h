// Building blocks of the CPU kernels (DESIGN.md §3): pooling bins, folded window tiles, GEMM on
// raw buffers, and the transposed "unfold-add". Every product of the filterbank is a GEMM between
// the (K x C) folded filters and a (C x t) tile of folded windows, C = (L + 1) / 2, so one tile
// layout serves the forward product, the filter-gradient correlation and the input gradient.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

namespace sincfb_cpu {

// Positions per GEMM tile. A multiple of 8 so tiles start on whole mask bytes; large enough for
// GEMM efficiency at K = 160, small enough that a (C x t) tile of folded windows stays in L2/L3.
#ifndef SINCFB_TILE
#define SINCFB_TILE 1024
#endif
constexpr int64_t kTile = SINCFB_TILE;
static_assert(kTile % 8 == 0, "tiles must start on mask bytes");

// AdaptiveAvgPool1d's bins over n positions: bin i covers [floor(i n / P), ceil((i + 1) n / P)).
struct Bins {
  int64_t n;
  int64_t count;
  int64_t start(int64_t i) const { return (i * n) / count; }
  int64_t end(int64_t i) const { return ((i + 1) * n + count - 1) / count; }
  // The first bin whose range holds position t (bins holding t are consecutive).
  int64_t first_holding(int64_t t) const { return (t * count) / n; }
};

// A bin's overlap with a tile, in tile coordinates.
struct BinSpan {
  int64_t bin;
  int64_t lo;
  int64_t hi;
};

// The bins among [first, last) that intersect positions [u0, u0 + t), clipped to the tile.
inline std::vector<BinSpan> bins_in_tile(const Bins& bins, int64_t first, int64_t last, int64_t u0,
                                         int64_t t) {
  std::vector<BinSpan> spans;
  for (int64_t i = std::max(first, bins.first_holding(u0)); i < last; ++i) {
    const int64_t lo = bins.start(i), hi = bins.end(i);
    if (lo >= u0 + t) break;
    if (hi <= u0) continue;
    spans.push_back({i, std::max(lo, u0) - u0, std::min(hi, u0 + t) - u0});
  }
  return spans;
}

template <typename scalar_t>
inline at::ScalarType scalar_type_of() {
  return c10::CppTypeToScalarType<scalar_t>::value;
}

// A row-major matrix view of a raw buffer (no copy, no ownership).
template <typename scalar_t>
inline at::Tensor matrix(const scalar_t* data, int64_t rows, int64_t cols, int64_t ld) {
  return at::from_blob(const_cast<scalar_t*>(data), {rows, cols}, {ld, 1},
                       at::TensorOptions().dtype(scalar_type_of<scalar_t>()));
}

// out (m x n, contiguous) = a @ b through ATen's public at::mm_out, i.e. the BLAS that torch was
// built with (MKL on x86-64, OpenBLAS or Arm's library on aarch64), which picks its own
// instruction set at run time. Inside at::parallel_for the BLAS call runs on the calling thread,
// so the kernels parallelise over tiles, not inside the GEMM.
inline void gemm_into(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out) {
  at::Tensor result = out;
  at::mm_out(result, a, b);
}

// Folded windows of a tile, (C x t) row-major with leading dimension t:
// row l < c holds x[j + l] + x[j + L - 1 - l] and row c holds x[j + c], j = 0..t-1, where x
// points at the tile's first position. Rows are contiguous sums of two shifted slices.
template <typename scalar_t>
inline void fold_windows(const scalar_t* x, int64_t L, int64_t t, scalar_t* ft) {
  const int64_t c = L / 2;
  for (int64_t l = 0; l < c; ++l) {
    const scalar_t* lo = x + l;
    const scalar_t* hi = x + (L - 1 - l);
    scalar_t* row = ft + l * t;
    for (int64_t j = 0; j < t; ++j) row[j] = lo[j] + hi[j];
  }
  std::copy(x + c, x + c + t, ft + c * t);
}

// The adjoint of fold_windows: slot[j + l] += ft[l, j] and slot[j + L - 1 - l] += ft[l, j]
// (l < c), slot[j + c] += ft[c, j]. slot has t + L - 1 entries and must be zeroed by the caller.
template <typename scalar_t>
inline void unfold_add(const scalar_t* ft, int64_t L, int64_t t, scalar_t* slot) {
  const int64_t c = L / 2;
  for (int64_t l = 0; l < c; ++l) {
    const scalar_t* row = ft + l * t;
    scalar_t* lo = slot + l;
    scalar_t* hi = slot + (L - 1 - l);
    for (int64_t j = 0; j < t; ++j) lo[j] += row[j];
    for (int64_t j = 0; j < t; ++j) hi[j] += row[j];
  }
  const scalar_t* centre = ft + c * t;
  for (int64_t j = 0; j < t; ++j) slot[c + j] += centre[j];
}

// Runs body(worker, next) on up to at::get_num_threads() threads, where next() hands out the items
// 0..items-1 one at a time and returns -1 when none are left. Dynamic hand-out rather than
// at::parallel_for's fixed split keeps every thread busy when another process takes a core for a
// while; the worker index (0..workers-1) selects per-worker accumulators.
template <typename Body>
void for_each_item(int64_t items, const Body& body) {
  std::atomic<int64_t> counter{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), items));
  auto next = [&counter, items]() -> int64_t {
    const int64_t item = counter.fetch_add(1, std::memory_order_relaxed);
    return item < items ? item : -1;
  };
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t worker = begin; worker < end; ++worker) body(worker, next);
  });
}

// Number of workers for_each_item uses (the size of per-worker accumulator arrays).
inline int64_t worker_count(int64_t items) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), items));
}

// Number of tiles of at most `tile` positions covering n positions.
inline int64_t tile_count(int64_t n, int64_t tile) { return (n + tile - 1) / tile; }

// The fused kernels' tiles over n output positions, all of the same size so that every GEMM has
// one shape (oneDNN JIT-compiles and caches a kernel per shape, about 1 MB each). Tile j owns
// positions [own_lo, own_hi) = [j size, min((j + 1) size, n)); the last tile computes the `size`
// positions ending at n and uses only its own ones. size is kTile (a multiple of 8, so owned
// ranges start on mask bytes) or n when n is smaller.
struct Tiling {
  int64_t n, size, count;
  explicit Tiling(int64_t n_out)
      : n(n_out), size(std::min(kTile, n_out)), count(tile_count(n_out, size)) {}
  int64_t own_lo(int64_t j) const { return j * size; }
  int64_t own_hi(int64_t j) const { return std::min(own_lo(j) + size, n); }
  int64_t start(int64_t j) const { return std::min(own_lo(j), n - size); }
};

}  // namespace sincfb_cpu
