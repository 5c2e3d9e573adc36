"""DESIGN.md §3 in plain PyTorch: the one home of the fast-path algebra, one function per term.

Every backend computes its cheap terms with these functions, and the tests check each kernel
stage against them; only the heavy products (and their tiling) belong to a backend. The fast
backends (C++, Triton, FFT) never materialise (B, K, N_out) tensors:

- forward statistics from ``s`` and ``A`` instead of a pass over ``y``    (:func:`window_sums`,
  :func:`window_gram`, :func:`batch_statistics`);
- the symmetric folding of the filters, with one convention            (:func:`fold_taps`,
  :func:`unfold_gradient`, :func:`folded_conv1d`);
- the BatchNorm backward as three coefficients per filter                (:func:`bn_backward_coefficients`);
- the filter gradient from one heavy product                             (:func:`filter_gradient`);
- the input gradient from one transposed product, a tap-sum term and a single (2L-1)-tap filter
  ``R`` plus exact edge corrections                                      (:func:`input_gradient`,
  :func:`tap_sums`);
- the same terms by FFT, at O(N log N) instead of O(N L^2)              (:func:`autocorrelation_sums`,
  :func:`toeplitz_product`, :func:`filter_autocorrelations`, :func:`convolve_same_length`).

:func:`backward_from_saved` strings them together; it equals the reference backward to rounding.
Sums over the batch (``s``, ``A``, statistics) are accumulated in float64 as DESIGN.md §3 asks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .pooling import bin_bounds, spread_bins, unpack_mask

__all__ = ["window_sums", "window_gram", "batch_statistics", "folded_conv1d", "fold_taps",
           "unfold_gradient", "bin_weights", "relu_mask_gradient", "bn_backward_coefficients",
           "filter_gradient", "weighted_filter_autocorrelation", "padded_edge_outputs", "tap_sums",
           "input_gradient", "fast_fft_length", "autocorrelation_sums", "filter_autocorrelations",
           "toeplitz_product", "convolve_same_length", "window_moments", "autocorrelation_term",
           "statistics_filter_gradient", "statistics_input_gradient", "backward_from_saved"]


def window_sums(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``s[l] = sum_{b,n} x[b, n + l]`` over the valid windows, float64 (L,). x: (B, 1, N)."""
    n_out = x.shape[-1] - kernel_size + 1
    prefix = F.pad(x[:, 0].double().cumsum(-1), (1, 0)).sum(0)        # (N + 1,)
    taps = torch.arange(kernel_size, device=x.device)
    return prefix[taps + n_out] - prefix[taps]


def window_gram(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``A[l, m] = sum_{b,n} x[b, n+l] x[b, n+m]``, float64 (L, L), from lagged prefix sums in
    O(N L) per clip: ``A[l, l+d] = P_d[l + N_out] - P_d[l]`` with ``P_d`` the prefix sum of
    ``x[i] x[i+d]`` (DESIGN.md §3.2)."""
    signal = x[:, 0].double()
    n, n_out = signal.shape[-1], signal.shape[-1] - kernel_size + 1
    gram = signal.new_zeros(kernel_size, kernel_size)
    for lag in range(kernel_size):
        lagged = (signal[:, : n - lag] * signal[:, lag:]).sum(0)       # batch folded in early
        prefix = F.pad(lagged.cumsum(-1), (1, 0))
        starts = torch.arange(kernel_size - lag, device=x.device)
        diagonal = prefix[starts + n_out] - prefix[starts]
        gram.diagonal(lag).copy_(diagonal)
        gram.diagonal(-lag).copy_(diagonal)
    return gram


def batch_statistics(filters: torch.Tensor, sums: torch.Tensor, gram: torch.Tensor, count: int):
    """Batch mean and biased variance of ``y_k = g_k * x`` from ``s`` and ``A`` (both (K,) float64):
    ``mu = g.s / M`` and ``var = g^T A g / M - mu^2`` with ``M = B N_out``."""
    g = filters.double()
    mean = g @ sums / count
    second_moment = ((g @ gram) * g).sum(-1) / count
    return mean, (second_moment - mean.square()).clamp_min(0.0)


def folded_conv1d(x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Valid correlation with symmetric filters using half the taps:
    ``y[n] = sum_{l<c} g[l] (x[n+l] + x[n+L-1-l]) + g[c] x[n+c]`` (DESIGN.md §3.1)."""
    L = filters.shape[-1]
    c = L // 2
    windows = x[:, 0].unfold(-1, L, 1)                                  # (B, N_out, L) view
    folded = torch.cat([windows[..., :c] + windows[..., c + 1:].flip(-1), windows[..., c:c + 1]], -1)
    return torch.einsum("bnl,kl->bkn", folded, filters[:, : c + 1])


def fold_taps(values: torch.Tensor) -> torch.Tensor:
    """(..., L) -> (..., C), C = (L + 1) / 2: ``v[l] + v[L-1-l]`` for l < c, and ``v[c]`` once.

    The one folding convention of the package: the folded product multiplies folded filters
    with windows folded the same way (``x[n+l] + x[n+L-1-l]``, and ``x[n+c]`` once), and any
    vector indexed by taps (window sums, ``A g``, filter gradients) folds like this. Because the
    filters are symmetric, only these pair sums of a filter gradient reach the cut-offs."""
    c = values.shape[-1] // 2
    return torch.cat([values[..., :c] + values[..., c + 1:].flip(-1), values[..., c:c + 1]], -1)


def unfold_gradient(folded: torch.Tensor) -> torch.Tensor:
    """A folded filter gradient (K, C) -> a symmetric (K, L) one with the same pair sums.

    Each pair sum is split evenly between its two taps, so the result pairs with any symmetric
    tensor (the cut-off derivatives) exactly as the true gradient does; this is what
    :func:`sincfb.filters.cutoff_parameter_grads` needs."""
    half = folded[:, :-1] / 2
    return torch.cat([half, folded[:, -1:], half.flip(-1)], -1)


def bin_weights(grad_out: torch.Tensor, n_out: int) -> torch.Tensor:
    """``w = dLoss/dp / |bin|``: the gradient each position of a bin receives from the pool."""
    starts, ends = bin_bounds(n_out, grad_out.shape[-1], grad_out.device)
    return grad_out / (ends - starts).to(grad_out.dtype)


def relu_mask_gradient(weights: torch.Tensor, mask_bits: torch.Tensor, n_out: int) -> torch.Tensor:
    """``dz[b,k,n] = mask[b,k,n] * sum of w over the bins holding n``: full resolution, which the
    kernels form tile by tile and never store."""
    mask = unpack_mask(mask_bits, n_out)
    return torch.where(mask, spread_bins(weights, n_out), 0)


def bn_backward_coefficients(weights, bin_stats, gamma, mean, var, eps, count, training):
    """Per-filter ``(c, c3, c4, dgamma, dbeta)`` with ``dy = c dz + c3 - c4 y`` (DESIGN.md §3.3).

    ``bin_stats[0]`` is the count of positive z per bin and ``bin_stats[1]`` the sum of zhat over
    those positions; ``dbeta = sum w cnt`` and ``dgamma = sum w S``. In eval mode the statistics are
    constants, so ``c3 = c4 = 0``. All float64, shape (K,).
    """
    w = weights.double()
    dbeta = (w * bin_stats[0].double()).sum((0, 2))
    dgamma = (w * bin_stats[1].double()).sum((0, 2))
    sigma = (var.double() + eps).sqrt()
    c = gamma.double() / sigma
    if not training:
        zero = torch.zeros_like(c)
        return c, zero, zero, dgamma, dbeta
    c4 = c * dgamma / (count * sigma)
    c3 = -c * dbeta / count + c4 * mean.double()
    return c, c3, c4, dgamma, dbeta


def filter_gradient(correlation, sums, gram, filters, c, c3, c4):
    """``dg_k = c_k corr_k + c3_k s - c4_k (A g_k)`` where ``corr_k[l] = sum_{b,n} dz x[b, n+l]`` is
    the one heavy product of the filter gradient. float64 (K, L)."""
    g = filters.double()
    return (c[:, None] * correlation.double() + c3[:, None] * sums[None, :]
            - c4[:, None] * (g @ gram))


def weighted_filter_autocorrelation(filters: torch.Tensor,
                                    coefficients: torch.Tensor) -> torch.Tensor:
    """The single two-sided filter ``R[d] = sum_k coef_k sum_j g_k[j] g_k[j + d]`` for
    d in [-(L-1), L-1]: (2L-1,) float64 (by direct convolution; the backends build it from
    :func:`filter_autocorrelations`)."""
    g = filters.double()
    L = g.shape[-1]
    lags = F.conv1d(F.pad(g, (L - 1, L - 1))[None], g[:, None], groups=g.shape[0])[0]
    return (coefficients.double()[:, None] * lags).sum(0)


def padded_edge_outputs(x: torch.Tensor, filters: torch.Tensor, n_out: int):
    """``(head, tail)``: ``y`` continued past the valid range with x zero-padded, at
    n = -(L-1)..-1 (head) and n = N_out..N-1 (tail), (B, K, L-1) each, by ``conv1d``. Only the
    first and last L-1 samples of x enter. x: (B, 1, N), filters: (K, L)."""
    L = filters.shape[-1]
    head = F.conv1d(F.pad(x[..., : L - 1], (L - 1, 0)), filters[:, None])
    tail = F.conv1d(F.pad(x[..., n_out:], (0, L - 1)), filters[:, None])
    return head, tail


def tap_sums(filters: torch.Tensor, c3: torch.Tensor, n_out: int, n: int) -> torch.Tensor:
    """``sum_k c3_k sum_{n valid} g_k[i - n]`` for every input sample i, (N,) float64: the
    ``c3`` term of the input gradient. Sample i collects the taps l with 0 <= i - l < N_out, a
    window of a prefix sum of the c3-weighted taps (:func:`input_gradient` writes the same as a
    transposed box filter)."""
    L = filters.shape[-1]
    prefix = F.pad((c3[:, None] * filters.double()).sum(0).cumsum(0), (1, 0))
    i = torch.arange(n, device=filters.device)
    return prefix[torch.clamp(i, max=L - 1) + 1] - prefix[torch.clamp(i - n_out + 1, min=0)]


def input_gradient(x, dz, filters, c, c3, c4):
    """``dx = sum_k c_k (dz_k conv^T g_k) + sum_k c3_k (sum of g_k's valid taps) - (x corr R)``
    with the edge terms of the last part corrected exactly (DESIGN.md §3.3). float64 (B, 1, N).

    ``dz`` is full resolution here; a kernel streams it tile by tile into the transposed product.
    """
    g, signal = filters.double(), x.double()
    L, n = g.shape[-1], x.shape[-1]
    n_out = n - L + 1
    heavy = F.conv_transpose1d(dz.double() * c[None, :, None], g[:, None])
    # sum of the c3-weighted taps that reach each input position: a transposed box filter
    tap_sums = F.conv_transpose1d(signal.new_ones(1, 1, n_out), (c3[:, None] * g).sum(0).view(1, 1, L))
    # sum_k c4_k sum_n y_k[n] g_k[i - n] over ALL n (x zero-padded) is x correlated with R ...
    reach = F.conv1d(F.pad(signal, (L - 1, L - 1)), weighted_filter_autocorrelation(g, c4).view(1, 1, -1))
    # ... minus the out-of-range n, which only touch the first and last L-1 input samples
    head, tail = padded_edge_outputs(signal, g, n_out)
    weighted = (c4[:, None] * g)[:, None]
    reach[..., : L - 1] -= F.conv_transpose1d(head, weighted)[..., L - 1:]
    reach[..., n_out:] -= F.conv_transpose1d(tail, weighted)[..., : L - 1]
    return heavy + tap_sums - reach


# ------------------------------------------------------------------- the same terms by FFT
# The fast backends need s, A g, g^T A g and the R filter without O(L^2 N) work: A is Toeplitz
# up to edge terms, so these come from autocorrelations and Toeplitz products by FFT.

def fast_fft_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: FFT libraries are fastest on such lengths."""
    best = 1 << max(n - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < n:
                candidate *= 2
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def autocorrelation_sums(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``r[d] = sum_b sum_i x[b, i] x[b, i + d]`` for d = 0..L-1 over the whole clip, float64 (L,),
    by one FFT (the transform is long enough that no lag wraps around). x: (B, N)."""
    n = fast_fft_length(x.shape[-1] + kernel_size - 1)
    spectrum = torch.fft.rfft(x.double(), n=n)
    power = (spectrum.real.square() + spectrum.imag.square()).sum(0)
    return torch.fft.irfft(power, n=n)[:kernel_size]


def filter_autocorrelations(filters: torch.Tensor) -> torch.Tensor:
    """Each filter's one-sided autocorrelation ``ac[k, d] = sum_j g_k[j] g_k[j + d]`` for
    d = 0..L-1: float64 (K, L), by FFT."""
    L = filters.shape[-1]
    n = fast_fft_length(2 * L - 1)
    spectrum = torch.fft.rfft(filters.double(), n=n)
    return torch.fft.irfft(spectrum.real.square() + spectrum.imag.square(), n=n)[:, :L]


def toeplitz_product(filters: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
    """``out[k, l] = sum_m g_k[m] r[|l - m|]``: the (L x L) symmetric Toeplitz matrix of ``r``
    times each filter, as one FFT convolution, float64 (K, L)."""
    L = filters.shape[-1]
    two_sided = torch.cat([lags.flip(0)[:-1], lags]).double()          # r[|d|], d = -(L-1)..L-1
    n = fast_fft_length(3 * L - 2)
    product = torch.fft.rfft(filters.double(), n=n) * torch.fft.rfft(two_sided, n=n)
    return torch.fft.irfft(product, n=n)[:, L - 1: 2 * L - 1]


def convolve_same_length(x: torch.Tensor, centred: torch.Tensor) -> torch.Tensor:
    """``out[b, i] = sum_e h[e] x[b, i + e - (L-1)]`` (x zero outside its range) for an odd-length
    ``h`` of 2L-1 taps centred on e = L-1: a correlation with the same length as x, by FFT."""
    taps = centred.shape[-1]
    half = taps // 2
    n = fast_fft_length(x.shape[-1] + taps - 1)
    product = torch.fft.rfft(x, n=n) * torch.fft.rfft(centred.flip(0).to(x.dtype), n=n)
    return torch.fft.irfft(product, n=n)[:, half: half + x.shape[-1]]



def window_moments(signal: torch.Tensor, kernel_size: int):
    """``s[l] = sum_{b,n} x[b, n+l]`` and ``A[l, m] = sum_{b,n} x[b, n+l] x[b, n+m]`` in float64.

    ``signal``: (B, N). ``A`` is Toeplitz up to edge terms (DESIGN.md §3.2): ``A[l, l+d] = A0[d] +
    sum_{i<l} (q_d[N_out + i] - q_d[i])`` with ``q_d[i] = sum_b x[b,i] x[b,i+d]``; ``A0`` comes from
    one FFT cross-correlation and the edge terms only touch the first and last L-1 samples.
    """
    xd = signal.double()
    L = kernel_size
    n = xd.shape[-1]
    n_out = n - L + 1
    prefix = F.pad(xd.sum(0).cumsum(0), (1, 0))
    taps = torch.arange(L, device=xd.device)
    sums = prefix[taps + n_out] - prefix[taps]
    size = fast_fft_length(n)            # >= N: no circular wrap-around for lags 0..L-1
    # conj_physical: see autocorrelation_term
    spectrum = (torch.conj_physical(torch.fft.rfft(xd[:, :n_out], size))
                * torch.fft.rfft(xd, size)).sum(0)
    lag0 = torch.fft.irfft(spectrum, size)[:L]
    if L == 1:
        return sums, lag0.view(1, 1)
    head, tail = xd[:, :L - 1], xd[:, n_out:]
    edge = tail.T @ tail - head.T @ head                        # (L-1, L-1)
    # edge[i, i + d] laid out as rows i, columns d (zero where i + d > L - 2)
    skew = F.pad(edge, (0, L)).as_strided((L - 1, L), (2 * L, 1))
    table = lag0[None, :] + F.pad(skew.cumsum(0), (0, 0, 1, 0))  # table[l, d] = A[l, l + d]
    idx = torch.arange(L, device=xd.device)
    return sums, table[torch.minimum(idx[:, None], idx[None, :]),
                       (idx[:, None] - idx[None, :]).abs()]


def autocorrelation_term(signal: torch.Tensor, filters: torch.Tensor, c4: torch.Tensor,
                         n_out: int) -> torch.Tensor:
    """``sum_k c4_k T_k^T T_k x`` exactly, where T_k is the valid correlation with g_k: (B, N).

    Interior: x correlated with ``R[d] = sum_k c4_k sum_j g_k[j] g_k[j+d]`` (FFT). The first and
    last L-1 samples lose the terms of outputs outside [0, N_out): (L-1)x(L-1) corrections built
    from diagonal prefix sums of ``Cm = G^T diag(c4) G``."""
    xd = signal.double()
    B, n = xd.shape
    L = filters.shape[-1]
    cm = filters.T @ (c4[:, None] * filters)                        # (L, L)
    diagonals = F.pad(cm, (L - 1, L - 1)).as_strided((L, 2 * L - 1), (3 * L - 1, 1))
    running = diagonals.cumsum(0)       # running[v, e] = sum_{v' <= v} cm[v', v' + e - (L-1)]
    R = running[-1]                                                  # lags -(L-1)..(L-1)
    size = fast_fft_length(n + 2 * L - 2)
    padded = F.pad(xd, (L - 1, L - 1))
    # conj_physical, not .conj(): a lazily conjugated view lost its conjugation when this op ran
    # inside a torch.compile graph (seen with torch 2.11 on the CPU)
    full = torch.fft.irfft(torch.fft.rfft(padded, size)
                           * torch.conj_physical(torch.fft.rfft(R, size)), size)[:, :n]
    if L == 1:
        return full
    a = torch.arange(L - 1, device=xd.device)
    lag = a[None, :] - a[:, None] + (L - 1)
    head = R[lag] - running[a[:, None], lag]        # outputs n < 0:      sum over v' > i
    tail = running[a[:, None], lag]                 # outputs n >= N_out: sum over v' <= a
    full[:, :L - 1] -= xd[:, :L - 1] @ head.T
    full[:, n_out:] -= xd[:, n_out:] @ tail.T
    return full


def statistics_filter_gradient(x, filters, c3, c4) -> torch.Tensor:
    """The filter gradient's terms through the batch statistics, ``c3_k s - c4_k (A g_k)``:
    (K, L) float64, with ``s`` and ``A`` from :func:`window_moments` (the heavy ``c_k corr_k`` is
    the backend's). x: (B, N)."""
    sums, gram = window_moments(x, filters.shape[-1])
    g = filters.double()
    return c3[:, None] * sums[None] - c4[:, None] * (g @ gram)


def statistics_input_gradient(x, filters, c3, c4) -> torch.Tensor:
    """The input gradient's terms through the batch statistics, (B, N) float64: the ``c3`` tap
    sums (:func:`tap_sums`) minus ``sum_k c4_k T_k^T T_k x`` (:func:`autocorrelation_term`); the
    heavy ``c_k (dz_k conv^T g_k)`` is the backend's. x: (B, N)."""
    n = x.shape[-1]
    n_out = n - filters.shape[-1] + 1
    g = filters.double()
    return tap_sums(g, c3, n_out, n)[None] - autocorrelation_term(x, g, c4, n_out)


def backward_from_saved(grad_out, x, filters, weight, mean, var, mask_bits, bin_stats, eps,
                        training):
    """All gradients of the fused op from its saved data, by the §3 algebra; returns
    ``(dx, dg, dgamma, dbeta)`` in float64 (the cut-off gradients follow from ``dg`` with
    :func:`sincfb.filters.cutoff_parameter_grads`)."""
    L = filters.shape[-1]
    n_out = x.shape[-1] - L + 1
    count = x.shape[0] * n_out
    w = bin_weights(grad_out.double(), n_out)
    c, c3, c4, dgamma, dbeta = bn_backward_coefficients(w, bin_stats, weight, mean, var, eps,
                                                        count, training)
    dz = relu_mask_gradient(w, mask_bits, n_out)
    correlation = torch.nn.grad.conv1d_weight(x.double(), (filters.shape[0], 1, L), dz)[:, 0]
    sums, gram = window_sums(x, L), window_gram(x, L)
    dg = filter_gradient(correlation, sums, gram, filters, c, c3, c4)
    dx = input_gradient(x, dz, filters, c, c3, c4)
    return dx, dg, dgamma, dbeta
