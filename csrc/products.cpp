// The three folded products on their own (DESIGN.md §3.1, §3.3), materialising their results.
// The fused kernels (filterbank.cpp) stream the same tiles; these serve the short edge signals of
// the backward and the step-by-step tests.
#include "ops.h"
#include "tiles.h"

namespace sincfb_cpu {
namespace {

void check_filters(const at::Tensor& filters, const at::Tensor& like) {
  TORCH_CHECK(filters.dim() == 2, "folded filters must be (K, C), got ", filters.sizes());
  TORCH_CHECK(filters.scalar_type() == like.scalar_type(), "folded filters have dtype ",
              filters.scalar_type(), " but the signal has ", like.scalar_type());
  TORCH_CHECK(like.scalar_type() == at::kFloat || like.scalar_type() == at::kDouble,
              "sincfb_cpu kernels take float32 or float64, got ", like.scalar_type());
  TORCH_CHECK(filters.device().is_cpu() && like.device().is_cpu(), "sincfb_cpu runs on the CPU");
}

template <typename scalar_t>
void correlate_kernel(const scalar_t* x, int64_t batch, int64_t n, const scalar_t* gf, int64_t K,
                      int64_t L, scalar_t* y) {
  const int64_t C = L / 2 + 1, n_out = n - L + 1, tiles = tile_count(n_out, kTile);
  for_each_item(batch * tiles, [&](int64_t /*worker*/, const auto& next) {
    std::vector<scalar_t> ft(C * kTile), out(K * kTile);
    const at::Tensor g = matrix(gf, K, C, C);
    for (int64_t item = next(); item >= 0; item = next()) {
      const int64_t b = item / tiles, u0 = (item % tiles) * kTile;
      const int64_t t = std::min(kTile, n_out - u0);
      fold_windows(x + b * n + u0, L, t, ft.data());
      gemm_into(g, matrix(ft.data(), C, t, t), matrix(out.data(), K, t, t));
      for (int64_t k = 0; k < K; ++k) {
        std::copy(out.data() + k * t, out.data() + (k + 1) * t, y + (b * K + k) * n_out + u0);
      }
    }
  });
}

template <typename scalar_t>
void transposed_kernel(const scalar_t* v, int64_t batch, int64_t T, const scalar_t* gf, int64_t K,
                       int64_t L, scalar_t* out) {
  const int64_t C = L / 2 + 1, tiles = tile_count(T, kTile), width = T + L - 1;
  const int64_t slot_len = kTile + L - 1;
  // Tiles of one clip overlap by L - 1 outputs: each tile writes its own slot, summed afterwards.
  std::vector<scalar_t> slots(batch * tiles * slot_len, scalar_t(0));
  for_each_item(batch * tiles, [&](int64_t /*worker*/, const auto& next) {
    std::vector<scalar_t> ft(C * kTile);
    const at::Tensor gt = matrix(gf, K, C, C).t();
    for (int64_t item = next(); item >= 0; item = next()) {
      const int64_t b = item / tiles, u0 = (item % tiles) * kTile;
      const int64_t t = std::min(kTile, T - u0);
      gemm_into(gt, matrix(v + b * K * T + u0, K, t, T), matrix(ft.data(), C, t, t));
      unfold_add(ft.data(), L, t, slots.data() + item * slot_len);
    }
  });
  std::fill(out, out + batch * width, scalar_t(0));
  for (int64_t item = 0; item < batch * tiles; ++item) {
    const int64_t b = item / tiles, u0 = (item % tiles) * kTile;
    const int64_t t = std::min(kTile, T - u0);
    const scalar_t* slot = slots.data() + item * slot_len;
    scalar_t* dst = out + b * width + u0;
    for (int64_t j = 0; j < t + L - 1; ++j) dst[j] += slot[j];
  }
}

template <typename scalar_t>
void window_correlation_kernel(const scalar_t* v, int64_t batch, int64_t K, int64_t T,
                               const scalar_t* x, int64_t L, double* corr) {
  const int64_t C = L / 2 + 1, n = T + L - 1, tiles = tile_count(T, kTile);
  const int64_t threads = worker_count(batch * tiles);
  // One float64 accumulator per thread; the per-tile GEMM result is added into it.
  std::vector<double> partial(threads * K * C, 0.0);
  for_each_item(batch * tiles, [&](int64_t worker, const auto& next) {
    std::vector<scalar_t> ft(C * kTile), tile_corr(K * C);
    double* acc = partial.data() + worker * K * C;
    for (int64_t item = next(); item >= 0; item = next()) {
      const int64_t b = item / tiles, u0 = (item % tiles) * kTile;
      const int64_t t = std::min(kTile, T - u0);
      fold_windows(x + b * n + u0, L, t, ft.data());
      gemm_into(matrix(v + b * K * T + u0, K, t, T), matrix(ft.data(), C, t, t).t(),
                matrix(tile_corr.data(), K, C, C));
      for (int64_t i = 0; i < K * C; ++i) acc[i] += tile_corr[i];
    }
  });
  std::fill(corr, corr + K * C, 0.0);
  for (int64_t p = 0; p < threads; ++p) {
    for (int64_t i = 0; i < K * C; ++i) corr[i] += partial[p * K * C + i];
  }
}

}  // namespace

at::Tensor fold_correlate(const at::Tensor& x_in, const at::Tensor& filters_in) {
  check_filters(filters_in, x_in);
  TORCH_CHECK(x_in.dim() == 2, "x must be (B, N), got ", x_in.sizes());
  const at::Tensor x = x_in.contiguous(), filters = filters_in.contiguous();
  const int64_t K = filters.size(0), L = 2 * filters.size(1) - 1;
  TORCH_CHECK(x.size(1) >= L, "signal of ", x.size(1), " samples is shorter than the filter ", L);
  at::Tensor y = at::empty({x.size(0), K, x.size(1) - L + 1}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fold_correlate", [&] {
    correlate_kernel(x.data_ptr<scalar_t>(), x.size(0), x.size(1), filters.data_ptr<scalar_t>(),
                     K, L, y.data_ptr<scalar_t>());
  });
  return y;
}

at::Tensor fold_correlate_transposed(const at::Tensor& v_in, const at::Tensor& filters_in) {
  check_filters(filters_in, v_in);
  TORCH_CHECK(v_in.dim() == 3 && v_in.size(1) == filters_in.size(0),
              "values must be (B, K, T) with K filters, got ", v_in.sizes());
  const at::Tensor v = v_in.contiguous(), filters = filters_in.contiguous();
  const int64_t K = filters.size(0), L = 2 * filters.size(1) - 1;
  at::Tensor out = at::empty({v.size(0), v.size(2) + L - 1}, v.options());
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "fold_correlate_transposed", [&] {
    transposed_kernel(v.data_ptr<scalar_t>(), v.size(0), v.size(2), filters.data_ptr<scalar_t>(),
                      K, L, out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor fold_window_correlation(const at::Tensor& v_in, const at::Tensor& x_in) {
  TORCH_CHECK(v_in.dim() == 3 && x_in.dim() == 2 && v_in.size(0) == x_in.size(0),
              "values must be (B, K, T) and x (B, T + L - 1), got ", v_in.sizes(), " and ",
              x_in.sizes());
  check_filters(v_in[0], x_in);
  const at::Tensor v = v_in.contiguous(), x = x_in.contiguous();
  const int64_t L = x.size(1) - v.size(2) + 1;
  TORCH_CHECK(L >= 1 && L % 2 == 1, "x must be T + L - 1 samples long with an odd L, got L=", L);
  at::Tensor corr = at::empty({v.size(1), L / 2 + 1}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fold_window_correlation", [&] {
    window_correlation_kernel(v.data_ptr<scalar_t>(), v.size(0), v.size(1), v.size(2),
                              x.data_ptr<scalar_t>(), L, corr.data_ptr<double>());
  });
  return corr;
}

}  // namespace sincfb_cpu
