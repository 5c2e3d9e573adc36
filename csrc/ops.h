// The operations of the sincfb_cpu library (registered in register.cpp). Shapes: B clips of N
// samples, K filters of odd length L, C = (L + 1) / 2 folded taps, N_out = N - L + 1, P bins.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace sincfb_cpu {

// y[b, k, n] = sum_l g_k[l] x[b, n + l] from the folded filters (K, C): (B, K, N - L + 1).
at::Tensor fold_correlate(const at::Tensor& x, const at::Tensor& folded_filters);

// out[b, i] = sum_k sum_n v[b, k, n] g_k[i - n] (conv_transpose1d summed over filters):
// (B, K, T) -> (B, T + L - 1).
at::Tensor fold_correlate_transposed(const at::Tensor& values, const at::Tensor& folded_filters);

// Folded corr_k[l] = sum_{b,n} v[b, k, n] (x[b, n + l] + x[b, n + L - 1 - l]) for l < c and
// sum v x[b, n + c] for l = c: (B, K, T) and (B, T + L - 1) -> (K, C) float64.
at::Tensor fold_window_correlation(const at::Tensor& values, const at::Tensor& x);

// The fused forward: product, BatchNorm with the given mean and 1/sqrt(var + eps), ReLU, pooled
// output, ReLU mask bits and per-bin (count, sum of zhat), without storing (B, K, N_out).
// Writes every element of out (B, K, P), mask_bits (B, K, ceil(N_out / 8)), bin_stats (2, B, K, P).
void filterbank_forward(const at::Tensor& x, const at::Tensor& folded_filters,
                        const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& weight,
                        const at::Tensor& bias, const at::Tensor& out, const at::Tensor& mask_bits,
                        const at::Tensor& bin_stats);

// The fused backward's two heavy products from dz = mask * (bin weights spread over positions):
// corr (K, C) float64 = fold_window_correlation(dz, x) and grad_x (B, N) =
// fold_correlate_transposed(dz, scaled_filters), streaming dz tile by tile. with_corr / with_dx
// false skip that product (and leave its buffer unwritten).
void filterbank_backward(const at::Tensor& bin_grad, const at::Tensor& x,
                         const at::Tensor& scaled_filters, const at::Tensor& mask_bits,
                         const at::Tensor& corr, const at::Tensor& grad_x, bool with_corr,
                         bool with_dx);

// The 'fft' backend on the CPU (fft_filters.cpp), a few filters per work item. spectrum is the
// rfft (B, n_fft / 2 + 1) of the clips (n_fft >= N), complex64 for float32 data and complex128
// for float64; filters the (K, L) taps in the matching real dtype.
// Forward: (out, mask_bits, bin_stats, mean, var), the statistics float64 (K,): the batch ones in
// training, the given running ones otherwise. keep_saved false: mask_bits and bin_stats (what
// only the backward reads) come back empty, (B, K, 0) and (2, B, K, 0).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> fft_filterbank_forward(
    const at::Tensor& spectrum, const at::Tensor& filters, int64_t n, int64_t n_fft,
    const at::Tensor& mean, const at::Tensor& var, const at::Tensor& weight,
    const at::Tensor& bias, double eps, int64_t pool_bins, bool training, bool keep_saved);

// Backward with dy = c dz + c3 - c4 y per filter (c dz when not training): the filter gradient
// (K, L) and the input gradient (B, N), both heavy products by FFT, from the clips signal (B, N)
// and their spectrum; y is not recomputed (its terms are taken in the frequency domain, see
// fft_filters.cpp). with_filters / with_dx false skip that product (its result is then
// undefined / an undefined tensor).
std::tuple<at::Tensor, at::Tensor> fft_filterbank_backward(
    const at::Tensor& signal, const at::Tensor& spectrum, const at::Tensor& filters,
    int64_t n_fft, const at::Tensor& bin_grad, const at::Tensor& mask_bits, const at::Tensor& c,
    const at::Tensor& c3, const at::Tensor& c4, bool training, bool with_filters, bool with_dx);

}  // namespace sincfb_cpu
