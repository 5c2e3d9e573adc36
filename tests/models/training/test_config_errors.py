"""Bad configurations and bad input get clear errors, before any computation."""
import pytest
import torch

from models import MelResNet, MSSincResNet, SincNet, SincResNet, compact_config

MS = compact_config("mssincresnet")
MEL = compact_config("melresnet")
SINCNET = compact_config("sincnet")

MS_CASES = [
    ({"num_classes": 0}, "num_classes must be an integer >= 1"),
    ({"num_classes": 2.5}, "num_classes"),
    ({"kernel_sizes": (31, 63, 9001)}, "9001-tap filter is longer than the clip"),
    ({"kernel_sizes": (31, 63)}, "kernel_sizes must have 3 entries"),
    ({"kernel_sizes": (31, -63, 127)}, "kernel_sizes must be an integer >= 3"),
    ({"kernel_sizes": (31, 64, 127)}, "must be odd"),
    ({"kernel_sizes": 63}, "sequence of integers"),
    ({"pool_bins": 7875}, "pool_bins=7875 exceeds the 7874 output positions"),
    ({"pool_bins": 0}, "pool_bins must be an integer >= 1"),
    ({"num_filters": -4}, "num_filters must be an integer >= 1"),
    ({"num_filters": 32}, r"spatial pyramid pooling needs a conv5 map of at least 2x2.*1x2"),
    ({"pool_bins": 20}, r"spatial pyramid pooling.*use at least 33 num_filters and 33 pool_bins"),
    ({"clip_samples": 0}, "clip_samples must be an integer >= 1"),
    ({"sample_rate": -16000}, "sample_rate must be a positive number"),
    ({"hidden": 0}, "hidden must be an integer >= 1"),
    ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
    ({"backend": "no-such-backend"}, "unknown backend"),
    ({"precision": "fp8"}, "precision must be one of"),
]


@pytest.mark.parametrize("change, message", MS_CASES)
def test_mssincresnet_rejects_bad_configurations(change, message):
    kwargs = {"num_classes": 10, **MS, **change}
    with pytest.raises(ValueError, match=message):
        MSSincResNet(**kwargs)


def test_spp_free_model_accepts_small_images():
    """Without SPP a 1x1 conv5 map is fine: the size check belongs to the pyramid."""
    model = MSSincResNet(3, spp=False, **{**MS, "num_filters": 8, "pool_bins": 16})
    assert model(torch.randn(2, MS["clip_samples"])).shape == (2, 3)


def test_sincresnet_checks_its_single_length():
    with pytest.raises(ValueError, match="kernel_size must be an integer >= 3"):
        SincResNet(10, kernel_size=0, **{k: v for k, v in compact_config("sincresnet").items()
                                          if k != "kernel_size"})
    with pytest.raises(ValueError, match="longer than the clip"):
        SincResNet(10, kernel_size=9001, clip_samples=8000)


@pytest.mark.parametrize("change, message", [
    ({"num_classes": 0}, "num_classes"),
    ({"cnn_len_filt": (127, 5)}, "cnn_len_filt must have 3 entries"),
    ({"cnn_max_pool_len": (3, 0, 3)}, "cnn_max_pool_len must be an integer >= 1"),
    ({"cnn_len_filt": (128, 5, 5)}, "must be odd"),
    ({"clip_samples": 190}, "convolution stage 2: max-pool length 3 exceeds the 1 positions"),
    ({"clip_samples": 180}, "convolution stage 2: a 5-tap filter is longer than its input of 4"),
    ({"clip_samples": 100}, "stage 0: a 127-tap filter is longer than its input of 100 samples"),
    ({"fc_lay": ()}, "fc_lay must not be empty"),
    ({"dropout": -0.1}, "dropout"),
])
def test_sincnet_rejects_bad_configurations(change, message):
    kwargs = {"num_classes": 10, **SINCNET, **change}
    with pytest.raises(ValueError, match=message):
        SincNet(**kwargs)


@pytest.mark.parametrize("change, message", [
    ({"num_classes": 0}, "num_classes"),
    ({"n_mels": 200}, "n_mels=200 mel bands need at least as many STFT bins"),
    ({"frames": 90, "hop_length": 100}, "frames=90 exceeds the 81 frames"),
    ({"frames": 9000}, "frames=9000 exceeds clip_samples=8000"),
    ({"frames": 32}, "spatial pyramid pooling"),
    ({"n_fft": 16384}, "n_fft=16384 is too long"),
])
def test_melresnet_rejects_bad_configurations(change, message):
    kwargs = {"num_classes": 10, **MEL, **change}
    with pytest.raises(ValueError, match=message):
        MelResNet(**kwargs)


@pytest.fixture(scope="module")
def small_models():
    return [MSSincResNet(4, **MS), SincNet(4, **SINCNET), MelResNet(4, **MEL)]


@pytest.mark.parametrize("shape, dtype, error, message", [
    ((2, 1, 7999), torch.float32, ValueError, "expected clips of 8000 samples"),
    ((2, 2, 8000), torch.float32, ValueError, r"\(batch, 1, samples\)"),
    ((2, 1, 1, 8000), torch.float32, ValueError, r"\(batch, samples\)"),
    ((8000,), torch.float32, ValueError, r"\(batch, samples\)"),
    ((2, 8000), torch.int16, TypeError, "floating-point"),
])
def test_forward_rejects_wrong_input(small_models, shape, dtype, error, message):
    x = torch.zeros(shape, dtype=dtype)
    for model in small_models:
        for method in (model, model.representation, model.embed):
            with pytest.raises(error, match=message):
                method(x)
    with pytest.raises(TypeError, match="tensor of raw audio"):
        small_models[0](x.tolist())


def test_a_model_registers_itself_with_its_sizes_and_one_without_sizes_is_refused():
    """A model registered by its decorator alone is built by name, gets its own size function's
    arguments, and one registered without a size function gets no other model's settings."""
    from models import SincNet, build_model, compact_config
    from models.nets import registry

    def sizes(size, table):
        return {"cnn_n_filt": (table["num_filters"], 8, 8), "fc_lay": (16, 16, 16)}

    class TinySincNet(SincNet):
        """A test's model: SincNet with narrower layers."""

    class NoSizeNet(SincNet):
        """A test's model without a compact or laptop configuration."""

    try:
        registry.register_model(sizes)(TinySincNet)
        registry.register_model()(NoSizeNet)
        kwargs = compact_config("Tiny-SincNet")
        assert kwargs["cnn_n_filt"] == (40, 8, 8) and kwargs["clip_samples"] == 8000
        assert type(build_model("tinysincnet", 3, **kwargs)) is TinySincNet
        with pytest.raises(ValueError, match="'nosizenet' has no compact configuration"):
            compact_config("nosizenet")
        with pytest.raises(ValueError, match="registered twice"):
            registry.register_model(sizes)(TinySincNet)
    finally:
        registry._MODELS.pop("tinysincnet", None)
        registry._MODELS.pop("nosizenet", None)


def test_build_from_config_accepts_what_build_model_accepts():
    from models import compact_config
    from models.training.checkpoints import build_from_config

    kwargs = compact_config("mssincresnet")
    sample_rate, clip = kwargs.pop("sample_rate"), kwargs.pop("clip_samples")
    model = build_from_config("MS-SincResNet", 3, kwargs, sample_rate, clip)
    assert type(model).__name__ == "MSSincResNet"


def test_one_dataset_registry_drives_the_readers_and_the_cli():
    from models.cli import build_parser
    from models.data.registry import registered_datasets
    from models.data.tracklists import DATASETS, KINDS

    kind = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                if a.dest == "kind")
    assert tuple(kind.choices) == KINDS == ("auto", *(d.kind for d in registered_datasets()))
    assert set(DATASETS) == {"gtzan", "ismir2004", "folder", "manifest", "synthetic"}


def test_auto_detection_asks_the_readers_by_rank(tmp_path):
    """No reader is named in open_tracklist: a registered reader that recognises a path is
    chosen before the any-folder layout, and the built-in layouts are recognised as before."""
    from models.data import registry
    from models.data.tracklists import detect_dataset, open_tracklist
    from models.data.tracks import DataError, Track, TrackList

    assert detect_dataset(None).kind == "synthetic"
    (tmp_path / "list.csv").write_text("a.wav,rock\n")
    assert detect_dataset(tmp_path / "list.csv").kind == "manifest"
    assert detect_dataset(tmp_path).kind == "folder"
    with pytest.raises(DataError, match="no such file or folder"):
        open_tracklist(str(tmp_path / "missing"))
    (tmp_path / "layout.marker").write_text("")

    def marked(path):
        return path is not None and (path / "layout.marker").is_file()

    @registry.register_dataset("testlayout", "a test's layout", detect=marked, rank=50)
    def read(root, classes, ignore_splits):
        return TrackList("testlayout", [Track(root / f"{i}.wav", i % 2, str(i)) for i in range(4)],
                         ["a", "b"])

    try:
        tracks = open_tracklist(str(tmp_path))
        assert tracks.name == "testlayout" and len(tracks.tracks) == 4
        assert open_tracklist(str(tmp_path), kind="testlayout").classes == ["a", "b"]
    finally:
        registry._DATASETS.pop("testlayout")
