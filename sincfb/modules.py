"""``SincConv`` (SincNet's layer) and ``FusedSincFilterbank`` (the fused front-end bank)."""
from __future__ import annotations

import copy
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .backends import PRECISIONS, get_backend, resolve_backend, unavailable_backends
from .backends.calibration import last_decision
from .filters import (check_filter_config, cutoff_frequencies, mel_init, odd_kernel_size,
                      sinc_filters)
from .ops import filterbank_step

__all__ = ["SincConv", "FusedSincFilterbank", "filterbanks", "sinc_layers"]

_PADDING_MODES = ("valid", "same", "causal")


class SincConv(nn.Module):
    """Learnable band-pass sinc convolution, a drop-in for SincNet's ``SincConv_fast``.

    Same constructor and parameters (``low_hz_``, ``band_hz_`` of shape (K, 1), mel-initialised),
    same filters and output: ``conv1d`` of a (B, 1, N) input with K filters of odd length (an even
    ``kernel_size`` is bumped by one). ``padding`` is an int like ``conv1d``'s or one of 'valid',
    'same' (output length ceil(N / stride)... for stride 1 exactly N) and 'causal' (all padding on the
    left, so output n sees only inputs up to n).
    """

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: float = 16000,
                 in_channels: int = 1, stride: int = 1, padding: Union[int, str] = 0,
                 dilation: int = 1, bias: bool = False, groups: int = 1,
                 min_low_hz: float = 50, min_band_hz: float = 50):
        super().__init__()
        if in_channels != 1:
            raise ValueError(f"SincConv only supports one input channel, got in_channels={in_channels}")
        if bias:
            raise ValueError("SincConv does not support bias")
        if groups != 1:
            raise ValueError("SincConv does not support groups")
        if isinstance(padding, str) and padding not in _PADDING_MODES:
            raise ValueError(f"padding must be an int or one of {_PADDING_MODES}, got {padding!r}")
        if stride < 1 or dilation < 1:
            raise ValueError(f"stride and dilation must be >= 1, got {stride}, {dilation}")
        check_filter_config(out_channels, kernel_size, sample_rate, min_low_hz, min_band_hz)
        self.out_channels = out_channels
        self.kernel_size = odd_kernel_size(kernel_size)
        self.sample_rate = sample_rate
        self.min_low_hz = min_low_hz
        self.min_band_hz = min_band_hz
        self.in_channels, self.stride, self.padding, self.dilation = 1, stride, padding, dilation
        low, band = mel_init(out_channels, sample_rate, min_low_hz, min_band_hz)
        self.low_hz_ = nn.Parameter(low)
        self.band_hz_ = nn.Parameter(band)

    def filters(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The current filters, (K, L), differentiable with respect to the cut-off parameters."""
        return sinc_filters(self.low_hz_, self.band_hz_, self.kernel_size, self.sample_rate,
                            self.min_low_hz, self.min_band_hz, dtype=dtype)

    def cutoffs_hz(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Low and high cut-off frequencies in Hz, each of shape (K,), detached."""
        low, high = cutoff_frequencies(self.low_hz_.detach(), self.band_hz_.detach(),
                                       self.sample_rate, self.min_low_hz, self.min_band_hz)
        return low[:, 0], high[:, 0]

    def initial_cutoffs_hz(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The low and high cut-offs (Hz, float64, (K,) each) that this layer's mel
        initialisation gives, whatever it has learned since: the reference a plot of the learned
        filterbank compares with."""
        low_, band_ = mel_init(self.out_channels, self.sample_rate, self.min_low_hz,
                               self.min_band_hz, dtype=torch.float64)
        low, high = cutoff_frequencies(low_, band_, self.sample_rate, self.min_low_hz,
                                       self.min_band_hz)
        return low[:, 0], high[:, 0]

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        span = (self.kernel_size - 1) * self.dilation
        if self.padding == "valid":
            return x, 0
        if self.padding == "same":
            return F.pad(x, (span // 2, span - span // 2)), 0
        if self.padding == "causal":
            return F.pad(x, (span, 0)), 0
        return x, self.padding

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) raw audio -> (B, K, N_out) band-pass responses."""
        if waveforms.dim() != 3 or waveforms.shape[1] != 1:
            raise ValueError("input must have shape (batch, 1, samples), got "
                             f"{tuple(waveforms.shape)}")
        if not waveforms.is_floating_point():
            raise TypeError(f"input must be floating point, got {waveforms.dtype}")
        x, padding = self._pad(waveforms)
        if x.shape[-1] + 2 * padding < (self.kernel_size - 1) * self.dilation + 1:
            raise ValueError(f"input of {waveforms.shape[-1]} samples is shorter than the "
                             f"filter span {(self.kernel_size - 1) * self.dilation + 1}")
        weight = self.filters(dtype=x.dtype).unsqueeze(1)
        return F.conv1d(x, weight, stride=self.stride, padding=padding, dilation=self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.out_channels}, kernel_size={self.kernel_size}, "
                f"sample_rate={self.sample_rate}, stride={self.stride}, padding={self.padding!r}, "
                f"dilation={self.dilation}, min_low_hz={self.min_low_hz}, "
                f"min_band_hz={self.min_band_hz}")


class FusedSincFilterbank(nn.Module):
    """Sinc conv -> BatchNorm1d -> ReLU -> AdaptiveAvgPool1d as one fused, hand-differentiated op.

    A drop-in for ``Sequential(SincConv_fast, BatchNorm1d, ReLU, AdaptiveAvgPool1d(pool_bins))``:
    (B, 1, N) raw audio -> (B, K, pool_bins). Its state dict has that Sequential's keys
    (``0.low_hz_``, ``0.band_hz_``, ``1.weight``, ``1.bias``, ``1.running_mean``,
    ``1.running_var``, ``1.num_batches_tracked``), because its parameters live in a real
    :class:`SincConv` (submodule ``0``) and a real ``BatchNorm1d`` (submodule ``1``).

    Args:
        out_channels: number of filters K.
        kernel_size: filter length L (even values are bumped to odd).
        sample_rate: audio sample rate in Hz.
        pool_bins: output length P of the adaptive average pooling.
        min_low_hz, min_band_hz: floors of the low cut-off and of the bandwidth, in Hz.
        backend: 'auto' (fastest available for the device and filter length), or a registered
            name: 'reference' and those listed by ``sincfb.available_backends()``.
        precision: 'ieee' (fp32), 'tf32' or 'bf16' operands with fp32 accumulation; default
            'bf16' on CUDA and 'ieee' on CPU. The reference backend ignores it.
        eps, momentum, track_running_stats: as in ``BatchNorm1d``.
        raise_on_nonfinite: what a NaN or Inf does. False (default): it propagates exactly as in
            the composite (the outputs the composite makes non-finite are non-finite), and a
            training batch with non-finite statistics is left out of the running statistics:
            ``running_mean``, ``running_var`` and ``num_batches_tracked`` keep their values.
            True: ``FloatingPointError`` naming the culprits, before any buffer changes (costs
            one device synchronisation per call).
    """

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: float = 16000,
                 pool_bins: int = 1024, min_low_hz: float = 50, min_band_hz: float = 50,
                 backend: str = "auto", precision: Optional[str] = None, eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, track_running_stats: bool = True,
                 raise_on_nonfinite: bool = False):
        super().__init__()
        if not isinstance(pool_bins, int) or pool_bins < 1:
            raise ValueError(f"pool_bins must be a positive integer, got {pool_bins!r}")
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or None, got {precision!r}")
        if backend != "auto":
            get_backend(backend)  # fail early on a misspelt name
        self.add_module("0", SincConv(out_channels, kernel_size, sample_rate,
                                      min_low_hz=min_low_hz, min_band_hz=min_band_hz))
        self.add_module("1", nn.BatchNorm1d(out_channels, eps=eps, momentum=momentum,
                                            track_running_stats=track_running_stats))
        self.pool_bins = pool_bins
        self.backend = backend
        self.precision = precision
        self.raise_on_nonfinite = raise_on_nonfinite
        self._last_backend: Optional[str] = None
        self._last_device: Optional[str] = None

    @property
    def sinc(self) -> SincConv:
        """The :class:`SincConv` holding ``low_hz_`` and ``band_hz_`` (state-dict prefix ``0.``)."""
        return self._modules["0"]

    @property
    def batch_norm(self) -> nn.BatchNorm1d:
        """The ``BatchNorm1d`` holding the affine parameters and running statistics (prefix ``1.``)."""
        return self._modules["1"]

    @property
    def out_channels(self) -> int:
        return self.sinc.out_channels

    @property
    def kernel_size(self) -> int:
        return self.sinc.kernel_size

    @property
    def sample_rate(self) -> float:
        return self.sinc.sample_rate

    def set_backend(self, backend: str) -> "FusedSincFilterbank":
        """Run on ``backend`` ('auto' or a registered name, checked now) from the next call on;
        returns the layer. A checkpoint trained with 'triton' on a GPU runs on a CPU after
        ``set_backend('auto')``."""
        if backend != "auto":
            get_backend(backend)
        self.backend = backend
        return self

    def resolved_backend(self, device_type: str = "cpu") -> str:
        """The backend this layer runs on tensors of ``device_type`` ('auto' resolved)."""
        return resolve_backend(self.backend, device_type, self.kernel_size)

    def output_length(self, num_samples: int) -> int:
        """Length of the full-resolution convolution for an input of ``num_samples`` samples."""
        return num_samples - self.kernel_size + 1

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) raw audio -> (B, K, pool_bins) pooled, normalised, rectified band energies."""
        bn, sinc = self.batch_norm, self.sinc
        update = self.training and bn.track_running_stats
        momentum = self._momentum() if update else 0.0
        use_batch_stats = self.training or not bn.track_running_stats
        track = not self.training or bn.track_running_stats
        out, accepted, self._last_backend = filterbank_step(
            waveforms, sinc.low_hz_, sinc.band_hz_, bn.weight, bn.bias,
            bn.running_mean if track else None, bn.running_var if track else None,
            kernel_size=self.kernel_size, sample_rate=self.sample_rate, pool_bins=self.pool_bins,
            min_low_hz=sinc.min_low_hz, min_band_hz=sinc.min_band_hz, training=use_batch_stats,
            momentum=momentum, eps=bn.eps, backend=self.backend, precision=self.precision,
            raise_on_nonfinite=self.raise_on_nonfinite)
        self._last_device = waveforms.device.type
        if update:   # a batch left out of the running statistics is not counted either
            bn.num_batches_tracked.add_(accepted)
        return out

    def _momentum(self) -> float:
        """BatchNorm1d's averaging factor for this batch; momentum=None is the cumulative average
        over the batches taken so far, this one included."""
        bn = self.batch_norm
        if bn.momentum is not None:
            return bn.momentum
        if bn.num_batches_tracked.device.type == "meta":
            return 0.0    # no values on the meta device, only shapes: any factor will do
        return 1.0 / (float(bn.num_batches_tracked) + 1)

    def to_sequential(self) -> nn.Sequential:
        """An equivalent ``Sequential(SincConv, BatchNorm1d, ReLU, AdaptiveAvgPool1d)`` (deep copies)."""
        return nn.Sequential(copy.deepcopy(self.sinc), copy.deepcopy(self.batch_norm), nn.ReLU(),
                             nn.AdaptiveAvgPool1d(self.pool_bins))

    @classmethod
    def from_sequential(cls, sequential: nn.Sequential, **kwargs) -> "FusedSincFilterbank":
        """Build from ``Sequential(SincConv_fast-like, BatchNorm1d, ReLU, AdaptiveAvgPool1d)``.

        The sinc layer may be SincNet's ``SincConv_fast`` or :class:`SincConv`: anything with
        ``out_channels``, ``kernel_size``, ``sample_rate``, ``low_hz_`` and ``band_hz_``.
        ``kwargs`` (backend, precision) go to the constructor. The layer gets the source's dtype
        and device, and its parameters and statistics are exact copies of the source's.
        """
        layers = list(sequential)
        if (len(layers) != 4 or not isinstance(layers[1], nn.BatchNorm1d)
                or not isinstance(layers[2], nn.ReLU)
                or not isinstance(layers[3], nn.AdaptiveAvgPool1d)):
            raise TypeError("expected Sequential(SincConv, BatchNorm1d, ReLU, AdaptiveAvgPool1d), "
                            f"got {[type(m).__name__ for m in layers]}")
        sinc, bn, _, pool = layers
        bins = pool.output_size if isinstance(pool.output_size, int) else pool.output_size[0]
        layer = cls(sinc.out_channels, sinc.kernel_size, sinc.sample_rate, bins,
                    getattr(sinc, "min_low_hz", 50), getattr(sinc, "min_band_hz", 50),
                    eps=bn.eps, momentum=bn.momentum,
                    track_running_stats=bn.track_running_stats, **kwargs)
        # Move to the source's dtype and device *before* copying the weights: loading a float64
        # state dict into a float32 layer would round the cut-offs (by up to ~2e-4 Hz).
        layer.to(sinc.low_hz_.device, sinc.low_hz_.dtype)
        layer.load_state_dict(sequential.state_dict())
        return layer

    def extra_repr(self) -> str:
        backend = repr(self.backend)
        if self.backend == "auto" and self._last_backend:
            skipped = "".join(f"; skipped {name!r}: {reason[:120]}"
                              for name, reason in unavailable_backends(self._last_device,
                                                                     self.kernel_size).items())
            decision = last_decision(self._last_device, self.kernel_size)
            how = f", {decision.describe()}" if decision else ""
            backend += f" (last ran: {self._last_backend!r}{how}{skipped})"
        return (f"pool_bins={self.pool_bins}, backend={backend}, "
                f"precision={self.precision or 'default'!r}"
                + (", raise_on_nonfinite=True" if self.raise_on_nonfinite else ""))


def filterbanks(model: nn.Module):
    """``(name, FusedSincFilterbank)`` of every fused filterbank inside ``model`` (itself
    included), in module order: for setting their backend or reading their filters without
    knowing how a model names them."""
    for name, module in model.named_modules():
        if isinstance(module, FusedSincFilterbank):
            yield name, module


def sinc_layers(model: nn.Module):
    """``(name, SincConv)`` of every sinc layer inside ``model``, in module order. The layer of a
    :class:`FusedSincFilterbank` is named after the bank (``sincNet1``, not ``sincNet1.0``)."""
    owners = {id(bank.sinc): name for name, bank in filterbanks(model)}
    for name, module in model.named_modules():
        if isinstance(module, SincConv):
            yield owners.get(id(module), name) or "sinc", module
