"""Model sizes: ``--size compact|laptop|paper`` (``--compact`` its alias) on the command line, and
every model at the laptop size."""
import pytest
import torch

from models.cli import build_parser
from models.commands.settings import config_from_args, explicit_settings
from models.training.recipes import recipe_config
from models.nets.catalog import LAPTOP, MODELS, SIZE_SETTINGS, build_model, size_config


def cli_config(*argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_laptop_keeps_the_papers_front_end_and_learns_its_cutoffs():
    config = cli_config("--size", "laptop")
    kwargs = config.model_kwargs
    assert kwargs["kernel_sizes"] == (251, 501, 1001)            # the paper's filter lengths
    assert (kwargs["num_filters"], kwargs["pool_bins"], kwargs["hidden"]) == (
        LAPTOP["num_filters"], LAPTOP["pool_bins"], LAPTOP["hidden"])
    assert config.clip_seconds == 3.0 and config.sample_rate == 16000
    assert config.hop_seconds == 1.5                              # half a clip
    assert config.size == "laptop" and config.cutoffs == "learn" and config.backbone == "random"
    for key, value in SIZE_SETTINGS["laptop"].items():
        assert getattr(config, key) == value, key


def test_flags_and_config_files_override_the_size(tmp_path):
    config = cli_config("--size", "laptop", "--cutoffs", "freeze", "--epochs", "2",
                        "--hop-seconds", "0.5", "--backbone", "imagenet")
    assert (config.cutoffs, config.epochs, config.hop_seconds, config.backbone) == (
        "freeze", 2, 0.5, "imagenet")
    settings = tmp_path / "s.json"
    settings.write_text('{"lr": 0.002, "cutoff_lr_scale": 7.0}')
    config = cli_config("--size", "laptop", "--config", str(settings), "--cutoffs", "learn")
    assert config.lr == 0.002 and config.cutoff_lr_scale == 7.0


def test_compact_is_an_alias_and_paper_keeps_the_recipe():
    assert cli_config("--compact") == cli_config("--size", "compact")
    assert cli_config("--compact").model_kwargs["kernel_sizes"] == (31, 63, 127)
    for recipe in ("paper", "authors"):
        sized = cli_config("--recipe", recipe, "--size", "paper")
        published = recipe_config(recipe)
        assert sized == recipe_config(recipe, size="paper")    # the recipe's hop, its model
        assert published.cutoffs == "decay"              # the recipes keep their behaviour


def test_size_is_a_record_a_resume_does_not_compare():
    explicit = explicit_settings(build_parser().parse_args(["train", "--size", "laptop"]))
    assert "size" not in explicit and explicit["cutoffs"] == "learn"


def test_unknown_size_is_an_error():
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        size_config("mssincresnet", "huge")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--size", "huge"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_at_the_laptop_size_and_classifies_a_3s_clip(name):
    torch.manual_seed(0)
    kwargs = size_config(name, "laptop")
    assert kwargs["clip_samples"] == 48000 and kwargs["sample_rate"] == 16000
    model = build_model(name, 5, **kwargs).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 48000))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()


def test_a_clip_length_the_user_gives_is_kept():
    config = cli_config("--size", "laptop", "--clip-seconds", "2")
    assert config.clip_seconds == 2.0 and config.hop_seconds == 1.0
    assert config.model_kwargs["kernel_sizes"] == (251, 501, 1001)
