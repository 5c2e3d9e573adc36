// The 'fft' backend on the CPU, a few filters per work item. An item forms its filters' outputs
// for every clip with one inverse FFT of (k, B, n_fft) and finishes them at once: statistics,
// epilogue and, on the way back, dy, its FFT, the filter gradients and the item's share of the
// input-gradient spectrum. Work is handed out dynamically and the FFTs inside an item run on the
// worker's thread, so a whole pass is one parallel region: the tensor-op version (fft.py, what
// CUDA runs) issues a few hundred short parallel operations, each of which waits for a core
// another process may hold (20x slower on a busy 2-core machine). Items hold about kGroupRows
// (filter, clip) rows so each FFT call amortises the transform set-up (MKL builds a descriptor per
// call, ~0.3 ms at n = 48000); the filters' spectra are made per item too, so memory stays a few
// (k, B, n_fft) buffers per worker.
#include <cmath>
#include <utility>

#include "epilogue.h"
#include "ops.h"
#include "tiles.h"

namespace sincfb_cpu {
namespace {

constexpr int64_t kGroupRows = 16;

// Full circular convolutions (k, B, n_fft) of every clip with filters spectra (k, F); the valid
// outputs are samples L-1..n-1 (taps are symmetric, so convolution and correlation agree, and
// n_fft >= n keeps them free of wrap-around).
at::Tensor filter_outputs(const at::Tensor& spectrum, const at::Tensor& spectra, int64_t n_fft) {
  return at::fft_irfft(spectrum.unsqueeze(0) * spectra.unsqueeze(1), n_fft, -1).contiguous();
}

// rfft (k, F) of the taps of filters [k0, k1) (K, L), zero-padded to n_fft.
at::Tensor group_spectra(const at::Tensor& filters, int64_t k0, int64_t k1, int64_t n_fft) {
  return at::fft_rfft(filters.narrow(0, k0, k1 - k0), n_fft, -1);
}

// Filters per work item: about kGroupRows (filter, clip) rows.
int64_t group_size(int64_t batch, int64_t K) {
  return std::max<int64_t>(1, std::min<int64_t>(K, kGroupRows / std::max<int64_t>(batch, 1)));
}

// Mean and biased variance over (b, positions) of rows (B, n_fft) restricted to [lo, lo + n).
template <typename scalar_t>
std::pair<double, double> row_statistics(const scalar_t* y, int64_t B, int64_t stride, int64_t lo,
                                         int64_t n) {
  double total = 0;
  for (int64_t b = 0; b < B; ++b) total += segment_sum(y + b * stride + lo, 0, n);
  const double mean = total / double(B * n);
  double squares = 0;
  const scalar_t centre = static_cast<scalar_t>(mean);
  for (int64_t b = 0; b < B; ++b) {
    const scalar_t* row = y + b * stride + lo;
    for (int64_t r0 = 0; r0 < n; r0 += kRun) {
      const int64_t r1 = std::min(n, r0 + kRun);
      scalar_t run = 0;
#pragma omp simd reduction(+ : run)
      for (int64_t j = r0; j < r1; ++j) run += (row[j] - centre) * (row[j] - centre);
      squares += run;
    }
  }
  return {mean, squares / double(B * n)};
}

// Each kTile-position tile's bins (tile coordinates): the same for every row.
std::vector<std::vector<BinSpan>> spans_per_tile(const Bins& bins) {
  std::vector<std::vector<BinSpan>> spans;
  for (int64_t u0 = 0; u0 < bins.n; u0 += kTile) {
    spans.push_back(bins_in_tile(bins, 0, bins.count, u0, std::min(kTile, bins.n - u0)));
  }
  return spans;
}

struct FftShape {
  int64_t batch, K, L, n, n_fft, n_out, bins;
};

template <typename scalar_t>
struct FftForward {
  FftShape s;
  const at::Tensor& spectrum;   // (B, F = n_fft / 2 + 1) complex
  const at::Tensor& filters;    // (K, L) taps, real
  bool training;
  double eps;
  const double *mean_in, *var_in, *gamma, *beta;   // (K,); means/variances used in eval mode
  scalar_t* out;                // (B, K, P)
  uint8_t* mask;                // (B, K, ceil(n_out / 8))
  scalar_t* stats;              // (2, B, K, P)
  double *mean_out, *var_out;   // (K,)
};

// Epilogue of one row (clip b, filter k) of n_out outputs.
template <typename scalar_t>
void forward_row(const FftForward<scalar_t>& a, const Bins& bins,
                 const std::vector<std::vector<BinSpan>>& spans, const scalar_t* y, int64_t b,
                 int64_t k, scalar_t mu, scalar_t rstd, RowTerms<scalar_t>& terms,
                 std::vector<double>& sums) {
  const int64_t row = b * a.s.K + k, width = (a.s.n_out + 7) / 8, P = a.s.bins;
  const scalar_t gamma = static_cast<scalar_t>(a.gamma[k]);
  const scalar_t beta = static_cast<scalar_t>(a.beta[k]);
  std::fill(sums.begin(), sums.end(), 0.0);
  for (size_t tile = 0; tile < spans.size(); ++tile) {
    const int64_t u0 = int64_t(tile) * kTile, t = std::min(kTile, a.s.n_out - u0);
    terms.compute(y + u0, t, mu, rstd, gamma, beta);
    for (const BinSpan& sp : spans[tile]) {
      sums[3 * sp.bin] += segment_sum(terms.active.data(), sp.lo, sp.hi);
      sums[3 * sp.bin + 1] += segment_sum(terms.count.data(), sp.lo, sp.hi);
      sums[3 * sp.bin + 2] += segment_sum(terms.normalised.data(), sp.lo, sp.hi);
    }
    write_mask(terms.flags.data(), t, a.mask + row * width + u0 / 8);
  }
  const int64_t plane = a.s.batch * a.s.K * P;
  for (int64_t i = 0; i < P; ++i) {
    const double size = double(bins.end(i) - bins.start(i));
    a.out[row * P + i] = static_cast<scalar_t>(sums[3 * i] / size);
    a.stats[row * P + i] = static_cast<scalar_t>(sums[3 * i + 1]);
    a.stats[plane + row * P + i] = static_cast<scalar_t>(sums[3 * i + 2]);
  }
}

// Filter k's statistics and epilogue, its outputs rows (B, n_fft) of an item's convolutions.
template <typename scalar_t>
void forward_filter(const FftForward<scalar_t>& a, const Bins& bins,
                    const std::vector<std::vector<BinSpan>>& spans, int64_t k,
                    const scalar_t* rows, RowTerms<scalar_t>& terms, std::vector<double>& sums) {
  double mean = a.mean_in[k], var = a.var_in[k];
  if (a.training) {
    std::tie(mean, var) = row_statistics(rows, a.s.batch, a.s.n_fft, a.s.L - 1, a.s.n_out);
  }
  a.mean_out[k] = mean;
  a.var_out[k] = var;
  // as the reference rounds it: rsqrt(var + eps) of the data dtype
  const scalar_t rstd = scalar_t(1) / std::sqrt(static_cast<scalar_t>(var) + scalar_t(a.eps));
  for (int64_t b = 0; b < a.s.batch; ++b) {
    forward_row(a, bins, spans, rows + b * a.s.n_fft + a.s.L - 1, b, k,
                static_cast<scalar_t>(mean), rstd, terms, sums);
  }
}

template <typename scalar_t>
void forward_kernel(const FftForward<scalar_t>& a) {
  const Bins bins{a.s.n_out, a.s.bins};
  const auto spans = spans_per_tile(bins);
  const int64_t group = group_size(a.s.batch, a.s.K), items = tile_count(a.s.K, group);
  for_each_item(items, [&](int64_t /*worker*/, const auto& next) {
    RowTerms<scalar_t> terms(kTile);
    std::vector<double> sums(3 * a.s.bins);
    for (int64_t item = next(); item >= 0; item = next()) {
      const int64_t k0 = item * group, k1 = std::min(a.s.K, k0 + group);
      const at::Tensor y = filter_outputs(a.spectrum, group_spectra(a.filters, k0, k1, a.s.n_fft),
                                          a.s.n_fft);
      for (int64_t k = k0; k < k1; ++k) {
        const scalar_t* rows = y.const_data_ptr<scalar_t>() + (k - k0) * a.s.batch * a.s.n_fft;
        forward_filter(a, bins, spans, k, rows, terms, sums);
      }
    }
  });
}

template <typename scalar_t>
struct FftBackward {
  FftShape s;
  const at::Tensor& spectrum;   // (B, F) complex
  const at::Tensor& filters;    // (K, L) taps, real
  bool training;
  const scalar_t* w;            // (B, K, P) gradient per bin / bin size
  const uint8_t* mask;          // (B, K, ceil(n_out / 8))
  const double *c, *c3, *c4;    // (K,)
  scalar_t* grad_filters;       // (K, L), or null: the filter gradient is not needed
  bool with_dx;                 // false: the input gradient is not needed
};

// dy (k, B, n_fft) for filters [k0, k1): c dz + c3 - c4 y on the valid positions (c dz in eval
// mode), zero up to n_fft; dz from the mask bits and the bin weights.
template <typename scalar_t>
at::Tensor output_gradient(const FftBackward<scalar_t>& a,
                           const std::vector<std::vector<BinSpan>>& spans, int64_t k0,
                           int64_t k1, const at::Tensor& spectra) {
  const int64_t B = a.s.batch, n_fft = a.s.n_fft, width = (a.s.n_out + 7) / 8;
  at::Tensor y;
  if (a.training) y = filter_outputs(a.spectrum, spectra, n_fft);
  at::Tensor dy = at::zeros({k1 - k0, B, n_fft}, a.filters.options());
  for (int64_t k = k0; k < k1; ++k) {
    const scalar_t c = static_cast<scalar_t>(a.c[k]), c3 = static_cast<scalar_t>(a.c3[k]);
    const scalar_t c4 = static_cast<scalar_t>(a.c4[k]);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t row = b * a.s.K + k, at_row = ((k - k0) * B + b) * n_fft;
      scalar_t* d = dy.data_ptr<scalar_t>() + at_row;
      for (size_t tile = 0; tile < spans.size(); ++tile) {
        const int64_t u0 = int64_t(tile) * kTile, t = std::min(kTile, a.s.n_out - u0);
        relu_mask_gradient_tile(a.w + row * a.s.bins, spans[tile], a.mask + row * width + u0 / 8,
                                t, d + u0);
      }
      if (a.training) {
        const scalar_t* yb = y.const_data_ptr<scalar_t>() + at_row + a.s.L - 1;
#pragma omp simd
        for (int64_t j = 0; j < a.s.n_out; ++j) d[j] = c * d[j] + c3 - c4 * yb[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < a.s.n_out; ++j) d[j] = c * d[j];
      }
    }
  }
  return dy;
}

// Filters [k0, k1): their gradient taps, and their term of the input-gradient spectrum (added to
// dx_spectrum, (B, F)).
template <typename scalar_t>
void backward_group(const FftBackward<scalar_t>& a,
                    const std::vector<std::vector<BinSpan>>& spans, int64_t k0, int64_t k1,
                    at::Tensor& dx_spectrum) {
  const at::Tensor spectra = group_spectra(a.filters, k0, k1, a.s.n_fft);
  const at::Tensor dy_spectrum =
      at::fft_rfft(output_gradient(a, spans, k0, k1, spectra), a.s.n_fft, -1);   // (k, B, F)
  if (a.grad_filters != nullptr) {
    // corr[l] = sum_b sum_n dy[b, n] x[b, n + l]: the circular cross-correlation's first L lags,
    // summed over the batch before the inverse transform
    const at::Tensor corr = at::fft_irfft((dy_spectrum.conj() * a.spectrum.unsqueeze(0)).sum(1),
                                          a.s.n_fft, -1).contiguous();
    for (int64_t k = k0; k < k1; ++k) {
      const scalar_t* taps = corr.const_data_ptr<scalar_t>() + (k - k0) * a.s.n_fft;
      std::copy(taps, taps + a.s.L, a.grad_filters + k * a.s.L);
    }
  }
  if (a.with_dx) dx_spectrum.add_((dy_spectrum * spectra.unsqueeze(1)).sum(0));
}

template <typename scalar_t>
at::Tensor backward_kernel(const FftBackward<scalar_t>& a) {
  const auto spans = spans_per_tile(Bins{a.s.n_out, a.s.bins});
  const int64_t group = group_size(a.s.batch, a.s.K), items = tile_count(a.s.K, group);
  const int64_t workers = worker_count(items);
  std::vector<at::Tensor> partial(workers);
  for_each_item(items, [&](int64_t worker, const auto& next) {
    at::Tensor dx_spectrum = at::zeros_like(a.spectrum);
    for (int64_t item = next(); item >= 0; item = next()) {
      backward_group(a, spans, item * group, std::min(a.s.K, (item + 1) * group), dx_spectrum);
    }
    partial[worker] = dx_spectrum;
  });
  if (!a.with_dx) return at::Tensor();
  at::Tensor total = partial[0];
  for (int64_t p = 1; p < workers; ++p) {
    if (partial[p].defined()) total = total + partial[p];
  }
  // dx[i] = sum_k sum_n dy_k[n] g_k[i - n]: the full convolutions, n_out + L - 1 = n <= n_fft
  return at::fft_irfft(total, a.s.n_fft, -1).narrow(1, 0, a.s.n).contiguous();
}

FftShape fft_shape(const at::Tensor& spectrum, const at::Tensor& filters, int64_t n, int64_t n_fft,
                   int64_t bins) {
  TORCH_CHECK(spectrum.dim() == 2 && spectrum.device().is_cpu() && spectrum.is_contiguous() &&
                  (spectrum.scalar_type() == at::kComplexFloat ||
                   spectrum.scalar_type() == at::kComplexDouble),
              "spectrum must be a contiguous complex64/complex128 (B, n_fft / 2 + 1) CPU tensor");
  TORCH_CHECK(filters.dim() == 2 && filters.is_contiguous() &&
                  filters.scalar_type() == c10::toRealValueType(spectrum.scalar_type()),
              "filters must be contiguous (K, L) taps of the spectrum's real dtype");
  TORCH_CHECK(spectrum.size(1) == n_fft / 2 + 1 && n_fft >= n,
              "need n_fft >= n and the spectrum of an n_fft transform");
  const int64_t L = filters.size(1), n_out = n - L + 1;
  TORCH_CHECK(n_out >= 1 && bins >= 1 && bins <= n_out, "need 1 <= pool_bins <= N_out");
  return {spectrum.size(0), filters.size(0), L, n, n_fft, n_out, bins};
}

at::Tensor as_double(const at::Tensor& v, int64_t K) {
  TORCH_CHECK(v.numel() == K, "per-filter tensors must have K=", K, " elements");
  return v.reshape({K}).to(at::kDouble).contiguous();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> fft_filterbank_forward(
    const at::Tensor& spectrum, const at::Tensor& filters, int64_t n, int64_t n_fft,
    const at::Tensor& mean, const at::Tensor& var, const at::Tensor& weight,
    const at::Tensor& bias, double eps, int64_t pool_bins, bool training) {
  const FftShape s = fft_shape(spectrum, filters, n, n_fft, pool_bins);
  const auto real = spectrum.options().dtype(c10::toRealValueType(spectrum.scalar_type()));
  const at::Tensor mu = as_double(mean, s.K), v = as_double(var, s.K);
  const at::Tensor gamma = as_double(weight, s.K), beta = as_double(bias, s.K);
  at::Tensor out = at::empty({s.batch, s.K, pool_bins}, real);
  at::Tensor mask = at::empty({s.batch, s.K, (s.n_out + 7) / 8}, real.dtype(at::kByte));
  at::Tensor stats = at::empty({2, s.batch, s.K, pool_bins}, real);
  at::Tensor mean_out = at::empty({s.K}, real.dtype(at::kDouble));
  at::Tensor var_out = at::empty({s.K}, real.dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(real.dtype().toScalarType(), "fft_filterbank_forward", [&] {
    forward_kernel<scalar_t>({s, spectrum, filters, training, eps, mu.data_ptr<double>(),
                              v.data_ptr<double>(), gamma.data_ptr<double>(),
                              beta.data_ptr<double>(), out.data_ptr<scalar_t>(),
                              mask.data_ptr<uint8_t>(), stats.data_ptr<scalar_t>(),
                              mean_out.data_ptr<double>(), var_out.data_ptr<double>()});
  });
  return {out, mask, stats, mean_out, var_out};
}

std::tuple<at::Tensor, at::Tensor> fft_filterbank_backward(
    const at::Tensor& spectrum, const at::Tensor& filters, int64_t n, int64_t n_fft,
    const at::Tensor& bin_grad, const at::Tensor& mask_bits, const at::Tensor& c,
    const at::Tensor& c3, const at::Tensor& c4, bool training, bool with_filters, bool with_dx) {
  const FftShape s = fft_shape(spectrum, filters, n, n_fft, bin_grad.size(-1));
  const auto real = spectrum.options().dtype(c10::toRealValueType(spectrum.scalar_type()));
  const at::Tensor w = bin_grad.to(real.dtype()).contiguous();
  const at::Tensor mask = mask_bits.contiguous();
  TORCH_CHECK(w.sizes() == at::IntArrayRef({s.batch, s.K, s.bins}), "bin_grad must be (B, K, P)");
  TORCH_CHECK(mask.sizes() == at::IntArrayRef({s.batch, s.K, (s.n_out + 7) / 8}) &&
                  mask.scalar_type() == at::kByte,
              "mask_bits must be uint8 (B, K, ceil(N_out / 8))");
  const at::Tensor cs = as_double(c, s.K), c3s = as_double(c3, s.K), c4s = as_double(c4, s.K);
  at::Tensor grad_filters = at::empty({s.K, s.L}, real);
  at::Tensor grad_x;
  AT_DISPATCH_FLOATING_TYPES(real.dtype().toScalarType(), "fft_filterbank_backward", [&] {
    grad_x = backward_kernel<scalar_t>({s, spectrum, filters, training, w.data_ptr<scalar_t>(),
                                        mask.data_ptr<uint8_t>(), cs.data_ptr<double>(),
                                        c3s.data_ptr<double>(), c4s.data_ptr<double>(),
                                        with_filters ? grad_filters.data_ptr<scalar_t>() : nullptr,
                                        with_dx});
  });
  return {grad_filters, grad_x};
}

}  // namespace sincfb_cpu
