// The fused forward and backward of the filterbank on the CPU (DESIGN.md §3): tiles of output
// positions are produced by one GEMM each and consumed at once (BatchNorm, ReLU, pooling, mask bits
// on the way forward; the filter-gradient correlation and the input-gradient product on the way
// back), so no (B, K, N_out) tensor ever exists. Offsets are int64 throughout: B K N_out exceeds
// 2^31 at the paper's sizes.
#include <array>

#include "epilogue.h"
#include "ops.h"
#include "tiles.h"

namespace sincfb_cpu {
namespace {

// A bin's part in a tile's own positions, and where its partial sums go: slot -1 when the bin
// lies wholly inside the tile (written directly), else slot 0 or 1 of the tile's two boundary
// slots (combined over tiles after the parallel loop).
struct TileBin {
  BinSpan span;   // in tile coordinates
  int slot;
};

std::vector<TileBin> tile_bins(const Bins& bins, const Tiling& tiling, int64_t j) {
  const int64_t lo = tiling.own_lo(j), hi = tiling.own_hi(j), shift = lo - tiling.start(j);
  std::vector<TileBin> result;
  for (const BinSpan& s : bins_in_tile(bins, 0, bins.count, lo, hi - lo)) {
    const bool inside = bins.start(s.bin) >= lo && bins.end(s.bin) <= hi;
    const int slot = inside ? -1 : (result.empty() ? 0 : 1);
    result.push_back({{s.bin, s.lo + shift, s.hi + shift}, slot});
  }
  return result;
}

template <typename scalar_t>
struct ForwardArgs {
  const scalar_t* x;          // (B, N)
  int64_t batch, n;
  const scalar_t* filters;    // (K, C) folded
  int64_t K, L;
  const scalar_t *mean, *rstd, *gamma, *beta;  // (K,)
  int64_t bins;
  scalar_t* out;              // (B, K, P)
  uint8_t* mask;              // (B, K, ceil(N_out / 8))
  scalar_t* stats;            // (2, B, K, P)
};

// Writes a finished bin: the pooled mean of relu(z), the count of z > 0 and the sum of zhat there.
template <typename scalar_t>
void store_bin(const ForwardArgs<scalar_t>& a, const Bins& bins, int64_t row, int64_t bin,
               const double* sums) {
  const int64_t at_bin = row * a.bins + bin, plane = a.batch * a.K * a.bins;
  a.out[at_bin] = static_cast<scalar_t>(sums[0] / double(bins.end(bin) - bins.start(bin)));
  a.stats[at_bin] = static_cast<scalar_t>(sums[1]);
  a.stats[plane + at_bin] = static_cast<scalar_t>(sums[2]);
}

// Which bin fills boundary slot 0 and 1 of each tile (-1: none); the same for every (b, k) row.
std::vector<std::array<int64_t, 2>> boundary_slots(const Bins& bins, const Tiling& tiling) {
  std::vector<std::array<int64_t, 2>> slot_bin(tiling.count, {-1, -1});
  for (int64_t j = 0; j < tiling.count; ++j) {
    for (const TileBin& tb : tile_bins(bins, tiling, j)) {
      if (tb.slot >= 0) slot_bin[j][tb.slot] = tb.span.bin;
    }
  }
  return slot_bin;
}

// Per-worker scratch of the forward: a tile of folded windows, its products, the row terms.
template <typename scalar_t>
struct ForwardScratch {
  std::vector<scalar_t> ft, y;
  RowTerms<scalar_t> terms;
  ForwardScratch(int64_t C, int64_t K, int64_t t) : ft(C * t), y(K * t), terms(t) {}
};

// One work item: tile j of clip b, all K filters. Bins inside the tile are stored; the partial
// sums of bins crossing its edges go to the tile's boundary slots in `partial`.
template <typename scalar_t>
void forward_tile(const ForwardArgs<scalar_t>& a, const Bins& bins, const Tiling& tiling,
                  int64_t b, int64_t j, ForwardScratch<scalar_t>& s, double* partial) {
  const int64_t C = a.L / 2 + 1, K = a.K, t = tiling.size, width = (bins.n + 7) / 8;
  const int64_t u0 = tiling.start(j), own = tiling.own_lo(j) - u0;
  const int64_t t_own = tiling.own_hi(j) - tiling.own_lo(j);
  fold_windows(a.x + b * a.n + u0, a.L, t, s.ft.data());
  gemm_into(matrix(a.filters, K, C, C), matrix(s.ft.data(), C, t, t), matrix(s.y.data(), K, t, t));
  const std::vector<TileBin> spans = tile_bins(bins, tiling, j);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t row = b * K + k;
    s.terms.compute(s.y.data() + k * t + own, t_own, a.mean[k], a.rstd[k], a.gamma[k],
                    a.beta[k]);
    for (const TileBin& tb : spans) {
      const int64_t lo = tb.span.lo - own, hi = tb.span.hi - own;
      double sums[3] = {0, 0, 0};
      s.terms.add_sums(lo, hi, sums);
      if (tb.slot < 0) {
        store_bin(a, bins, row, tb.span.bin, sums);
      } else {
        std::copy(sums, sums + 3, partial + ((row * tiling.count + j) * 2 + tb.slot) * 3);
      }
    }
    s.terms.write_mask(t_own, a.mask + row * width + tiling.own_lo(j) / 8);
  }
}

// Adds up the partial sums of the bins that cross tile boundaries (consecutive tiles, in order)
// and stores them.
template <typename scalar_t>
void combine_boundary_bins(const ForwardArgs<scalar_t>& a, const Bins& bins,
                           const std::vector<std::array<int64_t, 2>>& slot_bin,
                           const double* partial) {
  const int64_t tiles = static_cast<int64_t>(slot_bin.size());
  at::parallel_for(0, a.batch * a.K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      int64_t current = -1;
      double sums[3] = {0, 0, 0};
      for (int64_t j = 0; j < tiles; ++j) {
        for (int slot = 0; slot < 2; ++slot) {
          const int64_t bin = slot_bin[j][slot];
          if (bin < 0) continue;
          if (bin != current) {
            if (current >= 0) store_bin(a, bins, row, current, sums);
            current = bin;
            sums[0] = sums[1] = sums[2] = 0;
          }
          const double* p = partial + ((row * tiles + j) * 2 + slot) * 3;
          for (int q = 0; q < 3; ++q) sums[q] += p[q];
        }
      }
      if (current >= 0) store_bin(a, bins, row, current, sums);
    }
  });
}

template <typename scalar_t>
void forward_kernel(const ForwardArgs<scalar_t>& a) {
  const Bins bins{a.n - a.L + 1, a.bins};
  const Tiling tiling(bins.n);
  const int64_t items = a.batch * tiling.count;
  // (B K, tiles, 2 boundary slots, 3 sums)
  std::vector<double> partial(a.batch * a.K * tiling.count * 6, 0.0);
  for_each_item(items, [&](int64_t /*worker*/, const auto& next) {
    ForwardScratch<scalar_t> scratch(a.L / 2 + 1, a.K, tiling.size);
    for (int64_t item = next(); item >= 0; item = next()) {
      forward_tile(a, bins, tiling, item / tiling.count, item % tiling.count, scratch,
                   partial.data());
    }
  });
  combine_boundary_bins(a, bins, boundary_slots(bins, tiling), partial.data());
}

template <typename scalar_t>
struct BackwardArgs {
  const scalar_t* w;          // (B, K, P) gradient per bin / bin size
  const scalar_t* x;          // (B, N)
  int64_t batch, n;
  const scalar_t* scaled;     // (K, C) folded filters times c_k
  int64_t K, L;
  const uint8_t* mask;        // (B, K, ceil(N_out / 8))
  int64_t bins;
  double* corr;               // (K, C), or null: the filter gradient is not needed
  scalar_t* dx;               // (B, N), or null: the input gradient is not needed
};

// Per-worker scratch of the backward, including the worker's float64 filter-gradient sum.
template <typename scalar_t>
struct BackwardScratch {
  std::vector<scalar_t> ft, dz, tile_corr, transposed;
  BackwardScratch(int64_t C, int64_t K, int64_t t)
      : ft(C * t), dz(K * t), tile_corr(K * C), transposed(C * t) {}
};

// dz (K x t) of tile j of clip b; zero on the positions the tile computes but does not own.
template <typename scalar_t>
void tile_gradient(const BackwardArgs<scalar_t>& a, const Bins& bins, const Tiling& tiling,
                   int64_t b, int64_t j, scalar_t* dz) {
  const int64_t K = a.K, t = tiling.size, width = (bins.n + 7) / 8;
  const int64_t lo = tiling.own_lo(j), own = lo - tiling.start(j), t_own = tiling.own_hi(j) - lo;
  const std::vector<BinSpan> spans = bins_in_tile(bins, 0, a.bins, lo, t_own);
  for (int64_t k = 0; k < K; ++k) {
    scalar_t* row = dz + k * t;
    std::fill(row, row + own, scalar_t(0));
    relu_mask_gradient_tile(a.w + (b * K + k) * a.bins, spans,
                            a.mask + (b * K + k) * width + lo / 8, t_own, row + own);
  }
}

// One work item: both heavy products of tile j of clip b. The filter-gradient correlation is
// added to acc (K x C, float64); the input-gradient tile goes to its own slot of t + L - 1.
template <typename scalar_t>
void backward_tile(const BackwardArgs<scalar_t>& a, const Bins& bins, const Tiling& tiling,
                   int64_t b, int64_t j, BackwardScratch<scalar_t>& s, double* acc,
                   scalar_t* slot) {
  const int64_t C = a.L / 2 + 1, K = a.K, t = tiling.size;
  tile_gradient(a, bins, tiling, b, j, s.dz.data());
  const at::Tensor dz = matrix(s.dz.data(), K, t, t);
  if (a.corr != nullptr) {
    fold_windows(a.x + b * a.n + tiling.start(j), a.L, t, s.ft.data());
    gemm_into(dz, matrix(s.ft.data(), C, t, t).t(), matrix(s.tile_corr.data(), K, C, C));
    for (int64_t i = 0; i < K * C; ++i) acc[i] += s.tile_corr[i];
  }
  if (a.dx != nullptr) {
    gemm_into(matrix(a.scaled, K, C, C).t(), dz, matrix(s.transposed.data(), C, t, t));
    unfold_add(s.transposed.data(), a.L, t, slot);
  }
}

// dx[b] = the sum of its tiles' slots, each placed at the first position its tile computes.
template <typename scalar_t>
void overlap_add(const BackwardArgs<scalar_t>& a, const Tiling& tiling, const scalar_t* slots,
                 int64_t slot_len) {
  at::parallel_for(0, a.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      scalar_t* dx = a.dx + b * a.n;
      std::fill(dx, dx + a.n, scalar_t(0));
      for (int64_t j = 0; j < tiling.count; ++j) {
        const scalar_t* slot = slots + (b * tiling.count + j) * slot_len;
        scalar_t* dst = dx + tiling.start(j);
        for (int64_t i = 0; i < slot_len; ++i) dst[i] += slot[i];
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const BackwardArgs<scalar_t>& a) {
  const int64_t KC = a.K * (a.L / 2 + 1);
  const Bins bins{a.n - a.L + 1, a.bins};
  const Tiling tiling(bins.n);
  const int64_t items = a.batch * tiling.count, slot_len = tiling.size + a.L - 1;
  std::vector<double> partial(a.corr != nullptr ? worker_count(items) * KC : 0, 0.0);
  // Tiles of one clip overlap by L - 1 input positions: each tile writes its own slot of dx.
  std::vector<scalar_t> slots(a.dx != nullptr ? items * slot_len : 0, scalar_t(0));
  for_each_item(items, [&](int64_t worker, const auto& next) {
    BackwardScratch<scalar_t> scratch(a.L / 2 + 1, a.K, tiling.size);
    for (int64_t item = next(); item >= 0; item = next()) {
      backward_tile(a, bins, tiling, item / tiling.count, item % tiling.count, scratch,
                    a.corr != nullptr ? partial.data() + worker * KC : nullptr,
                    a.dx != nullptr ? slots.data() + item * slot_len : nullptr);
    }
  });
  if (a.corr != nullptr) {
    std::fill(a.corr, a.corr + KC, 0.0);
    for (size_t i = 0; i < partial.size(); ++i) a.corr[i % KC] += partial[i];
  }
  if (a.dx != nullptr) overlap_add(a, tiling, slots.data(), slot_len);
}

void check_buffer(const at::Tensor& t, const char* name, at::IntArrayRef shape,
                  at::ScalarType dtype) {
  TORCH_CHECK(t.sizes() == shape, name, " must have shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, name, " must have dtype ", dtype, ", got ",
              t.scalar_type());
  TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), name, " must be a contiguous CPU tensor");
}

void check_signal(const at::Tensor& x, const at::Tensor& filters) {
  TORCH_CHECK(x.dim() == 2, "x must be (B, N), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "sincfb_cpu kernels take float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(filters.dim() == 2 && filters.scalar_type() == x.scalar_type(),
              "folded filters must be (K, C) in the signal's dtype, got ", filters.sizes(), " ",
              filters.scalar_type());
  TORCH_CHECK(x.size(1) >= 2 * filters.size(1) - 1, "signal shorter than the filters");
}

at::Tensor per_filter(const at::Tensor& v, int64_t K, const at::Tensor& like) {
  TORCH_CHECK(v.numel() == K, "per-filter tensors must have K=", K, " elements, got ", v.sizes());
  return v.reshape({K}).to(like.scalar_type()).contiguous();
}

}  // namespace

void filterbank_forward(const at::Tensor& x_in, const at::Tensor& filters_in,
                        const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& weight,
                        const at::Tensor& bias, const at::Tensor& out, const at::Tensor& mask_bits,
                        const at::Tensor& bin_stats) {
  check_signal(x_in, filters_in);
  const at::Tensor x = x_in.contiguous(), filters = filters_in.contiguous();
  const int64_t B = x.size(0), K = filters.size(0), L = 2 * filters.size(1) - 1;
  const int64_t n_out = x.size(1) - L + 1, P = out.size(-1);
  TORCH_CHECK(P >= 1 && P <= n_out, "pool_bins must be in [1, N_out], got ", P);
  check_buffer(out, "out", {B, K, P}, x.scalar_type());
  check_buffer(mask_bits, "mask_bits", {B, K, (n_out + 7) / 8}, at::kByte);
  check_buffer(bin_stats, "bin_stats", {2, B, K, P}, x.scalar_type());
  const at::Tensor mu = per_filter(mean, K, x), rs = per_filter(rstd, K, x);
  const at::Tensor gamma = per_filter(weight, K, x), beta = per_filter(bias, K, x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "filterbank_forward", [&] {
    forward_kernel<scalar_t>({x.data_ptr<scalar_t>(), B, x.size(1), filters.data_ptr<scalar_t>(),
                              K, L, mu.data_ptr<scalar_t>(), rs.data_ptr<scalar_t>(),
                              gamma.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), P,
                              out.data_ptr<scalar_t>(), mask_bits.data_ptr<uint8_t>(),
                              bin_stats.data_ptr<scalar_t>()});
  });
}

void filterbank_backward(const at::Tensor& bin_grad_in, const at::Tensor& x_in,
                         const at::Tensor& scaled_in, const at::Tensor& mask_in,
                         const at::Tensor& corr, const at::Tensor& grad_x, bool with_corr,
                         bool with_dx) {
  check_signal(x_in, scaled_in);
  const at::Tensor x = x_in.contiguous(), scaled = scaled_in.contiguous();
  const at::Tensor w = bin_grad_in.to(x.scalar_type()).contiguous(), mask = mask_in.contiguous();
  const int64_t B = x.size(0), K = scaled.size(0), C = scaled.size(1), L = 2 * C - 1;
  const int64_t n_out = x.size(1) - L + 1;
  TORCH_CHECK(w.dim() == 3 && w.size(0) == B && w.size(1) == K && w.size(2) >= 1 &&
                  w.size(2) <= n_out,
              "bin_grad must be (B, K, P) with 1 <= P <= N_out, got ", w.sizes());
  check_buffer(mask, "mask_bits", {B, K, (n_out + 7) / 8}, at::kByte);
  if (with_corr) check_buffer(corr, "corr", {K, C}, at::kDouble);
  if (with_dx) check_buffer(grad_x, "grad_x", {B, x.size(1)}, x.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "filterbank_backward", [&] {
    backward_kernel<scalar_t>({w.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), B, x.size(1),
                               scaled.data_ptr<scalar_t>(), K, L, mask.data_ptr<uint8_t>(),
                               w.size(2), with_corr ? corr.data_ptr<double>() : nullptr,
                               with_dx ? grad_x.data_ptr<scalar_t>() : nullptr});
  });
}

}  // namespace sincfb_cpu
