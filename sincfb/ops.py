"""The fused sinc filterbank as a registered PyTorch operation.

``torch.ops.sincfb.filterbank`` computes sinc conv -> BatchNorm -> ReLU -> adaptive average pooling in
one call and returns::

    out        (B, K, P)              x.dtype       the pooled activations
    mean, var  (K,)                   weight.dtype  the statistics used (batch mean and biased batch
                                                    variance in training, the running ones in eval);
                                                    without weight: bias's, running_mean's, or
                                                    x.dtype promoted to float32
    mask_bits  (B, K, ceil(N_out/8))  uint8         ReLU mask (z > 0 or NaN: where torch's ReLU
                                                    passes the gradient), bit i of byte j =
                                                    position 8j+i
    bin_stats  (2, B, K, P)           float32 (float64 for float64 x)
                                                    per bin: count of masked positions, sum of
                                                    zhat there (NaN when the bin holds a
                                                    non-finite zhat anywhere)

Its arguments, and those of its backward, are declared once in :mod:`sincfb.arguments` (names,
schema types, defaults, what each is); the schemas, the fake, the autograd context and the
:class:`~sincfb.arguments.FilterbankConfig` backends receive are derived from there.

Only ``out`` is differentiable; the other four are what the hand-written backward
(``sincfb::filterbank_backward``) needs. The op's last argument ``keep_saved`` (default True) set
to False says no backward will run: ``mask_bits`` and ``bin_stats`` then come back empty,
(B, K, 0) and (2, B, K, 0), and a backend may skip making them. :func:`filterbank_step` passes
False under ``no_grad`` or when no input requires a gradient. The operation is functional:
running statistics are updated by :func:`fused_sinc_filterbank` from ``mean`` and ``var``,
outside the op, which keeps the op's autograd formula legal and ``torch.compile`` graphs free of
hidden mutation. ``weight`` and ``bias`` may be None (BatchNorm without affine: gamma 1, beta 0); the op fills them in once, so every backend
sees tensors.

Non-finite values (DESIGN.md §4) behave as in the composite: a NaN or Inf in the input, or a NaN
in the BatchNorm tensors, makes exactly the outputs (and gradients) non-finite that the composite
makes non-finite, and a batch whose statistics are non-finite does not enter the running
statistics. An infinite BatchNorm tensor gives non-finite values too, but where our
``(y - mean) / sigma * gamma + beta`` puts them, which can differ from torch's BatchNorm (it
computes ``y * a + b`` with ``a = gamma / sigma``, and Inf - Inf in ``b`` is NaN).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .arguments import (BACKWARD_TENSORS, OP_ARGS, OP_RETURNS, BackwardInputs, FilterbankConfig,
                        OpInputs, backward_schema, forwarded, schema)
from .backends import (PRECISIONS, default_precision, get_backend, load_builtin_backends,
                       resolve_backend)
from .backends.calibration import Problem
from .filters import odd_kernel_size
from .lowering import eval_filterbank
from .pooling import bin_stats_dtype, packed_mask_width

__all__ = ["fused_sinc_filterbank", "filterbank_step", "validate_inputs", "check_finite",
           "default_precision", "bin_stats_dtype"]


def _statistics_dtype(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                      running_mean: Optional[Tensor]) -> torch.dtype:
    """dtype of the op's ``mean`` and ``var``: that of the BatchNorm tensors (the first given of
    weight, bias, running_mean), else of the input promoted to at least float32."""
    for t in (weight, bias, running_mean):
        if t is not None:
            return t.dtype
    return bin_stats_dtype(x.dtype)


def _affine(x: Tensor, low_hz_: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
            running_mean: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """``weight`` and ``bias``, a missing one as BatchNorm without affine has it: gamma 1, beta 0."""
    channels, dtype = low_hz_.shape[0], _statistics_dtype(x, weight, bias, running_mean)
    return (x.new_ones(channels, dtype=dtype) if weight is None else weight,
            x.new_zeros(channels, dtype=dtype) if bias is None else bias)


load_builtin_backends()


def _no_autocast(x: Tensor):
    """Kernels run with autocast off: the op's dtypes are fixed by its schema (output in x.dtype)
    and its operand precision by ``precision``, not by an enclosing autocast region."""
    return torch.autocast(x.device.type, enabled=False)


def _config(inputs) -> FilterbankConfig:
    """The backend's :class:`FilterbankConfig` from an op's or backward op's named inputs (the
    backward op has no ``keep_saved``: its backward ran, so the default, True, holds)."""
    return FilterbankConfig(**{name: getattr(inputs, name) for name in FilterbankConfig._fields
                               if hasattr(inputs, name)})


@torch.library.custom_op("sincfb::filterbank", mutates_args=(), schema=schema())
def _filterbank(*inputs) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    a = OpInputs(*inputs)
    weight, bias = _affine(a.x, a.low_hz_, a.weight, a.bias, a.running_mean)
    with _no_autocast(a.x):
        out, mean, var, mask_bits, bin_stats = get_backend(a.backend).forward(
            a.x, a.low_hz_, a.band_hz_, weight, bias, a.running_mean, a.running_var, _config(a))
    if not a.keep_saved:   # whatever the backend made of them, nobody will read them
        mask_bits, bin_stats = _empty_saved(a.x, a.low_hz_.shape[0])
    return out, mean, var, mask_bits, bin_stats


def _empty_saved(x: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    """The ``keep_saved=False`` stand-ins for mask bits and bin statistics: (B, K, 0), (2, B, K, 0)."""
    return (x.new_empty(x.shape[0], channels, 0, dtype=torch.uint8),
            x.new_empty(2, x.shape[0], channels, 0, dtype=bin_stats_dtype(x.dtype)))


@_filterbank.register_fake
def _filterbank_fake(*inputs):
    a = OpInputs(*inputs)
    x, channels = a.x, a.low_hz_.shape[0]
    n_out = x.shape[-1] - a.kernel_size + 1
    stats = _statistics_dtype(x, a.weight, a.bias, a.running_mean)
    saved = (_empty_saved(x, channels) if not a.keep_saved else
             (x.new_empty(x.shape[0], channels, packed_mask_width(n_out), dtype=torch.uint8),
              x.new_empty(2, x.shape[0], channels, a.pool_bins, dtype=bin_stats_dtype(x.dtype))))
    return (x.new_empty(x.shape[0], channels, a.pool_bins),
            x.new_empty(channels, dtype=stats), x.new_empty(channels, dtype=stats), *saved)


@torch.library.custom_op("sincfb::filterbank_backward", mutates_args=(),
                         schema=backward_schema())
def _filterbank_backward(*inputs) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    a = BackwardInputs(*inputs)
    saved = [getattr(a, name) for name in BACKWARD_TENSORS]
    with _no_autocast(a.x):
        grads = get_backend(a.backend).backward(*saved, _config(a), need_input=a.need_input,
                                                need_filters=a.need_filters)
    # A custom op may not return its inputs or views of them; autograd may hand some back. A
    # gradient that was not asked for comes back as zeros (the op's outputs are tensors); the
    # autograd formula turns it into None.
    return tuple(g.clone() if g is not None else torch.zeros_like(t)
                 for g, t in zip(grads, (a.x, a.low_hz_, a.band_hz_, a.weight, a.bias)))


@_filterbank_backward.register_fake
def _filterbank_backward_fake(*inputs):
    a = BackwardInputs(*inputs)
    return tuple(torch.empty_like(t) for t in (a.x, a.low_hz_, a.band_hz_, a.weight, a.bias))


def _setup_context(ctx, inputs, output):
    """Keep, by name, what the backward op takes: its saved tensors (the op's inputs and outputs,
    a missing affine filled in) and the op's non-tensor arguments it declares."""
    a = OpInputs(*inputs)
    ctx.affine_given = (a.weight is not None, a.bias is not None)
    weight, bias = _affine(a.x, a.low_hz_, a.weight, a.bias, a.running_mean)
    values = {**a._asdict(), "weight": weight, "bias": bias, **dict(zip(OP_RETURNS, output))}
    ctx.save_for_backward(*(values[name] for name in BACKWARD_TENSORS[1:]))   # all but grad_out
    ctx.forwarded = tuple(values[arg.name] for arg in forwarded())
    ctx.keep_saved = a.keep_saved
    ctx.mark_non_differentiable(*output[1:])


def _backward(ctx, grad_out, *_unused_grads):
    """Only the gradients autograd asks for: raw audio needs no input gradient (the heavy
    transposed product is skipped), frozen cut-offs no filter gradient (the filter-gradient
    product is skipped); a frozen or missing BatchNorm affine gets None (its gradient is a
    by-product of the bin sums)."""
    if not ctx.keep_saved:
        raise RuntimeError("sincfb::filterbank ran with keep_saved=False and kept no data for "
                           "its backward; filterbank_step passes False only when no gradient "
                           "is wanted")
    needs = ctx.needs_input_grad
    need_input, need_filters = needs[0], needs[1] or needs[2]
    grads = torch.ops.sincfb.filterbank_backward(grad_out.contiguous(), *ctx.saved_tensors,
                                                 *ctx.forwarded, need_input, need_filters)
    weight_given, bias_given = ctx.affine_given   # a None input takes a None gradient
    wanted = (need_input, needs[1], needs[2], needs[3] and weight_given, needs[4] and bias_given)
    gradients = tuple(g if want else None for g, want in zip(grads, wanted))
    return gradients + (None,) * (len(OP_ARGS) - len(gradients))


_filterbank.register_autograd(_backward, setup_context=_setup_context)


def validate_inputs(x: Tensor, low_hz_: Tensor, band_hz_: Tensor, kernel_size: int,
                    pool_bins: int, training: bool) -> None:
    """Raise a clear error for input the fused op cannot take (shapes, dtypes, non-finite cut-offs)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a tensor, got {type(x).__name__}")
    if not (x.is_floating_point()):
        raise TypeError(f"input must be a real floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError("input must have shape (batch, 1, samples): one channel of raw audio; "
                         f"got shape {tuple(x.shape)}")
    n_out = x.shape[-1] - kernel_size + 1
    if n_out < 1:
        raise ValueError(f"input has {x.shape[-1]} samples, fewer than the filter length "
                         f"{kernel_size}")
    if pool_bins > n_out:
        raise ValueError(f"pool_bins={pool_bins} exceeds the {n_out} output positions "
                         f"({x.shape[-1]} samples - filter length {kernel_size} + 1)")
    if training and x.shape[0] * n_out < 2:
        raise ValueError("training-mode BatchNorm needs more than one value per channel; got "
                         f"batch {x.shape[0]} x {n_out} output positions")
    for name, p in (("low_hz_", low_hz_), ("band_hz_", band_hz_)):
        if not p.is_floating_point():
            raise TypeError(f"{name} must be a real floating-point tensor, got {p.dtype}")
        checkable = not torch.compiler.is_compiling() and p.device.type != "meta"
        if checkable and not bool(torch.isfinite(p).all()):
            raise ValueError(f"{name} contains NaN or Inf: the filter cut-offs are undefined "
                             "(a diverged training step?)")


def fused_sinc_filterbank(x: Tensor, low_hz_: Tensor, band_hz_: Tensor,
                          weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                          running_mean: Optional[Tensor] = None,
                          running_var: Optional[Tensor] = None, *, kernel_size: int,
                          sample_rate: float, pool_bins: int, min_low_hz: float = 50.0,
                          min_band_hz: float = 50.0, training: bool = True,
                          momentum: float = 0.1, eps: float = 1e-5, backend: str = "auto",
                          precision: Optional[str] = None,
                          raise_on_nonfinite: bool = False) -> Tensor:
    """Functional form of :class:`sincfb.FusedSincFilterbank`: pooled output (B, K, pool_bins).

    ``training=True`` normalises with batch statistics and, when running buffers are given,
    updates them in place like ``BatchNorm1d`` with ``momentum``; ``training=False`` uses the
    running buffers (which must then be given). ``weight`` and ``bias`` (K,) are BatchNorm's
    affine parameters; None stands for gamma 1 and beta 0 (``BatchNorm1d(affine=False)``).
    ``backend`` is a registered name or 'auto'; ``precision`` is 'ieee', 'tf32' or 'bf16'
    (default: :func:`default_precision`).

    NaN and Inf propagate as in the composite: the outputs that ``Sequential(SincConv,
    BatchNorm1d, ReLU, AdaptiveAvgPool1d)`` makes non-finite are non-finite here too, and a batch
    whose statistics are non-finite leaves the running buffers unchanged (BatchNorm1d would
    fold the NaN into them). ``raise_on_nonfinite=True`` raises ``FloatingPointError`` instead,
    before any buffer is touched, when the output or (training) the batch statistics hold a NaN
    or Inf; the check waits for the device, so it costs a synchronisation per call.
    """
    out, _, _ = filterbank_step(x, low_hz_, band_hz_, weight, bias, running_mean, running_var,
                             kernel_size=kernel_size, sample_rate=sample_rate,
                             pool_bins=pool_bins, min_low_hz=min_low_hz,
                             min_band_hz=min_band_hz, training=training, momentum=momentum,
                             eps=eps, backend=backend, precision=precision,
                             raise_on_nonfinite=raise_on_nonfinite)
    return out


def filterbank_step(x, low_hz_, band_hz_, weight, bias, running_mean, running_var, *,
                    kernel_size, sample_rate, pool_bins, min_low_hz, min_band_hz, training,
                    momentum, eps, backend, precision, raise_on_nonfinite
                    ) -> tuple[Tensor, Optional[Tensor], str]:
    """:func:`fused_sinc_filterbank`, also returning whether the running buffers took the batch
    (a 0-dim bool tensor: False for a batch with non-finite statistics; None when there was no
    update to make: eval mode, or no buffers) and the backend that ran ('export' when an exporter
    traced :func:`sincfb.lowering.eval_filterbank` instead). The module counts
    ``num_batches_tracked`` by the first and shows the second in its ``repr``."""
    kernel_size = odd_kernel_size(kernel_size)
    validate_inputs(x, low_hz_, band_hz_, kernel_size, pool_bins, training)
    if not training and (running_mean is None or running_var is None):
        raise ValueError("eval mode needs running_mean and running_var")
    precision = precision or default_precision(x.device.type)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not training and torch.compiler.is_exporting():
        # torch.export keeps a custom op opaque and ONNX cannot translate it; in eval mode it is
        # a folded conv1d, ReLU and pool: trace those. Before resolve_backend, whose first call
        # builds and self-tests the C++ kernels, which cannot run on an exporter's fake tensors.
        out = eval_filterbank(x, low_hz_, band_hz_, weight, bias, running_mean, running_var,
                              kernel_size=kernel_size, sample_rate=float(sample_rate),
                              pool_bins=pool_bins, min_low_hz=float(min_low_hz),
                              min_band_hz=float(min_band_hz), eps=eps)
        return out, None, "export"
    # Under torch.compile the shape may be symbolic: 'auto' then follows its static rule.
    problem = None if torch.compiler.is_compiling() else Problem(
        x.shape[0], x.shape[-1], low_hz_.shape[0], kernel_size, pool_bins,
        str(x.dtype).removeprefix("torch."), training)
    backend = resolve_backend(backend, x.device.type, kernel_size, problem)
    # Without a gradient to compute (inference, or nothing requires one) the backward's saved
    # data (mask bits, bin statistics: B K (N_out / 8 + 8 P) bytes) need not be made
    wants_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, low_hz_, band_hz_, weight, bias))
    out, mean, var, _, _ = torch.ops.sincfb.filterbank(*OpInputs(
        x=x.contiguous(), low_hz_=low_hz_, band_hz_=band_hz_, weight=weight, bias=bias,
        running_mean=running_mean, running_var=running_var, kernel_size=kernel_size,
        sample_rate=float(sample_rate), min_low_hz=float(min_low_hz),
        min_band_hz=float(min_band_hz), pool_bins=pool_bins, training=training, eps=eps,
        backend=backend, precision=precision, keep_saved=wants_grad))
    if raise_on_nonfinite:
        check_finite(out, mean, var, training, x=x, weight=weight, bias=bias,
                     running_mean=running_mean, running_var=running_var)
    if not (training and running_mean is not None):
        return out, None, backend
    accepted = _update_running_stats(running_mean, running_var, mean, var,
                                     x.shape[0] * (x.shape[-1] - kernel_size + 1), momentum)
    return out, accepted, backend


def _update_running_stats(running_mean, running_var, mean, var, count, momentum) -> Tensor:
    """BatchNorm1d's update (exponential average with the unbiased batch variance), unless a
    batch statistic is NaN or Inf: then both buffers keep their values. Returns that verdict as
    a 0-dim bool tensor; ``torch.where`` instead of a branch, so it neither waits for the device
    nor breaks a ``torch.compile`` graph."""
    with torch.no_grad():
        accepted = torch.isfinite(mean).all() & torch.isfinite(var).all()
        new_mean = running_mean.mul(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        unbiased = var.to(running_var.dtype) * (count / (count - 1))
        new_var = running_var.mul(1 - momentum).add_(unbiased, alpha=momentum)
        running_mean.copy_(torch.where(accepted, new_mean, running_mean))
        running_var.copy_(torch.where(accepted, new_var, running_var))
    return accepted


def _nonfinite_summary(name: str, t: Optional[Tensor], per: str) -> Optional[str]:
    """'name: n non-finite (per [i, j, ...])' for a tensor holding NaN or Inf, else None."""
    if t is None:
        return None
    bad = ~torch.isfinite(t.detach())
    if not bool(bad.any()):
        return None
    where = bad.flatten(1).any(1) if bad.dim() > 1 else bad
    indices = where.nonzero().flatten().tolist()
    shown = ", ".join(map(str, indices[:8])) + (", ..." if len(indices) > 8 else "")
    return f"{name}: {int(bad.sum())} non-finite ({per} {shown})"


def check_finite(out: Tensor, mean: Tensor, var: Tensor, training: bool, **sources) -> None:
    """Raise ``FloatingPointError`` when ``out`` or, in training, the batch statistics hold a NaN
    or Inf, naming the inputs that hold one (``sources``: x and the BatchNorm tensors)."""
    if out.device.type == "meta":
        return
    stats = _nonfinite_summary("batch statistics", torch.stack([mean, var], 1), "channels") \
        if training else None
    result = _nonfinite_summary("output", out, "clips")
    if stats is None and result is None:
        return
    found = [_nonfinite_summary(name, t, "clips" if name == "x" else "channels")
             for name, t in sources.items()]
    found = [s for s in found if s] or ["no NaN or Inf in the input or the BatchNorm tensors "
                                        "(an overflow?)"]
    kept = ("; running statistics left unchanged"
            if training and sources.get("running_mean") is not None else "")
    raise FloatingPointError(
        "sincfb: the fused filterbank met NaN or Inf (raise_on_nonfinite=True): "
        + "; ".join(s for s in (result, stats) if s) + ". Found in " + "; ".join(found) + kept)
