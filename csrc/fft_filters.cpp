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
  uint8_t* mask;                // (B, K, ceil(n_out / 8)), or null: not kept
  scalar_t* stats;              // (2, B, K, P), or null: not kept
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
    for (const BinSpan& sp : spans[tile]) terms.add_sums(sp.lo, sp.hi, &sums[3 * sp.bin]);
    if (a.mask != nullptr) terms.write_mask(t, a.mask + row * width + u0 / 8);
  }
  const int64_t plane = a.s.batch * a.s.K * P;
  for (int64_t i = 0; i < P; ++i) {
    const double size = double(bins.end(i) - bins.start(i));
    a.out[row * P + i] = static_cast<scalar_t>(sums[3 * i] / size);
    if (a.stats == nullptr) continue;
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

// Complex numbers as (re, im) pairs of scalar_t: plain loops over them vectorise, where
// std::complex products (with their NaN checks) would not.
template <typename scalar_t>
const scalar_t* pairs(const at::Tensor& t) {
  return reinterpret_cast<const scalar_t*>(t.const_data_ptr());
}
template <typename scalar_t>
scalar_t* pairs_mut(at::Tensor& t) {
  return reinterpret_cast<scalar_t*>(t.data_ptr());
}

// out[f] += a[f] * b[f] (conj(a[f]) * b[f] when conj_a) over F complex pairs, scaled by s.
template <bool conj_a, typename scalar_t>
inline void add_products(const scalar_t* a, const scalar_t* b, int64_t F, scalar_t s,
                         scalar_t* __restrict out) {
  const scalar_t sign = conj_a ? scalar_t(-1) : scalar_t(1);
#pragma omp simd
  for (int64_t f = 0; f < F; ++f) {
    const scalar_t ar = a[2 * f], ai = sign * a[2 * f + 1], br = b[2 * f], bi = b[2 * f + 1];
    out[2 * f] += s * (ar * br - ai * bi);
    out[2 * f + 1] += s * (ar * bi + ai * br);
  }
}

template <typename scalar_t>
struct FftBackward {
  FftShape s;
  const at::Tensor& spectrum;   // (B, F) complex: X
  const at::Tensor& filters;    // (K, L) taps, real
  bool training;
  const scalar_t* w;            // (B, K, P) gradient per bin / bin size
  const uint8_t* mask;          // (B, K, ceil(n_out / 8))
  const double *c, *c3, *c4;    // (K,)
  const scalar_t* wrap;         // (B, K, n_fft - n_out) circular outputs off the valid range
  const scalar_t* phase;        // (F) pairs: exp(2 pi i f (L - 1) / n_fft), training only
  const scalar_t* power;        // (F): sum_b |X_b|^2, training only
  scalar_t* grad_filters;       // (K, L), or null: the filter gradient is not needed
  bool with_dx;                 // false: the input gradient is not needed
};

// u (k, B, n_fft) for filters [k0, k1), the part of dy = c dz + c3 - c4 y whose transform needs
// no y (DESIGN.md §3.3 carried into the frequency domain): on the valid positions c dz + c3, on
// the others c4 times the circular outputs there. With n_fft points, y on the valid positions is
// the circular convolution s shifted by L - 1 minus those outputs, so
//   rfft(dy) = rfft(u) - c4 * phase * X * G,
// and the two products that use rfft(dy) take the second term in closed form
// (backward_group). Out of training u = c dz (zero elsewhere).
template <typename scalar_t>
at::Tensor gradient_rows(const FftBackward<scalar_t>& a,
                         const std::vector<std::vector<BinSpan>>& spans, int64_t k0,
                         int64_t k1) {
  const int64_t B = a.s.batch, n_fft = a.s.n_fft, width = (a.s.n_out + 7) / 8;
  const int64_t off = n_fft - a.s.n_out;
  at::Tensor u = at::empty({k1 - k0, B, n_fft}, a.filters.options());
  for (int64_t k = k0; k < k1; ++k) {
    const scalar_t c = static_cast<scalar_t>(a.c[k]), c3 = static_cast<scalar_t>(a.c3[k]);
    const scalar_t c4 = static_cast<scalar_t>(a.c4[k]);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t row = b * a.s.K + k;
      scalar_t* __restrict d = u.data_ptr<scalar_t>() + ((k - k0) * B + b) * n_fft;
      for (size_t tile = 0; tile < spans.size(); ++tile) {
        const int64_t u0 = int64_t(tile) * kTile, t = std::min(kTile, a.s.n_out - u0);
        relu_mask_gradient_tile(a.w + row * a.s.bins, spans[tile], a.mask + row * width + u0 / 8,
                                t, d + u0);
      }
      scalar_t* __restrict rest = d + a.s.n_out;
      if (a.training) {
#pragma omp simd
        for (int64_t j = 0; j < a.s.n_out; ++j) d[j] = c * d[j] + c3;
        const scalar_t* wrap = a.wrap + row * off;
#pragma omp simd
        for (int64_t j = 0; j < off; ++j) rest[j] = c4 * wrap[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < a.s.n_out; ++j) d[j] = c * d[j];
        std::fill(rest, rest + off, scalar_t(0));
      }
    }
  }
  return u;
}

// corr_spectrum (F pairs) = sum_b conj(U_b) X_b - c4 conj(phase G) power: the transform of
// sum_b dy_b correlated with x_b (the filter gradient's lags), summed over the batch first.
template <typename scalar_t>
void correlation_spectrum(const FftBackward<scalar_t>& a, const scalar_t* U, const scalar_t* G,
                          scalar_t c4, scalar_t* __restrict out) {
  const int64_t F = a.s.n_fft / 2 + 1;
  const scalar_t* X = pairs<scalar_t>(a.spectrum);
  std::fill(out, out + 2 * F, scalar_t(0));
  for (int64_t b = 0; b < a.s.batch; ++b) {
    add_products<true>(U + 2 * b * F, X + 2 * b * F, F, scalar_t(1), out);
  }
  if (!a.training) return;
  const scalar_t *p = a.phase, *power = a.power;
#pragma omp simd
  for (int64_t f = 0; f < F; ++f) {   // out -= c4 conj(phase G) power, power real
    const scalar_t pg_re = p[2 * f] * G[2 * f] - p[2 * f + 1] * G[2 * f + 1];
    const scalar_t pg_im = p[2 * f] * G[2 * f + 1] + p[2 * f + 1] * G[2 * f];
    out[2 * f] -= c4 * pg_re * power[f];
    out[2 * f + 1] += c4 * pg_im * power[f];
  }
}

// Per-worker sums of the input gradient's spectrum: dx (B, F) += sum_k U_k G_k, and in training
// h (F) += c4_k G_k^2, whose term -phase X h is subtracted once at the end.
template <typename scalar_t>
void add_input_spectrum(const FftBackward<scalar_t>& a, const scalar_t* U, const scalar_t* G,
                        scalar_t c4, scalar_t* __restrict dx, scalar_t* __restrict h) {
  const int64_t F = a.s.n_fft / 2 + 1;
  for (int64_t b = 0; b < a.s.batch; ++b) {
    add_products<false>(U + 2 * b * F, G, F, scalar_t(1), dx + 2 * b * F);
  }
  if (a.training) add_products<false>(G, G, F, c4, h);
}

// Per-worker buffers of the backward: the input-gradient spectrum (B, F), h (F) and the
// correlation spectra of one group of filters (group, F).
struct BackwardSums {
  at::Tensor dx, h, corr;
};

// Filters [k0, k1): their gradient taps, and their terms of the input-gradient spectrum.
template <typename scalar_t>
void backward_group(const FftBackward<scalar_t>& a,
                    const std::vector<std::vector<BinSpan>>& spans, int64_t k0, int64_t k1,
                    BackwardSums& sums) {
  const int64_t B = a.s.batch, F = a.s.n_fft / 2 + 1;
  const at::Tensor spectra = group_spectra(a.filters, k0, k1, a.s.n_fft).contiguous();
  const at::Tensor U = at::fft_rfft(gradient_rows(a, spans, k0, k1), a.s.n_fft, -1);  // (k, B, F)
  for (int64_t k = k0; k < k1; ++k) {
    const scalar_t* u = pairs<scalar_t>(U) + 2 * (k - k0) * B * F;
    const scalar_t* g = pairs<scalar_t>(spectra) + 2 * (k - k0) * F;
    const scalar_t c4 = static_cast<scalar_t>(a.c4[k]);
    if (a.grad_filters != nullptr) {
      correlation_spectrum(a, u, g, c4, pairs_mut<scalar_t>(sums.corr) + 2 * (k - k0) * F);
    }
    if (a.with_dx) {
      add_input_spectrum(a, u, g, c4, pairs_mut<scalar_t>(sums.dx), pairs_mut<scalar_t>(sums.h));
    }
  }
  if (a.grad_filters == nullptr) return;
  // corr[l] = sum_b sum_n dy[b, n] x[b, n + l]: the circular cross-correlation's first L lags,
  // one inverse transform per group (each call sets up its transform)
  const at::Tensor lags =
      at::fft_irfft(sums.corr.narrow(0, 0, k1 - k0), a.s.n_fft, -1).contiguous();
  for (int64_t k = k0; k < k1; ++k) {
    const scalar_t* taps = lags.const_data_ptr<scalar_t>() + (k - k0) * a.s.n_fft;
    std::copy(taps, taps + a.s.L, a.grad_filters + k * a.s.L);
  }
}

template <typename scalar_t>
at::Tensor backward_kernel(const FftBackward<scalar_t>& a) {
  const auto spans = spans_per_tile(Bins{a.s.n_out, a.s.bins});
  const int64_t group = group_size(a.s.batch, a.s.K), items = tile_count(a.s.K, group);
  const int64_t workers = worker_count(items), F = a.s.n_fft / 2 + 1;
  std::vector<BackwardSums> partial(workers);
  for_each_item(items, [&](int64_t worker, const auto& next) {
    BackwardSums sums{at::zeros_like(a.spectrum), at::zeros({F}, a.spectrum.options()),
                      at::empty({group, F}, a.spectrum.options())};
    for (int64_t item = next(); item >= 0; item = next()) {
      backward_group(a, spans, item * group, std::min(a.s.K, (item + 1) * group), sums);
    }
    partial[worker] = sums;
  });
  if (!a.with_dx) return at::Tensor();
  at::Tensor total, h;
  for (const BackwardSums& p : partial) {
    if (!p.dx.defined()) continue;
    total = total.defined() ? total + p.dx : p.dx;
    h = h.defined() ? h + p.h : p.h;
  }
  if (a.training) {   // total -= phase h X, per clip
    at::Tensor shifted = at::zeros_like(h);
    add_products<false>(a.phase, pairs<scalar_t>(h), F, scalar_t(1), pairs_mut<scalar_t>(shifted));
    const scalar_t* x = pairs<scalar_t>(a.spectrum);
    for (int64_t b = 0; b < a.s.batch; ++b) {
      add_products<false>(pairs<scalar_t>(shifted), x + 2 * b * F, F, scalar_t(-1),
                          pairs_mut<scalar_t>(total) + 2 * b * F);
    }
  }
  // dx[i] = sum_k sum_n dy_k[n] g_k[i - n]: the full convolutions, n_out + L - 1 = n <= n_fft
  return at::fft_irfft(total, a.s.n_fft, -1).narrow(1, 0, a.s.n).contiguous();
}

// The circular convolution's outputs off the valid range, (B, K, n_fft - n_out): positions
// n..n_fft-1 and 0..L-2 of x zero-padded to n_fft, i.e. the valid correlation of
// (x[n_out:], zeros, x[:L-1]) with the (symmetric) filters.
at::Tensor wrapped_outputs(const at::Tensor& signal, const at::Tensor& filters, int64_t n_fft) {
  const int64_t L = filters.size(1), n = signal.size(1), n_out = n - L + 1;
  if (n_fft == n_out) return at::empty({signal.size(0), filters.size(0), 0}, signal.options());
  const at::Tensor around = at::cat({signal.narrow(1, n_out, L - 1),
                                     at::zeros({signal.size(0), n_fft - n}, signal.options()),
                                     signal.narrow(1, 0, L - 1)}, 1);
  return fold_correlate(around, filters.narrow(1, 0, L / 2 + 1).contiguous());
}

// phase (F pairs) = exp(2 pi i f (L - 1) / n_fft) and power (F) = sum_b |X_b|^2.
template <typename scalar_t>
std::pair<at::Tensor, at::Tensor> shift_and_power(const at::Tensor& spectrum, int64_t L,
                                                  int64_t n_fft) {
  const int64_t F = n_fft / 2 + 1;
  const at::Tensor angle = at::arange(F, spectrum.options().dtype(at::kDouble)) *
                           (2.0 * M_PI * double(L - 1) / double(n_fft));
  const at::Tensor phase = at::polar(at::ones_like(angle), angle).to(spectrum.scalar_type());
  const at::Tensor power = at::real(spectrum * spectrum.conj()).sum(0).contiguous();
  return {phase.contiguous(), power};
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
    const at::Tensor& bias, double eps, int64_t pool_bins, bool training, bool keep_saved) {
  const FftShape s = fft_shape(spectrum, filters, n, n_fft, pool_bins);
  const auto real = spectrum.options().dtype(c10::toRealValueType(spectrum.scalar_type()));
  const at::Tensor mu = as_double(mean, s.K), v = as_double(var, s.K);
  const at::Tensor gamma = as_double(weight, s.K), beta = as_double(bias, s.K);
  at::Tensor out = at::empty({s.batch, s.K, pool_bins}, real);
  const int64_t width = keep_saved ? (s.n_out + 7) / 8 : 0, kept_bins = keep_saved ? pool_bins : 0;
  at::Tensor mask = at::empty({s.batch, s.K, width}, real.dtype(at::kByte));
  at::Tensor stats = at::empty({2, s.batch, s.K, kept_bins}, real);
  at::Tensor mean_out = at::empty({s.K}, real.dtype(at::kDouble));
  at::Tensor var_out = at::empty({s.K}, real.dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(real.dtype().toScalarType(), "fft_filterbank_forward", [&] {
    forward_kernel<scalar_t>({s, spectrum, filters, training, eps, mu.data_ptr<double>(),
                              v.data_ptr<double>(), gamma.data_ptr<double>(),
                              beta.data_ptr<double>(), out.data_ptr<scalar_t>(),
                              keep_saved ? mask.data_ptr<uint8_t>() : nullptr,
                              keep_saved ? stats.data_ptr<scalar_t>() : nullptr,
                              mean_out.data_ptr<double>(), var_out.data_ptr<double>()});
  });
  return {out, mask, stats, mean_out, var_out};
}

std::tuple<at::Tensor, at::Tensor> fft_filterbank_backward(
    const at::Tensor& signal, const at::Tensor& spectrum, const at::Tensor& filters,
    int64_t n_fft, const at::Tensor& bin_grad, const at::Tensor& mask_bits, const at::Tensor& c,
    const at::Tensor& c3, const at::Tensor& c4, bool training, bool with_filters, bool with_dx) {
  const int64_t n = signal.size(-1);
  const FftShape s = fft_shape(spectrum, filters, n, n_fft, bin_grad.size(-1));
  const auto real = spectrum.options().dtype(c10::toRealValueType(spectrum.scalar_type()));
  TORCH_CHECK(signal.dim() == 2 && signal.size(0) == s.batch && signal.scalar_type() ==
                  real.dtype().toScalarType(),
              "signal must be the (B, N) clips the spectrum was taken of, in its real dtype");
  const at::Tensor w = bin_grad.to(real.dtype()).contiguous();
  const at::Tensor mask = mask_bits.contiguous();
  TORCH_CHECK(w.sizes() == at::IntArrayRef({s.batch, s.K, s.bins}), "bin_grad must be (B, K, P)");
  TORCH_CHECK(mask.sizes() == at::IntArrayRef({s.batch, s.K, (s.n_out + 7) / 8}) &&
                  mask.scalar_type() == at::kByte,
              "mask_bits must be uint8 (B, K, ceil(N_out / 8))");
  const at::Tensor cs = as_double(c, s.K), c3s = as_double(c3, s.K), c4s = as_double(c4, s.K);
  at::Tensor grad_filters = at::empty({s.K, s.L}, real);
  at::Tensor grad_x, wrap, phase, power;
  AT_DISPATCH_FLOATING_TYPES(real.dtype().toScalarType(), "fft_filterbank_backward", [&] {
    if (training) {
      wrap = wrapped_outputs(signal.contiguous(), filters, n_fft);
      std::tie(phase, power) = shift_and_power<scalar_t>(spectrum, s.L, n_fft);
    }
    grad_x = backward_kernel<scalar_t>(
        {s, spectrum, filters, training, w.data_ptr<scalar_t>(), mask.data_ptr<uint8_t>(),
         cs.data_ptr<double>(), c3s.data_ptr<double>(), c4s.data_ptr<double>(),
         training ? wrap.const_data_ptr<scalar_t>() : nullptr,
         training ? pairs<scalar_t>(phase) : nullptr,
         training ? power.const_data_ptr<scalar_t>() : nullptr,
         with_filters ? grad_filters.data_ptr<scalar_t>() : nullptr, with_dx});
  });
  return {grad_filters, grad_x};
}

}  // namespace sincfb_cpu
