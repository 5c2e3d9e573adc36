"""What the wheel installs: sincfb (with its C++ sources) and models, not the bench harness."""
import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_config() -> dict:
    """pyproject.toml as setuptools reads it when it builds the wheel, its package discovery
    (``[tool.setuptools.packages.find]``) expanded into the list of packages it ships."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # "[tool.setuptools] support is still beta"
        return read_configuration(ROOT / "pyproject.toml", expand=True)


def test_wheel_packages_exclude_bench_and_keep_models():
    config = _setuptools_config()
    packages = set(config["tool"]["setuptools"]["packages"])
    assert not {p for p in packages if p == "bench" or p.startswith("bench.")}
    assert not {p for p in packages if p == "tests" or p.startswith("tests.")}
    assert {"sincfb", "sincfb.backends", "sincfb.csrc", "models"} <= packages
    # every floor of models, and the folders whose modules register themselves when imported
    assert {f"models.{floor}" for floor in ("base", "data", "nets", "evaluation", "training",
                                            "inference", "commands")} <= packages
    assert {"models.data.readers", "models.nets.architectures"} <= packages
    # the console script's module is shipped
    entry = config["project"]["scripts"]["mssincresnet"]
    assert entry.split(":")[0].split(".")[0] in packages
    assert "csrc/*" in config["tool"]["setuptools"]["package-data"]["sincfb"]
