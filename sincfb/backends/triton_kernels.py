"""Triton kernels of the fused sinc filterbank (DESIGN.md §3), and their launchers.

Four kernels; everything else the backend needs is O(K L^2) or O(B N log N) work done with torch
ops in float64 (``sincfb/backends/triton.py``):

``_taps_kernel``
    The left half and centre of every filter, ``h[k, j] = g_k[j]`` for ``j <= c``, in float32.
    Phases are reduced in float64 before the float32 sine (DESIGN.md §4), and the difference of
    sines is written as ``2 cos(pi (f_hi + f_lo) t / fs) sin(pi (f_hi - f_lo) t / fs)`` so narrow
    bands do not cancel.

``_fwd_kernel``
    Folded implicit GEMM: M = output positions, N = filters, reduction = the ``C = (L + 1) / 2``
    folded taps. The A operand is the folded Hankel tile ``x[n + j] + x[n + L - 1 - j]`` built in
    registers from two gathers into a zero-padded copy of x (no masks in the hot loop); the B
    operand is the packed taps scaled by 1/sigma (BatchNorm folded into the filters; the centre
    tap halved because the fold counts it twice). K = 160 runs as one 128-filter and one 32-filter
    accumulator sharing each A tile. The epilogue adds the BN shift, applies gamma/beta and the
    ReLU, writes the mask bytes the program owns and pools counts, sums of zhat and sums of the
    activation into the program's own bins with three small 0/1-matrix products: every program
    owns whole bins, so nothing needs atomics.

``_corr_kernel``
    The filter gradient's heavy product ``corr[k, j] = sum_{b,n} dz'[b,k,n] (x[n+j] + x[n+L-1-j])``
    with ``dz' = c * dz``: M = filters, N = taps, reduction over positions. dz' is rebuilt per tile
    from the mask bits and the per-bin weights (a 0/1 bins-to-positions product), never stored.
    Per-(chunk, clip) partial sums are reduced in float64 by the caller.

``_dx_kernel``
    The input gradient's transposed product, folded: ``Q[j, n] = sum_k h_k[j] dz'[k, n]`` on the
    tensor cores (M = taps, N = positions, reduction = filters; dz' is built once per position
    tile and reused for every tap block), then each ``Q[j, n]`` is added to ``dx[n + j]`` and to
    ``dx[n + L - 1 - j]``: the tile goes through a per-program scratch tile and is read back along
    its two diagonal directions. Each program accumulates into its own row of partial sums (its
    positions plus the filter span); the caller overlap-adds the rows.

Block sizes are ``tl.constexpr`` with static asserts; flat offsets that can exceed 2^31 go through
the int64 helpers ``_clip_filter_offset`` and ``_row64``.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

# ----------------------------------------------------------------------------- layout constants

X_LEFT = 128          # zero samples before x in the padded copy (>= the largest tap block)
X_RIGHT = 512         # zero samples after x (>= largest position tile + largest tap block + 8)
TAP_ALIGN = 128       # folded taps are padded to a multiple of this (every BJ divides it)
DX_OFF = 128          # dx partial rows start this many samples before their chunk
MAX_TILE_N = 128      # largest position tile of the backward kernels (sizes the bins per tile)
DX_MAX_BM, DX_MAX_BJ = 128, 64   # sizes the dx scratch tiles and partial rows
DX_SKEW_COLUMNS = 8   # scratch columns the dx kernel reads back per diagonal-sum step (GPU)

PREC_CODE = {"ieee": 0, "tf32": 1, "bf16": 2}


# ----------------------------------------------------------------------------- jit helpers

@triton.jit
def _round_to_bf16(a):
    """float32 -> nearest bf16 value (ties to even), kept in float32: the interpreter's own
    float32 -> bf16 conversion truncates, unlike the GPU's."""
    bits = a.to(tl.float32).to(tl.int32, bitcast=True)
    bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & -65536
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _round_to_tf32(a):
    """float32 -> nearest tf32 value (10 mantissa bits, ties away from zero as cvt.rna.tf32)."""
    bits = a.to(tl.float32).to(tl.int32, bitcast=True)
    bits = (bits + 0x1000) & -8192
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _dot(a, b, acc, PREC: tl.constexpr, INTERP: tl.constexpr, ROUND_A: tl.constexpr = True,
         ROUND_B: tl.constexpr = True):
    """acc + a @ b in the requested precision: 0 = fp32 FMA ('ieee'), 1 = tf32, 2 = bf16 operands.

    The interpreter multiplies in float32 whatever the precision (and has no bf16 matmul); there
    the tf32 and bf16 modes round the operands to tf32 / bf16 first (to nearest, as the GPU does
    for bf16; the interpreter's own float32 -> bf16 conversion truncates) and multiply in float32
    with float32 accumulation, which is what the tensor cores compute. ROUND_A / ROUND_B False
    skip tf32's rounding of an operand that is already exact in tf32 (a 0/1 indicator), which
    leaves the product unchanged and saves the forward registers (see FWD_CONFIGS)."""
    if PREC == 2:
        if INTERP:
            return tl.dot(_round_to_bf16(a), _round_to_bf16(b), acc, input_precision="ieee")
        else:
            return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc)
    elif PREC == 1:
        # wgmma reads float32 operands as tf32 by dropping the low 13 bits (truncation, a bias
        # of -2^-11 per operand); round to nearest first, as cvt.rna.tf32 would
        if ROUND_A:
            a = _round_to_tf32(a)
        if ROUND_B:
            b = _round_to_tf32(b)
        if INTERP:
            return tl.dot(a, b, acc, input_precision="ieee")
        else:
            return tl.dot(a, b, acc, input_precision="tf32")
    else:
        return tl.dot(a, b, acc, input_precision="ieee")


@triton.jit
def _operand(a, PREC: tl.constexpr, INTERP: tl.constexpr):
    """Cast a tile once to the operand type its dot will use (bf16 mode on the GPU)."""
    if PREC == 2:
        if INTERP:
            return a.to(tl.float32)
        else:
            return a.to(tl.bfloat16)
    else:
        return a.to(tl.float32)


@triton.jit
def _clip_filter_offset(b, k, i, K, width):
    """``(b * K + k) * width + i`` in int64: the flat index of element i of row (b, k) of a
    (B, K, width) tensor. B K width exceeds 2^31 for the mask bits of large batches."""
    return (tl.cast(b, tl.int64) * K + k) * width + i


@triton.jit
def _row64(r, length):
    """``r * length`` in int64 (start of row r of a 2-D buffer)."""
    return tl.cast(r, tl.int64) * length


@triton.jit
def _bin_start(p, N_out, P):
    """First position of adaptive-pooling bin p: floor(p N_out / P) (int64)."""
    return (tl.cast(p, tl.int64) * N_out) // P


@triton.jit
def _bin_end(p, N_out, P):
    """One past the last position of bin p: ceil((p + 1) N_out / P) (int64)."""
    return ((tl.cast(p, tl.int64) + 1) * N_out + P - 1) // P


@triton.jit
def _first_bin(n, N_out, P):
    """The first bin that holds position n: floor(n P / N_out) (int64)."""
    return (tl.cast(n, tl.int64) * P) // N_out


# ----------------------------------------------------------------------------- filter taps

@triton.jit
def _taps_kernel(low_ptr, band_ptr, consts_ptr, h_ptr, K, C, L,
                 BK: tl.constexpr, BJ: tl.constexpr):
    """h[k, j] for j in [0, C): the left half of filter k and its centre tap (= 1), float32."""
    tl.static_assert(BK >= 1 and BJ >= 1)
    k = tl.program_id(0) * BK + tl.arange(0, BK)
    j = tl.program_id(1) * BJ + tl.arange(0, BJ)
    kok = k < K
    jok = j < C
    fs = tl.load(consts_ptr)                      # float64: sample rate, min_low_hz, min_band_hz
    min_low = tl.load(consts_ptr + 1)
    min_band = tl.load(consts_ptr + 2)
    low_raw = tl.load(low_ptr + k, mask=kok, other=1.0).to(tl.float64)
    band_raw = tl.load(band_ptr + k, mask=kok, other=1.0).to(tl.float64)
    low = min_low + tl.abs(low_raw)
    high = tl.minimum(tl.maximum(low + min_band + tl.abs(band_raw), min_low), fs / 2)
    band = high - low
    centre = C - 1                                 # c = (L - 1) / 2
    t = (j - centre).to(tl.float64)                # negative sample offsets on the left half
    # SincNet's half window 0.54 - 0.46 cos(2 pi u / L), u = linspace(0, L/2 - 1, L // 2)
    steps = tl.maximum(centre - 1, 1).to(tl.float64)
    u = j.to(tl.float64) * (L / 2 - 1) / steps
    window = 0.54 - 0.46 * tl.cos((u / L).to(tl.float32) * 6.283185307179586)
    # sin(2 pi hi t/fs) - sin(2 pi lo t/fs) = 2 cos(pi (hi+lo) t/fs) sin(pi (hi-lo) t/fs); phases in
    # cycles, reduced to [-1/2, 1/2] in float64 before the float32 cosine and sine
    two_fs = fs + fs
    phase_sum = (high + low)[:, None] * t[None, :] / two_fs
    phase_band = band[:, None] * t[None, :] / two_fs
    turns_sum = (phase_sum + tl.where(phase_sum >= 0, 0.5, -0.5)).to(tl.int64).to(tl.float64)
    turns_band = (phase_band + tl.where(phase_band >= 0, 0.5, -0.5)).to(tl.int64).to(tl.float64)
    cos_sum = tl.cos((phase_sum - turns_sum).to(tl.float32) * 6.283185307179586)
    sin_band = tl.sin((phase_band - turns_band).to(tl.float32) * 6.283185307179586)
    # g = w * cos(.) * sin(pi B t / fs) / (pi B t / fs): the 1/(2 band) normalisation is built in
    centre_col = (j == centre)[None, :]
    angle = tl.where(centre_col, 1.0, phase_band.to(tl.float32) * 6.283185307179586)
    taps = tl.where(centre_col, 1.0, window[None, :] * cos_sum * sin_band / angle)
    tl.store(h_ptr + k[:, None] * C + j[None, :], taps, mask=kok[:, None] & jok[None, :])


# ----------------------------------------------------------------------------- forward

@triton.jit
def _fwd_epilogue(acc, n, n0, kk, b, K, N_out, W, own_lo, own_hi, off_ptr, gam_ptr, bet_ptr,
                  mask_ptr, member, pool_a, pool_z, pool_c,
                  BN: tl.constexpr, KW: tl.constexpr, PREC: tl.constexpr, INTERP: tl.constexpr):
    """BN shift + affine + ReLU on one (BN positions x KW filters) tile; pools into the program's
    bins and writes the mask bytes the program owns."""
    shift = tl.load(off_ptr + kk)                 # -mean / sigma (taps are already / sigma)
    gamma = tl.load(gam_ptr + kk)
    beta = tl.load(bet_ptr + kk)
    zhat = acc + shift[None, :]
    z = zhat * gamma[None, :] + beta[None, :]
    valid = (n < N_out)[:, None]
    # NaN as in the composite (sincfb/pooling.py: relu_mask, masked_zhat): a NaN z is on the
    # mask, so it passes itself and its gradient; off the mask zhat - zhat (0, or NaN for a
    # non-finite zhat) keeps dgamma non-finite where the composite's is
    positive = ((z > 0) | (z != z)) & valid
    act = tl.where(positive, z, 0.0)
    zpos = tl.where(positive, zhat, tl.where(valid, zhat - zhat, 0.0))
    count = positive.to(tl.float32)
    pool_a = _dot(member, act, pool_a, PREC, INTERP, ROUND_A=False)
    pool_z = _dot(member, zpos, pool_z, PREC, INTERP, ROUND_A=False)
    pool_c = _dot(member, count, pool_c, PREC, INTERP, ROUND_A=False, ROUND_B=False)
    # mask bits: bit i of byte r is position 8 r + i (tiles start at multiples of 8)
    bit = positive.to(tl.int32) << (tl.arange(0, BN) % 8)[:, None]
    packed = tl.sum(tl.reshape(bit, (BN // 8, 8, KW)), axis=1)
    byte = n0 // 8 + tl.arange(0, BN // 8)
    owned = (byte * 8 >= own_lo) & (byte * 8 < own_hi)
    offsets = _clip_filter_offset(b, kk[None, :], byte[:, None], K, W)
    tl.store(mask_ptr + offsets, packed.to(tl.uint8), mask=owned[:, None] & (kk < K)[None, :])
    return pool_a, pool_z, pool_c


@triton.jit
def _fwd_store(pool_a, pool_z, pool_c, bins, bin_ok, width, kk, b, K, P, out_ptr, cnt_ptr,
               sum_ptr):
    offsets = _clip_filter_offset(b, kk[None, :], bins[:, None], K, P)
    ok = bin_ok[:, None] & (kk < K)[None, :]
    tl.store(out_ptr + offsets, pool_a / width[:, None], mask=ok)
    tl.store(cnt_ptr + offsets, pool_c, mask=ok)
    tl.store(sum_ptr + offsets, pool_z, mask=ok)


@triton.jit
def _fwd_kernel(x_ptr, h_ptr, off_ptr, gam_ptr, bet_ptr, out_ptr, cnt_ptr, sum_ptr, mask_ptr,
                K, N_out, P, W, L, C, XS, HS,
                KA: tl.constexpr, KB: tl.constexpr, HAS_KB: tl.constexpr, BP: tl.constexpr,
                PREC: tl.constexpr, INTERP: tl.constexpr, BN: tl.constexpr, BJ: tl.constexpr):
    """One program: bins [p0, p0 + BP) of clip b, filters [kbase, kbase + KA + KB)."""
    tl.static_assert(BN % 8 == 0 and BN >= 16 and BN <= 256)
    tl.static_assert(BJ >= 16 and BJ <= 128 and 128 % BJ == 0)
    tl.static_assert(KA >= 16 and KB >= 16 and BP >= 16)
    pid_p = tl.program_id(0)
    b = tl.program_id(1)
    kbase = tl.program_id(2) * (KA + KB)
    p0 = pid_p * BP
    p1 = tl.minimum(p0 + BP, P)
    lo = _bin_start(p0, N_out, P)
    # this program writes the mask bytes whose first position lies in [own_lo, own_hi)
    own_lo = (lo + 7) // 8 * 8
    own_hi = tl.where(p1 < P, (_bin_start(p1, N_out, P) + 7) // 8 * 8, W * 8)
    hi = tl.maximum(_bin_end(p1 - 1, N_out, P), tl.minimum(own_hi, N_out)).to(tl.int32)
    n_first = (lo // 8 * 8).to(tl.int32)
    bins = p0 + tl.arange(0, BP)
    bin_ok = bins < P
    starts = _bin_start(bins, N_out, P)
    ends = _bin_end(bins, N_out, P)
    k1 = kbase + tl.arange(0, KA)
    k2 = kbase + KA + tl.arange(0, KB)
    pa1 = tl.zeros((BP, KA), tl.float32)
    pz1 = tl.zeros((BP, KA), tl.float32)
    pc1 = tl.zeros((BP, KA), tl.float32)
    pa2 = tl.zeros((BP, KB), tl.float32)
    pz2 = tl.zeros((BP, KB), tl.float32)
    pc2 = tl.zeros((BP, KB), tl.float32)
    x_row = x_ptr + _row64(b, XS)
    for n0 in range(n_first, hi, BN):
        n = n0 + tl.arange(0, BN)
        acc1 = tl.zeros((BN, KA), tl.float32)
        acc2 = tl.zeros((BN, KB), tl.float32)
        for j0 in range(0, C, BJ):
            j = j0 + tl.arange(0, BJ)
            # folded Hankel tile x[n + j] + x[n + L - 1 - j]; the padding makes every load valid
            fold = tl.load(x_row + (n[:, None] + j[None, :])) + \
                tl.load(x_row + (n[:, None] + (L - 1) - j[None, :]))
            fold = _operand(fold, PREC, INTERP)
            acc1 = _dot(fold, tl.load(h_ptr + j[:, None] * HS + k1[None, :]), acc1, PREC, INTERP)
            if HAS_KB:
                acc2 = _dot(fold, tl.load(h_ptr + j[:, None] * HS + k2[None, :]), acc2, PREC,
                            INTERP)
        member = ((n[None, :] >= starts[:, None]) & (n[None, :] < ends[:, None])
                  & bin_ok[:, None]).to(tl.float32)
        pa1, pz1, pc1 = _fwd_epilogue(acc1, n, n0, k1, b, K, N_out, W, own_lo, own_hi, off_ptr,
                                      gam_ptr, bet_ptr, mask_ptr, member, pa1, pz1, pc1,
                                      BN, KA, PREC, INTERP)
        if HAS_KB:
            pa2, pz2, pc2 = _fwd_epilogue(acc2, n, n0, k2, b, K, N_out, W, own_lo, own_hi,
                                          off_ptr, gam_ptr, bet_ptr, mask_ptr, member, pa2, pz2,
                                          pc2, BN, KB, PREC, INTERP)
    width = tl.where(bin_ok, ends - starts, 1).to(tl.float32)
    _fwd_store(pa1, pz1, pc1, bins, bin_ok, width, k1, b, K, P, out_ptr, cnt_ptr, sum_ptr)
    if HAS_KB:
        _fwd_store(pa2, pz2, pc2, bins, bin_ok, width, k2, b, K, P, out_ptr, cnt_ptr, sum_ptr)


# ----------------------------------------------------------------------------- backward

@triton.jit
def _dz_filters_by_positions(wc_ptr, mask_ptr, b, kk, K, P, W, N_out, n, bins, bin_ok,
                             member_t, PREC: tl.constexpr, INTERP: tl.constexpr):
    """dz'[k, n] = mask[k, n] * (sum of c_k w[k, bin] over the bins holding n): (KW, BN)."""
    kok = kk < K
    weights = tl.load(wc_ptr + _clip_filter_offset(b, kk[:, None], bins[None, :], K, P),
                      mask=kok[:, None] & bin_ok[None, :], other=0.0)
    spread = _dot(weights, member_t, tl.zeros((kk.shape[0], n.shape[0]), tl.float32), PREC,
                  INTERP)
    byte = tl.load(mask_ptr + _clip_filter_offset(b, kk[:, None], (n // 8)[None, :], K, W),
                   mask=kok[:, None] & (n < N_out)[None, :], other=0)
    bit = (byte.to(tl.int32) >> (n % 8)[None, :]) & 1
    return tl.where(bit != 0, spread, 0.0)


@triton.jit
def _dz_positions_by_filters(wc_ptr, mask_ptr, b, kk, K, P, W, N_out, n, bins, bin_ok, member,
                             PREC: tl.constexpr, INTERP: tl.constexpr):
    """The same dz' tile laid out (BN positions, KW filters)."""
    kok = kk < K
    weights = tl.load(wc_ptr + _clip_filter_offset(b, kk[None, :], bins[:, None], K, P),
                      mask=bin_ok[:, None] & kok[None, :], other=0.0)
    spread = _dot(member, weights, tl.zeros((n.shape[0], kk.shape[0]), tl.float32), PREC,
                  INTERP)
    byte = tl.load(mask_ptr + _clip_filter_offset(b, kk[None, :], (n // 8)[:, None], K, W),
                   mask=(n < N_out)[:, None] & kok[None, :], other=0)
    bit = (byte.to(tl.int32) >> (n % 8)[:, None]) & 1
    return tl.where(bit != 0, spread, 0.0)


@triton.jit
def _corr_kernel(x_ptr, wc_ptr, mask_ptr, part_ptr, B, K, N_out, P, W, L, C, XS, CH, KALLOC,
                 CALLOC,
                 KA: tl.constexpr, KB: tl.constexpr, HAS_KB: tl.constexpr, BPB: tl.constexpr,
                 PREC: tl.constexpr, INTERP: tl.constexpr, BN: tl.constexpr, BJ: tl.constexpr):
    """One program: taps [j0, j0 + BJ), positions [chunk CH, (chunk + 1) CH) of clip b, filters of
    one group; writes its (KA + KB) x BJ partial sums of corr."""
    tl.static_assert(BN >= 16 and BN <= 128 and BN % 8 == 0)
    tl.static_assert(BJ >= 16 and BJ <= 128 and 128 % BJ == 0)
    tl.static_assert(KA >= 16 and KB >= 16 and BPB >= 16)
    j = tl.program_id(0) * BJ + tl.arange(0, BJ)
    chunk = tl.program_id(1)
    b = tl.program_id(2) % B
    kbase = (tl.program_id(2) // B) * (KA + KB)
    k1 = kbase + tl.arange(0, KA)
    k2 = kbase + KA + tl.arange(0, KB)
    acc1 = tl.zeros((KA, BJ), tl.float32)
    acc2 = tl.zeros((KB, BJ), tl.float32)
    n_lo = chunk * CH
    n_hi = tl.minimum(n_lo + CH, N_out)
    x_row = x_ptr + _row64(b, XS)
    for n0 in range(n_lo, n_hi, BN):
        n = n0 + tl.arange(0, BN)
        bins = _first_bin(n0, N_out, P) + tl.arange(0, BPB)
        bin_ok = bins < P
        member_t = ((n[None, :] >= _bin_start(bins, N_out, P)[:, None])
                    & (n[None, :] < _bin_end(bins, N_out, P)[:, None])
                    & bin_ok[:, None]).to(tl.float32)
        fold = tl.load(x_row + (n[:, None] + j[None, :])) + \
            tl.load(x_row + (n[:, None] + (L - 1) - j[None, :]))
        fold = _operand(fold, PREC, INTERP)
        dz1 = _dz_filters_by_positions(wc_ptr, mask_ptr, b, k1, K, P, W, N_out, n, bins, bin_ok,
                                       member_t, PREC, INTERP)
        acc1 = _dot(_operand(dz1, PREC, INTERP), fold, acc1, PREC, INTERP)
        if HAS_KB:
            dz2 = _dz_filters_by_positions(wc_ptr, mask_ptr, b, k2, K, P, W, N_out, n, bins,
                                           bin_ok, member_t, PREC, INTERP)
            acc2 = _dot(_operand(dz2, PREC, INTERP), fold, acc2, PREC, INTERP)
    row = _row64(chunk * B + b, KALLOC)
    tl.store(part_ptr + (row + k1[:, None]) * CALLOC + j[None, :], acc1)
    if HAS_KB:
        tl.store(part_ptr + (row + k2[:, None]) * CALLOC + j[None, :], acc2)


@triton.jit
def _dx_accumulate(row_ptr, start, values, t):
    """row[start + t] += values[t] (this program owns the row; the caller places the barriers)."""
    current = tl.load(row_ptr + start + t)
    tl.store(row_ptr + start + t, current + values)


@triton.jit
def _dx_kernel(h_ptr, wc_ptr, mask_ptr, part_ptr, scratch_ptr, B, K, N_out, P, W, L, C, HS, PM,
               RL, SCR, n_chunks,
               KA: tl.constexpr, KB: tl.constexpr, HAS_KB: tl.constexpr, BPB: tl.constexpr,
               OFF: tl.constexpr, SJ: tl.constexpr, PREC: tl.constexpr, INTERP: tl.constexpr,
               BM: tl.constexpr, BJ: tl.constexpr):
    """One program: positions [chunk PM, (chunk + 1) PM) of clip b, filters of one group; writes
    the row of partial dx covering samples [chunk PM - OFF, chunk PM - OFF + RL)."""
    tl.static_assert(BM >= 16 and BM <= 128 and BM % 8 == 0)
    # the diagonal sums hold 2 BM entries: i + j < BM + BJ - 1 needs BJ <= BM
    tl.static_assert(BJ >= 16 and BJ <= 64 and BJ <= OFF and BJ % SJ == 0 and BJ <= BM)
    tl.static_assert(KA >= 16 and KB >= 16 and BPB >= 16)
    chunk = tl.program_id(0)
    b = tl.program_id(1)
    kbase = tl.program_id(2) * (KA + KB)
    program = (tl.program_id(2) * B + b) * n_chunks + chunk
    row_ptr = part_ptr + _row64(program, RL)
    scratch = scratch_ptr + _row64(program, SCR)
    ZB: tl.constexpr = 1024
    for r0 in range(0, RL, ZB):
        r = r0 + tl.arange(0, ZB)
        tl.store(row_ptr + r, tl.zeros((ZB,), tl.float32), mask=r < RL)
    tl.debug_barrier()
    m_lo = chunk * PM
    m_hi = tl.minimum(m_lo + PM, N_out)
    k1 = kbase + tl.arange(0, KA)
    k2 = kbase + KA + tl.arange(0, KB)
    ri = tl.arange(0, BM)
    rj = tl.arange(0, BJ)
    t = tl.arange(0, 2 * BM)
    for m0 in range(m_lo, m_hi, BM):
        n = m0 + ri
        bins = _first_bin(m0, N_out, P) + tl.arange(0, BPB)
        bin_ok = bins < P
        member_t = ((n[None, :] >= _bin_start(bins, N_out, P)[:, None])
                    & (n[None, :] < _bin_end(bins, N_out, P)[:, None])
                    & bin_ok[:, None]).to(tl.float32)
        dz1 = _operand(_dz_filters_by_positions(wc_ptr, mask_ptr, b, k1, K, P, W, N_out, n, bins,
                                                bin_ok, member_t, PREC, INTERP), PREC, INTERP)
        if HAS_KB:
            dz2 = _operand(_dz_filters_by_positions(wc_ptr, mask_ptr, b, k2, K, P, W, N_out, n,
                                                    bins, bin_ok, member_t, PREC, INTERP),
                           PREC, INTERP)
        for j0 in range(0, C, BJ):
            j = j0 + rj
            qt = _dot(tl.load(h_ptr + j[:, None] * HS + k1[None, :]), dz1,
                      tl.zeros((BJ, BM), tl.float32), PREC, INTERP)
            if HAS_KB:
                qt = _dot(tl.load(h_ptr + j[:, None] * HS + k2[None, :]), dz2, qt, PREC, INTERP)
            tl.store(scratch + ri[None, :] * BJ + rj[:, None], qt)
            tl.debug_barrier()
            # Q[i, j] goes to dx[m0 + i + (j0 + j)] and to dx[m0 + i + L - 1 - (j0 + j)]: sum the
            # tile along its diagonals, SJ columns at a time (few live registers)
            direct = tl.zeros((2 * BM,), tl.float32)
            mirror = tl.zeros((2 * BM,), tl.float32)
            for jc in range(0, BJ, SJ):     # a run-time loop: its addresses are not hoisted
                cols = jc + tl.arange(0, SJ)
                src = t[:, None] - cols[None, :]
                direct += tl.sum(tl.load(scratch + src * BJ + cols[None, :],
                                         mask=(src >= 0) & (src < BM), other=0.0), axis=1)
                src = t[:, None] + cols[None, :] - (BJ - 1)
                mirror += tl.sum(tl.load(scratch + src * BJ + cols[None, :],
                                         mask=(src >= 0) & (src < BM), other=0.0), axis=1)
            tl.debug_barrier()
            _dx_accumulate(row_ptr, (m0 - m_lo) + j0 + OFF, direct, t)
            tl.debug_barrier()
            _dx_accumulate(row_ptr, (m0 - m_lo) + (L - 1) - j0 - (BJ - 1) + OFF, mirror, t)
            tl.debug_barrier()


# ----------------------------------------------------------------------------- configurations

def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _fix_interpreter_loop_bounds() -> None:
    """Triton 3.6's interpreter turns a scalar into a loop bound with ``int(array of shape (1,))``,
    which NumPy >= 2.4 rejects, so every loop with run-time bounds fails under TRITON_INTERPRET=1
    (triton-lang/triton#9171, fixed upstream after 3.6). Re-patch ``tensor.__index__`` to take the
    element explicitly. Only under the interpreter, and only when NumPy has the new behaviour."""
    if not interpreting():
        return
    import numpy as np
    from triton.runtime import interpreter
    try:
        int(np.ones(1, dtype=np.int32))
        return
    except TypeError:
        pass
    original = interpreter._patch_lang_tensor
    if getattr(original, "sincfb_fixed", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched.sincfb_fixed = True
    interpreter._patch_lang_tensor = patched


_fix_interpreter_loop_bounds()


def autotune_enabled() -> bool:
    """SINCFB_AUTOTUNE=0 turns autotuning off (tests); the interpreter never autotunes."""
    return os.environ.get("SINCFB_AUTOTUNE", "1") != "0" and not interpreting()


def _cfg(num_warps, num_stages, **meta):
    return triton.Config(meta, num_warps=num_warps, num_stages=num_stages)


# Tile configurations per kernel and precision, the first of each list being the one used when
# autotuning is off. Chosen from bench/gpu/compile_check.py's table (bench/results/
# triton-compile-sm90-sm80.json, the former lists in ...-before.json, BENCHMARKS.md): the
# paper's sizes (K = 160 as 128 + 32, L = 1001), specialised as a real launch is. ptxas gives the
# 8-warp tiles 255 registers, so what decides spilling is the live accumulators (the forward keeps
# 2 x 3 pooling accumulators beside its 64 x 160 one); configs that spilled on sm_90 were dropped
# or replaced:
# - forward bf16: BN=64 BJ=64 (48 B), 4-stage BN=64 BJ=32 (40 B) and BN=128 BJ=32 (504 B)
#   dropped; 2-stage BN=64 BJ=32 and BN=64 BJ=16 with 3 and 4 stages (none spill) added;
# - forward tf32 (own list): rounding the pooling products' 0/1 operands (membership, count) to
#   tf32 changes no value but cost registers: BN=64 BJ=16 spilled 16 B, BN=64 BJ=32 28 B, every
#   other tile tried 16-720 B (4 warps 512 B, 16 warps 248 B). _dot now skips those roundings
#   (ROUND_A / ROUND_B): the default BN=64 BJ=16 (1 stage) spills nothing, BN=64 BJ=32 (2
#   stages) 24 B; BN=64 BJ=16 with 2 / 3 stages still spill 32 / 60 B, BN=32 (mma.sync only)
#   236-244 B. ptxas is sensitive to the exact code: skipping them in the count's product only
#   left 4 B;
# - forward ieee (fp32 FMA dots): 4-warp BN=32 BJ=32 (1.1 KB) and 8-warp BN=64 BJ=32 (2.8 KB)
#   replaced by 8-warp BN=32 BJ=16 (1 stage) and 4-warp BN=16 BJ=32 (none spill);
# - corr: 4-warp BN=32 BJ=64 (160 B bf16, 320 B tf32) now runs 8 warps (none); BN=64 BJ=128
#   (88 B bf16, 304 B tf32; on sm_80 167,936 / 184,320 B of shared memory, over its 166,912)
#   replaced by 2-stage BN=64 BJ=64;
# - dx bf16: BM=128 BJ=64 (48 B, both stage counts) replaced by BM=64 BJ=64 with 8 warps;
#   dx tf32 (own list): every 64-tap tile spilled (68-148 B), 32-tap tiles spill nothing.
#   BJ <= BM is required (the diagonal sums hold 2 BM entries; the CPU sweep of every config,
#   tests/sincfb/test_triton_configs.py, caught a BM=32 BJ=64 candidate losing outputs).
# On sm_80 14 of the 26 rows spill 32-412 B (every bf16/tf32 forward tile; the tf32 forward
# 360 and 412 B, up from 240 and 276 B before the rounding change): Hopper first.
# Configs whose shared memory exceeds the device's are pruned at launch (prune_configs).
FWD_CONFIGS = {
    "bf16": [_cfg(8, 3, BN=64, BJ=32), _cfg(8, 2, BN=64, BJ=32), _cfg(8, 3, BN=64, BJ=16),
             _cfg(8, 4, BN=64, BJ=16)],
    "tf32": [_cfg(8, 1, BN=64, BJ=16), _cfg(8, 2, BN=64, BJ=32)],
    "ieee": [_cfg(8, 1, BN=32, BJ=16), _cfg(4, 2, BN=16, BJ=32)],
}
_TENSOR_CORE_CORR = [_cfg(8, 3, BN=64, BJ=64), _cfg(8, 3, BN=32, BJ=128),
                     _cfg(8, 3, BN=32, BJ=64), _cfg(8, 2, BN=64, BJ=64)]
CORR_CONFIGS = {
    "bf16": _TENSOR_CORE_CORR,
    "tf32": _TENSOR_CORE_CORR,
    "ieee": [_cfg(8, 2, BN=32, BJ=64), _cfg(4, 2, BN=32, BJ=32)],
}
# dx: the taps are the main dot's M dimension, so BJ = 64 keeps it on wgmma (M = 64 per
# warpgroup); tf32 takes BJ = 32 to spill nothing, and that product cannot use wgmma there
DX_CONFIGS = {
    "bf16": [_cfg(8, 2, BM=64, BJ=64), _cfg(4, 2, BM=64, BJ=64), _cfg(8, 3, BM=64, BJ=64)],
    "tf32": [_cfg(8, 2, BM=64, BJ=32), _cfg(4, 2, BM=64, BJ=32), _cfg(8, 1, BM=128, BJ=32)],
    "ieee": [_cfg(8, 2, BM=64, BJ=32), _cfg(4, 2, BM=32, BJ=32)],
}


def _all_configs(table):
    """The distinct configurations of a per-precision table (the autotuner's list)."""
    unique = {id(c): c for configs in table.values() for c in configs}
    return list(unique.values())


# the padding and workspace sizes below rely on these bounds
assert all(c.kwargs["BJ"] <= min(X_LEFT, TAP_ALIGN) and TAP_ALIGN % c.kwargs["BJ"] == 0
           for c in _all_configs(FWD_CONFIGS) + _all_configs(CORR_CONFIGS))
assert all(c.kwargs["BN"] + c.kwargs["BJ"] + 8 <= X_RIGHT and c.kwargs["BN"] <= MAX_TILE_N
           for c in _all_configs(FWD_CONFIGS) + _all_configs(CORR_CONFIGS))
assert all(c.kwargs["BJ"] <= c.kwargs["BM"] <= DX_MAX_BM and c.kwargs["BJ"] <= DX_MAX_BJ
           and DX_MAX_BM % c.kwargs["BM"] == 0 for c in _all_configs(DX_CONFIGS))
# Under the interpreter: one small config (the interpreter's cost is per operation, not per
# element, so few large-ish blocks are fastest; tl.dot needs every dimension >= 16).
INTERP_FWD = _cfg(1, 1, BN=32, BJ=16)
INTERP_CORR = _cfg(1, 1, BN=32, BJ=16)
INTERP_DX = _cfg(1, 1, BM=32, BJ=16)
# the filter-taps kernel is small (O(K L)) and never autotuned
TAPS_CONFIG = _cfg(4, 1, BK=16, BJ=64)


def _pow2_at_least(value: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, value))))


def device_shared_memory() -> int:
    """Shared memory per block of the current CUDA device (opt-in maximum), read when called."""
    from triton.runtime import driver
    device = driver.active.get_current_device()
    return driver.active.utils.get_device_properties(device)["max_shared_mem"]


def shared_memory_need(kernel, config, named_args, meta) -> int:
    """Bytes of shared memory ``kernel`` needs with ``config`` for these arguments: compiles it
    as the launch would (Triton's cache keeps it for the launch) without running it."""
    compiled = kernel.warmup(**named_args, **meta, **config.all_kwargs(), grid=(1,))
    return (compiled.result() if hasattr(compiled, "result") else compiled).metadata.shared


def prune_configs(table, kernel, configs, named_args, **kwargs):
    """Autotuner pre-filter (keyed on K, L, P, precision): the precision's own list; tap blocks
    no wider than the folded taps (rounded up to a power of two); at most 128 x 160 accumulator
    elements per program; and only configs whose shared memory fits the device this launch runs
    on (its limit and the compiled kernel's need are read here, at launch, never at import)."""
    precision = {code: name for name, code in PREC_CODE.items()}[kwargs["PREC"]]
    own = {id(c) for c in table[precision]}
    taps = _pow2_at_least(max(16, named_args["C"]))
    width = kwargs.get("KA", 16) + (kwargs.get("KB", 16) if kwargs.get("HAS_KB", False) else 0)
    kept = [c for c in configs if id(c) in own]
    kept = [c for c in kept if c.kwargs["BJ"] <= taps
            and c.kwargs.get("BN", c.kwargs.get("BM")) * width <= 128 * 160] or kept[:1]
    limit = device_shared_memory()
    fitting = [c for c in kept if shared_memory_need(kernel, c, named_args, kwargs) <= limit]
    if not fitting:
        raise RuntimeError(f"no tile configuration of {kernel.__name__} fits the device's "
                           f"{limit} bytes of shared memory")
    return fitting


def _autotuned(kernel, table):
    prune = functools.partial(prune_configs, table, kernel)
    return triton.autotune(configs=_all_configs(table), key=["K", "L", "P", "PREC"],
                           prune_configs_by={"early_config_prune": prune})(kernel)


_fwd_tuned = _autotuned(_fwd_kernel, FWD_CONFIGS)
_corr_tuned = _autotuned(_corr_kernel, CORR_CONFIGS)
_dx_tuned = _autotuned(_dx_kernel, DX_CONFIGS)


class Launch(NamedTuple):
    """One kernel launch as a launcher would make it (see :func:`captured_launches`)."""
    kernel: object
    args: tuple
    meta: dict
    configs: list


_captured: list | None = None


@contextlib.contextmanager
def captured_launches():
    """Within the block the launchers record a :class:`Launch` per kernel instead of launching:
    ahead-of-time compilation (bench/gpu/compile_check.py) takes the argument types and values a
    real launch passes from the launchers themselves, fed with tensors on the 'meta' device."""
    global _captured
    previous, _captured = _captured, []
    try:
        yield _captured
    finally:
        _captured = previous


def _launch(kernel, tuned, candidates, interp_config, grid, args, meta):
    """Run ``tuned`` (autotuning over its configs) or ``kernel`` with one fixed config: the
    first candidate, or ``interp_config`` under the interpreter."""
    if _captured is not None:
        _captured.append(Launch(kernel, args, meta, candidates))
        return
    if tuned is not None and autotune_enabled():
        tuned[grid](*args, **meta)
        return
    config = interp_config if interpreting() else candidates[0]
    kernel[grid](*args, **meta, **config.kwargs, num_warps=config.num_warps,
                 num_stages=config.num_stages)


def specialisation(kernel, args, constexprs):
    """(signature, constexprs, attrs) of ``kernel`` launched with ``args`` and the constexprs,
    as Triton's JIT derives them at a launch: Triton's own per-argument rule gives the pointer
    and integer types, the divisibility-by-16 hint of integers and of pointers (the launchers
    pass torch allocations, 16-byte aligned, and views 512 bytes into them), and integers equal
    to 1 become constants. ``args`` may hold tensors on the 'meta' device (address 0)."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend
    signature, constants, attrs = {}, dict(constexprs), {}
    values = iter(args)
    for index, name in enumerate(kernel.arg_names):
        if name in constants:
            signature[name] = "constexpr"
            continue
        kind, hint = native_specialize_impl(BaseBackend, next(values), False, True, True)
        signature[name] = kind
        if kind == "constexpr":
            constants[name] = hint
        elif hint:
            attrs[(index,)] = BaseBackend.parse_attr(hint)
    return signature, constants, attrs


# ----------------------------------------------------------------------------- layout helpers

class Layout:
    """Sizes shared by the launchers of one call: filter groups, padded taps, bins per tile."""

    def __init__(self, batch: int, channels: int, samples: int, kernel_size: int, bins: int):
        self.B, self.K, self.N, self.L, self.P = batch, channels, samples, kernel_size, bins
        self.N_out = samples - kernel_size + 1
        self.W = (self.N_out + 7) // 8
        self.C = (kernel_size + 1) // 2
        self.C_alloc = -(-self.C // TAP_ALIGN) * TAP_ALIGN
        self.KA, self.KB, self.has_kb, self.groups = filter_split(channels)
        # packed taps, BN vectors and corr partials have this many filter columns (zero padded)
        self.K_alloc = self.groups * (self.KA + self.KB) if self.has_kb else self.KA
        # forward: bins per program, so that a program spans about one 128-row tile or more
        per_tile = math.ceil(128 * bins / self.N_out)
        self.BP = min(256, max(16, _pow2_at_least(per_tile)))
        # backward: bins that can touch one tile of MAX_TILE_N positions
        self.BPB = max(16, _pow2_at_least(math.ceil(MAX_TILE_N * bins / self.N_out) + 1))
        self.XS = -(-(X_LEFT + samples + X_RIGHT) // 16) * 16


def filter_split(channels: int):
    """Split K filters into groups of KA (+ KB) columns, both powers of two >= 16.

    K = 160 -> one group of 128 + 32: no padded filters and the A tile is built once for all."""
    if channels <= 16:
        return 16, 16, False, 1
    if channels >= 256:
        return 128, 128, True, -(-channels // 256)
    ka = 1 << (channels.bit_length() - 1)         # largest power of two <= K (< 256)
    ka = min(ka, 128)
    rest = channels - ka
    if rest <= 0:
        return ka, 16, False, 1
    kb = max(16, _pow2_at_least(rest))
    return ka, kb, True, 1


def alloc(shape, dtype, device, poison: bool, fill=float("nan")):
    """Output and workspace buffers: NaN-filled (0xFF for integers) when poisoning is on, so an
    element a kernel fails to write cannot pass a test."""
    if poison:
        value = 255 if dtype == torch.uint8 else fill
        return torch.full(shape, value, dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


# ----------------------------------------------------------------------------- launchers

def filter_taps(low_hz_, band_hz_, kernel_size, sample_rate, min_low_hz, min_band_hz):
    """(K, C) float32 left halves and centres of the filters, computed on the parameters' device."""
    K = low_hz_.shape[0]
    C = (kernel_size + 1) // 2
    consts = torch.tensor([sample_rate, min_low_hz, min_band_hz], dtype=torch.float64,
                          device=low_hz_.device)
    taps = torch.empty(K, C, dtype=torch.float32, device=low_hz_.device)
    grid = (triton.cdiv(K, TAPS_CONFIG.kwargs["BK"]), triton.cdiv(C, TAPS_CONFIG.kwargs["BJ"]))
    args = (low_hz_.detach().reshape(-1).contiguous(), band_hz_.detach().reshape(-1).contiguous(),
            consts, taps, K, C, kernel_size)
    _launch(_taps_kernel, None, [TAPS_CONFIG], TAPS_CONFIG, grid, args, {})
    return taps


def forward_product(x_pad, taps_scaled, shift, gamma, beta, layout: Layout, precision: str,
                    out_dtype, stats_dtype, poison: bool):
    """The forward kernel: returns (out, mask_bits, bin_stats)."""
    lay = layout
    device = x_pad.device
    out = alloc((lay.B, lay.K, lay.P), out_dtype, device, poison)
    stats = alloc((2, lay.B, lay.K, lay.P), stats_dtype, device, poison)
    mask = alloc((lay.B, lay.K, lay.W), torch.uint8, device, poison)
    grid = (triton.cdiv(lay.P, lay.BP), lay.B, lay.groups)
    args = (x_pad[:, X_LEFT:], taps_scaled, shift, gamma, beta, out, stats[0], stats[1], mask,
            lay.K, lay.N_out, lay.P, lay.W, lay.L, lay.C, lay.XS, lay.K_alloc)
    meta = dict(KA=lay.KA, KB=lay.KB, HAS_KB=lay.has_kb, BP=lay.BP, PREC=PREC_CODE[precision],
                INTERP=interpreting())
    _launch(_fwd_kernel, _fwd_tuned, FWD_CONFIGS[precision],
            INTERP_FWD, grid, args, meta)
    return out, mask, stats


HOPPER_SMS = 132      # H100 SXM / H200: what 'meta' launches (ahead-of-time compiles) size for


def _sm_count(device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return HOPPER_SMS if device.type == "meta" else 1


def filter_correlation(x_pad, weights, mask_bits, layout: Layout, precision: str, poison: bool):
    """corr (K, C) float64 from the corr kernel's partial sums."""
    lay = layout
    device = x_pad.device
    if interpreting():   # two chunks: the boundary is exercised and the partials stay small
        tile = INTERP_CORR.kwargs["BN"]
        chunk = max(2 * tile, -(-lay.N_out // (2 * tile)) * tile)
    else:
        blocks = lay.C_alloc // 128
        wanted = max(1, math.ceil(2 * _sm_count(device) / (blocks * lay.B * lay.groups)))
        chunk = -(-math.ceil(lay.N_out / wanted) // 256) * 256
        if precision == "ieee":      # shorter float32 sums (partials are added in float64)
            chunk = min(chunk, 4096)
    n_chunks = triton.cdiv(lay.N_out, chunk)
    part = alloc((n_chunks, lay.B, lay.K_alloc, lay.C_alloc), torch.float32, device, poison)
    grid = lambda meta: (triton.cdiv(lay.C, meta["BJ"]), n_chunks, lay.B * lay.groups)  # noqa: E731
    args = (x_pad[:, X_LEFT:], weights, mask_bits, part, lay.B, lay.K, lay.N_out, lay.P, lay.W,
            lay.L, lay.C, lay.XS, chunk, lay.K_alloc, lay.C_alloc)
    meta = dict(KA=lay.KA, KB=lay.KB, HAS_KB=lay.has_kb, BPB=lay.BPB, PREC=PREC_CODE[precision],
                INTERP=interpreting())
    _launch(_corr_kernel, _corr_tuned, CORR_CONFIGS[precision],
            INTERP_CORR, grid, args, meta)
    # columns past the last tap block are never written (nor read)
    return part[..., :lay.C].sum((0, 1), dtype=torch.float64)[:lay.K]


def transposed_product(taps, weights, mask_bits, layout: Layout, precision: str, poison: bool):
    """sum_k (dz'_k transposed-convolved with g_k): (B, N) float64, overlap-added from the rows of
    partial sums the dx kernel writes."""
    lay = layout
    device = weights.device
    if interpreting():
        chunk = 2 * INTERP_DX.kwargs["BM"]
    else:
        wanted = max(1, math.ceil(4 * _sm_count(device) / (lay.B * lay.groups)))
        chunk = -(-math.ceil(lay.N_out / wanted) // DX_MAX_BM) * DX_MAX_BM
    n_chunks = triton.cdiv(lay.N_out, chunk)
    candidates = DX_CONFIGS[precision]
    if autotune_enabled():
        max_bm, max_bj = DX_MAX_BM, DX_MAX_BJ
    else:
        config = INTERP_DX if interpreting() else candidates[0]
        max_bm, max_bj = config.kwargs["BM"], config.kwargs["BJ"]
    row = chunk + 2 * max_bm + lay.L + DX_OFF
    programs = lay.groups * lay.B * n_chunks
    part = alloc((programs, row), torch.float32, device, poison)
    scratch_row = max_bm * max_bj
    scratch = alloc((programs, scratch_row), torch.float32, device, poison)
    grid = (n_chunks, lay.B, lay.groups)
    args = (taps, weights, mask_bits, part, scratch, lay.B, lay.K, lay.N_out, lay.P, lay.W,
            lay.L, lay.C, lay.K_alloc, chunk, row, scratch_row, n_chunks)
    meta = dict(KA=lay.KA, KB=lay.KB, HAS_KB=lay.has_kb, BPB=lay.BPB, OFF=DX_OFF,
                SJ=16 if interpreting() else DX_SKEW_COLUMNS, PREC=PREC_CODE[precision],
                INTERP=interpreting())
    _launch(_dx_kernel, _dx_tuned, candidates, INTERP_DX, grid, args, meta)
    # overlap-add: row r of chunk g starts at sample g * chunk - DX_OFF
    rows = part.view(lay.groups, lay.B, n_chunks, row).sum(0, dtype=torch.float64)
    length = (n_chunks - 1) * chunk + row
    summed = torch.nn.functional.fold(rows.transpose(1, 2), output_size=(1, length),
                                      kernel_size=(1, row), stride=(1, chunk))
    return summed[:, 0, 0, DX_OFF:DX_OFF + lay.N]
