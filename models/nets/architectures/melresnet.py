"""ResNet-18 on a log-Mel spectrogram: the fixed-front-end baseline of the paper's Table 1."""
from __future__ import annotations

from typing import Optional

import torch
import torchaudio
from torch import nn

from ..common import AudioClassifier, check_positive_int, check_sample_rate
from ..registry import register_model
from ..trunk import IMAGENET_WIDTH, BackboneWeights, ResNetTrunk, check_image_size, trunk_sizes

__all__ = ["MelResNet"]


def _sizes(size: str, table) -> dict:
    """As many mel bands and frames as the sinc ResNets' image has filters and bins."""
    # the compact clip is too short for a 1024-point STFT of 64 frames
    return {"n_mels": table["num_filters"], "frames": table["pool_bins"],
            "n_fft": 256 if size == "compact" else 1024, "hidden": table["hidden"],
            **trunk_sizes(table)}


@register_model(_sizes, summary=(("Mel ResNet-18 (SPP head)", {"spp": True}),
                                 ("Mel ResNet-18 (global pool)", {"spp": False})), order=2)
class MelResNet(AudioClassifier):
    """ResNet-18 on a log-Mel spectrogram of the clip, sized like MS-SincResNet's learned image.

    ``layerNorm`` over the clip (the same input normalisation as MS-SincResNet, so the comparison
    is about the front-end alone) -> ``mel`` (torchaudio ``MelSpectrogram``, power 2, centred
    frames, hop ``clip_samples // frames``) -> the central ``frames`` frames -> ``to_db``
    (``AmplitudeToDB``, ``top_db`` per clip) -> ``norm`` (``BatchNorm2d(1)``: the trunk sees
    normalised values, as it does after the sinc banks' BatchNorm) -> the single channel
    replicated to 3 -> ``resnet`` (:class:`ResNetTrunk`, same heads as MS-SincResNet).

    The channel is replicated rather than conv1 adapted so that the trunk stays exactly
    torchvision's ResNet-18 and 'imagenet' weights load unchanged (replication is equivalent to a
    one-channel conv1 whose kernel is the sum of the three).

    Defaults: 160 mel bands x 1024 frames for a 3-s clip at 16 kHz (hop 46 samples, 1044 centred
    frames of which the central 1024 are kept), the same 160x1024 image as MS-SincResNet's.
    """

    def __init__(self, num_classes: int, n_mels: int = 160, frames: int = 1024,
                 sample_rate: float = 16000, clip_samples: int = 48000, n_fft: int = 1024,
                 hop_length: Optional[int] = None, spp: bool = True,
                 backbone_weights: BackboneWeights = None, hidden: int = 512,
                 dropout: float = 0.5, top_db: Optional[float] = 80.0, f_min: float = 0.0,
                 f_max: Optional[float] = None, trunk_width: int = IMAGENET_WIDTH):
        super().__init__()
        for name, value in (("num_classes", num_classes), ("n_mels", n_mels), ("frames", frames),
                            ("clip_samples", clip_samples), ("n_fft", n_fft)):
            check_positive_int(name, value)
        check_sample_rate(sample_rate)
        hop = _hop_length(clip_samples, frames, hop_length)
        centred = 1 + clip_samples // hop          # frame count of a centred STFT
        if frames > centred:
            raise ValueError(f"frames={frames} exceeds the {centred} frames a hop of {hop} samples "
                             f"gives on {clip_samples} samples; lower hop_length or frames")
        if n_fft // 2 >= clip_samples:
            raise ValueError(f"n_fft={n_fft} is too long for clips of {clip_samples} samples "
                             "(centring pads n_fft // 2 by reflection on each side)")
        if n_mels > n_fft // 2 + 1:
            raise ValueError(f"n_mels={n_mels} mel bands need at least as many STFT bins, but "
                             f"n_fft={n_fft} gives {n_fft // 2 + 1}; raise n_fft")
        check_image_size(n_mels, frames, spp, "n_mels", "frames")
        self.num_classes, self.n_mels, self.frames = num_classes, n_mels, frames
        self.sample_rate, self.clip_samples, self.hop_length = sample_rate, clip_samples, hop
        self.spp = bool(spp)
        self.first_frame = (centred - frames) // 2
        self.layerNorm = nn.LayerNorm(clip_samples)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=n_fft, hop_length=hop, f_min=f_min, f_max=f_max, n_mels=n_mels,
            power=2.0, center=True)
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db)
        self.norm = nn.BatchNorm2d(1)
        self.resnet = ResNetTrunk(num_classes, spp, hidden, dropout, trunk_width)
        self.resnet.load_backbone(backbone_weights)

    def parts(self) -> dict[str, list[nn.Module]]:
        """Front-end: the input LayerNorm, the log-mel spectrogram and its BatchNorm."""
        return {"front-end": [self.layerNorm, self.mel, self.to_db, self.norm],
                **self.resnet.parts()}

    @property
    def feature_dim(self) -> int:
        """Length of :meth:`embed`'s output: 2560 with SPP, 512 without (at trunk width 64)."""
        return self.resnet.feature_dim

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Clips -> log-Mel spectrogram in dB, (B, 1, n_mels, frames), before normalisation."""
        x = self.layerNorm(self.as_clips(x))
        # The STFT and the logarithm are cheap and precision-sensitive: keep them out of autocast.
        with torch.autocast(x.device.type, enabled=False):
            power = self.mel(x)[..., self.first_frame:self.first_frame + self.frames]
            return self.to_db(power)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """Clips -> the (B, 3, n_mels, frames) image the trunk sees (normalised log-Mel, the one
        channel replicated three times)."""
        return self.norm(self.log_mel(x)).expand(-1, 3, -1, -1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Clips -> pooled conv5 feature: (B, 2560) with SPP (before the hidden layer), (B, 512)
        without."""
        return self.resnet.pool(self.resnet.features(self.representation(x)))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features from :meth:`embed` -> logits (B, num_classes)."""
        return self.resnet.classify(features)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, n_mels={self.n_mels}, frames={self.frames}, "
                f"hop_length={self.hop_length}, clip_samples={self.clip_samples}, spp={self.spp}")


def _hop_length(clip_samples: int, frames: int, hop_length: Optional[int]) -> int:
    """The STFT hop: given, or the largest that still yields ``frames`` centred frames."""
    if hop_length is not None:
        return check_positive_int("hop_length", hop_length)
    if frames > clip_samples:
        raise ValueError(f"frames={frames} exceeds clip_samples={clip_samples}: even a hop of one "
                         "sample cannot give that many distinct frames")
    return clip_samples // frames
