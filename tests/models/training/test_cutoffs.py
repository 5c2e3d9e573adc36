"""The sinc cut-offs' own treatment (models.cutoffs): groups, freezing, the shift they record, and
that the laptop configuration's cut-offs move under training by more than weight decay would."""
import math

import numpy as np
import pytest
import torch

from models.training.config import TrainConfig
from models.training.cutoffs import cutoff_parameters, cutoff_shift, parameter_groups, shift_summary
from models.data.cache import Corpus
from models.nets.catalog import SIZE_SETTINGS, build_model
from models.training.trainer import Trainer

SEED = 11
RATE = 16000
CLIP = 4000                        # a quarter of a second: tiny shapes, fast tests
TINY = {"num_filters": 8, "kernel_sizes": (31, 63, 127), "pool_bins": 16, "spp": False,
        "backend": "reference", "clip_samples": CLIP, "sample_rate": RATE}


def tiny_model(num_classes=2):
    torch.manual_seed(SEED)
    return build_model("mssincresnet", num_classes, **TINY)


def mel(hz):
    """The mel scale SincNet initialises on (O'Shaughnessy's formula), written out here."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def band_corpus(songs_per_class=6, seconds=1.0, seed=SEED) -> Corpus:
    """Two classes of white noise that differ in one band only: class 1 adds a 1.5-2.5 kHz band
    (noise band-passed by zeroing its spectrum elsewhere) at four times the noise's level."""
    print(f"band corpus seed {seed}")
    rng = np.random.default_rng(seed)
    length = int(seconds * RATE)
    freqs = np.fft.rfftfreq(length, 1.0 / RATE)
    tracks, labels = [], []
    for label in (0, 1):
        for _ in range(songs_per_class):
            track = 0.1 * rng.standard_normal(length)
            if label:
                spectrum = np.fft.rfft(rng.standard_normal(length))
                spectrum[(freqs < 1500) | (freqs > 2500)] = 0
                band = np.fft.irfft(spectrum, length)
                track += 0.4 * band / band.std()
            tracks.append(track.astype(np.float32))
            labels.append(label)
    lengths = np.array([len(t) for t in tracks], dtype=np.int64)
    return Corpus(name="bands", classes=["plain", "band"],
                  names=[f"{i}.wav" for i in range(len(tracks))], labels=np.array(labels),
                  splits=[None] * len(tracks), audio=np.concatenate(tracks),
                  offsets=np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths=lengths,
                  sample_rate=RATE)


def laptop_config(**overrides) -> TrainConfig:
    """The laptop configuration's cut-off treatment and rates, on the tiny model and clips."""
    laptop = SIZE_SETTINGS["laptop"]
    kwargs = {k: v for k, v in TINY.items() if k not in ("clip_samples", "sample_rate", "spp")}
    values = dict(model="mssincresnet", model_kwargs=kwargs, sample_rate=RATE,
                  clip_seconds=CLIP / RATE, hop_seconds=0.125, epochs=1, batch_size=8,
                  clips_per_song=4, lr=laptop["lr"], warmup_epochs=0, cutoffs=laptop["cutoffs"],
                  spp=False, device="cpu", seed=SEED, backbone="random", size="laptop")
    values.update(overrides)
    return TrainConfig(**values)


def train(config, tmp_path, corpus=None):
    corpus = corpus or band_corpus()
    everything = np.arange(len(corpus))
    splits = {"train": everything, "valid": everything[:0], "test": everything[:0]}
    trainer = Trainer(config, corpus, splits, tmp_path, progress=False, log=lambda *_: None)
    before = [p.detach().clone().double() for p in cutoff_parameters(trainer.model)]
    trainer.fit()
    return trainer, before


def steps_taken(trainer) -> int:
    """SGD steps of the run: every epoch's clips in batches (the last one may be short)."""
    return trainer.config.epochs * math.ceil(len(trainer.dataset) / trainer.config.batch_size)


def decay_only_factor(steps, lr, weight_decay, momentum, nesterov=True) -> float:
    """The factor SGD with weight decay alone (zero gradient) multiplies a parameter by after
    ``steps`` steps: the scalar recurrence of PyTorch's documented SGD algorithm, in float64."""
    p, buf = 1.0, None
    for _ in range(steps):
        g = weight_decay * p
        buf = g if buf is None else momentum * buf + g
        p -= lr * ((g + momentum * buf) if nesterov else buf)
    return p


def test_decay_is_one_group_learn_has_its_own_and_freeze_none():
    model = tiny_model()
    cut = {id(p) for p in cutoff_parameters(model)}
    assert len(cut) == 6                                   # low_hz_ and band_hz_ of three banks
    (only,) = parameter_groups(model, "decay")
    assert len(only["params"]) == len(list(model.parameters())) and "weight_decay" not in only
    rest, own = parameter_groups(model, "learn", 123.0)
    assert {id(p) for p in own["params"]} == cut and own["weight_decay"] == 0.0
    assert own["lr_scale"] == 123.0 and rest["lr_scale"] == 1.0
    assert not cut & {id(p) for p in rest["params"]}
    (kept,) = parameter_groups(model, "freeze")
    assert not cut & {id(p) for p in kept["params"]}
    assert not any(p.requires_grad for p in cutoff_parameters(model))
    with pytest.raises(ValueError, match="cutoffs must be one of"):
        parameter_groups(model, "thaw")


def test_state_dict_keys_do_not_change():
    """The authors' checkpoint and the fused op read low_hz_ and band_hz_ by these names."""
    model = tiny_model()
    keys = set(model.state_dict())
    parameter_groups(model, "learn", 10.0)
    parameter_groups(model, "freeze")
    assert set(model.state_dict()) == keys
    assert {"sincNet1.0.low_hz_", "sincNet3.0.band_hz_"} <= keys


def test_shift_against_a_hand_computed_move():
    """Move every low cut-off up by 10 Hz and the band down by 10 Hz (the high cut-off stays):
    the 2K edges move by 10 Hz half of the time, and in mel by the formula written out here."""
    model = tiny_model()
    start = {name: [t.numpy().astype(np.float64) for t in layer.sinc.initial_cutoffs_hz()]
             for name, layer in zip(("sincNet1", "sincNet2", "sincNet3"), model.banks)}
    assert max(cutoff_shift(model).values()) < 1e-3        # fresh: at the mel initialisation
    with torch.no_grad():
        for bank in model.banks:
            bank.sinc.low_hz_ += 10.0
            bank.sinc.band_hz_ -= 10.0
    row = cutoff_shift(model)
    for name, (low, _) in start.items():
        mel_moves = np.concatenate([mel(low + 10.0) - mel(low), np.zeros_like(low)])
        assert row[f"cutoffs_{name}_mean_hz"] == pytest.approx(5.0, abs=2e-3)
        assert row[f"cutoffs_{name}_max_hz"] == pytest.approx(10.0, abs=2e-3)
        assert row[f"cutoffs_{name}_mean_mel"] == pytest.approx(mel_moves.mean(), abs=2e-3)
        assert row[f"cutoffs_{name}_max_mel"] == pytest.approx(mel_moves.max(), abs=2e-3)
    assert shift_summary(row)["sincNet2"]["max_hz"] == row["cutoffs_sincNet2_max_hz"]


def test_the_published_treatment_moves_cutoffs_by_the_weight_decay_factor(tmp_path):
    """The issue's finding, kept as a regression test of the recipes' behaviour: with one SGD
    group the cut-offs end where weight decay alone puts them; the gradient's share is small."""
    config = laptop_config(cutoffs="decay", lr=0.05, weight_decay=1e-2)
    trainer, before = train(config, tmp_path)
    factor = decay_only_factor(steps_taken(trainer), config.lr, config.weight_decay,
                               config.momentum)
    print(f"{steps_taken(trainer)} steps, weight-decay factor {factor:.6f}")
    for p, p0 in zip(cutoff_parameters(trainer.model), before):
        decay_move = (1 - factor) * p0.abs()
        off = (p.detach().double() - factor * p0).abs()
        assert (off <= 0.2 * decay_move + 1e-3).all(), (off / decay_move).max()


def test_laptop_cutoffs_move_more_than_weight_decay_would(tmp_path):
    """The laptop treatment (own group, no weight decay, scaled rate): the cut-offs move by far
    more than the recipes' weight decay alone would have moved them in the same steps."""
    config = laptop_config()
    assert config.cutoffs == "learn"
    trainer, before = train(config, tmp_path)
    factor = decay_only_factor(steps_taken(trainer), config.lr, config.weight_decay,
                               config.momentum)
    moved = torch.cat([(p.detach().double() - p0).abs().flatten()
                       for p, p0 in zip(cutoff_parameters(trainer.model), before)])
    decay = torch.cat([(1 - factor) * p0.abs().flatten() for p0 in before])
    print(f"{steps_taken(trainer)} steps: cut-offs moved {moved.mean():.4g} Hz on average (max "
          f"{moved.max():.4g}); weight decay alone: {decay.mean():.4g} (max {decay.max():.4g})")
    assert moved.mean() > 10 * decay.mean()
    row = trainer.history[-1]
    for bank in ("sincNet1", "sincNet2", "sincNet3"):
        assert row[f"cutoffs_{bank}_max_hz"] > 0.0 and row[f"cutoffs_{bank}_max_mel"] > 0.0
    group = trainer.optimizer.param_groups[-1]
    assert group["lr"] == pytest.approx(config.lr * config.cutoff_lr_scale)
    assert group["weight_decay"] == 0.0


def test_frozen_cutoffs_stay_at_the_mel_initialisation(tmp_path):
    config = laptop_config(cutoffs="freeze")
    trainer, before = train(config, tmp_path)
    for p, p0 in zip(cutoff_parameters(trainer.model), before):
        assert torch.equal(p.detach().double(), p0) and not p.requires_grad
    other = trainer.model.resnet.model.conv1.weight
    assert not torch.equal(other, tiny_model().resnet.model.conv1.weight)   # the rest trained
    row = trainer.history[-1]
    assert all(row[f"cutoffs_{b}_max_hz"] < 1e-3 for b in ("sincNet1", "sincNet2", "sincNet3"))
    # resuming a frozen run keeps them frozen (the optimiser state has no cut-off group)
    resumed = Trainer(laptop_config(cutoffs="freeze", epochs=2), band_corpus(),
                      {"train": np.arange(12), "valid": np.arange(0), "test": np.arange(0)},
                      tmp_path, progress=False, log=lambda *_: None,
                      resume_from=tmp_path / "last.pt")
    resumed.fit()
    for p, p0 in zip(cutoff_parameters(resumed.model), before):
        assert torch.equal(p.detach().double(), p0)


def test_card_and_log_record_the_shift(tmp_path):
    from models.base.logs import read_log_csv

    trainer, _ = train(laptop_config(), tmp_path)
    card = trainer.card(1)
    front = card["front_end"]
    assert front["cutoffs"] == "learn"
    assert front["cutoff_lr_scale"] == trainer.config.cutoff_lr_scale
    row = trainer.history[0]
    assert front["shift"]["sincNet1"]["mean_mel"] == pytest.approx(row["cutoffs_sincNet1_mean_mel"])
    assert card["model"]["size"] == "laptop"
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert "## Sinc cut-offs" in text and "own group, without weight decay" in text
    shown = f"{row['cutoffs_sincNet3_max_hz']:.2f}"
    assert any(line.startswith("| sincNet3 |") and shown in line for line in text.splitlines())
    (logged,) = read_log_csv(tmp_path / "log.csv")
    assert math.isclose(logged["cutoffs_sincNet2_max_mel"], row["cutoffs_sincNet2_max_mel"],
                        rel_tol=1e-5)


def test_filterbank_figure_draws_start_end_and_shift():
    """The figure's cut-off panel names the shift, and its shift panel plots, per filter, the
    mel distance of each edge from the start (here: low edges up 10 Hz, high edges still)."""
    from matplotlib.figure import Figure

    from models.inference.plots import _draw_cutoffs, _draw_shifts

    model = tiny_model()
    layer = model.banks[1].sinc
    low0 = layer.initial_cutoffs_hz()[0].numpy()
    with torch.no_grad():
        layer.low_hz_ += 10.0
        layer.band_hz_ -= 10.0
    top, bottom = Figure().subplots(2)
    _draw_cutoffs(top, "sincNet2", layer)
    assert "moved 5 Hz on average, at most 10 Hz" in top.get_title()
    assert [t.get_text() for t in top.get_legend().get_texts()] == [
        "start: mel initialisation", "end: learned low / high cut-off"]
    _draw_shifts(bottom, layer)
    low_line, high_line = bottom.get_lines()[1:]
    np.testing.assert_allclose(low_line.get_ydata(), mel(low0 + 10.0) - mel(low0), atol=2e-3)
    np.testing.assert_allclose(high_line.get_ydata(), 0.0, atol=2e-3)


def test_resuming_with_another_cutoff_treatment_is_a_clear_error(tmp_path):
    from models.base.datafiles import CheckpointError

    train(laptop_config(cutoffs="learn"), tmp_path)
    corpus = band_corpus()
    splits = {"train": np.arange(len(corpus)), "valid": np.arange(0), "test": np.arange(0)}
    with pytest.raises(CheckpointError, match="saved with cutoffs='learn', not 'freeze'"):
        Trainer(laptop_config(cutoffs="freeze", epochs=2), corpus, splits, tmp_path,
                progress=False, log=lambda *_: None, resume_from=tmp_path / "last.pt")
