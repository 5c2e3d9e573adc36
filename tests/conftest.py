"""Test-session setup shared by every test package."""
import os

import pytest

# OpenMP threads that spin while waiting for work stall each other on a loaded 2-core machine (a
# compact ResNet-18 forward went from 13 ms to 660 ms); passive waiting keeps the suite's time
# steady. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# backend='auto' follows its static rule in tests: timing the candidates (its default on large
# problems) would make which backend a test runs depend on the machine's load. The calibration
# tests set SINCFB_AUTO themselves.
os.environ.setdefault("SINCFB_AUTO", "static")

# Without a GPU, Triton kernels run on the CPU through Triton's interpreter (DESIGN.md §5). The
# variable must be set before triton is first imported, i.e. before sincfb is.
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


# Hypothesis settings by SINCFB_HYPOTHESIS_PROFILE (tests/seeds.py says what each one is for).
def _register_hypothesis_profiles() -> None:
    from hypothesis import settings

    from tests.seeds import profile

    settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    settings.register_profile("dev")
    settings.register_profile("deep", database=None, print_blob=True)
    settings.load_profile(profile())


_register_hypothesis_profiles()


def _randomness() -> str:
    """The randomness of this run, so that a failure can be replayed."""
    from hypothesis import settings

    from tests.seeds import SESSION_SEED, profile

    return (f"sincfb tests: SINCFB_HYPOTHESIS_PROFILE={profile()} (hypothesis derandomize="
            f"{settings.default.derandomize}); torch inputs from session seed {SESSION_SEED} "
            f"(replay: SINCFB_TEST_SEED={SESSION_SEED})")


def pytest_report_header(config):
    return [_randomness()]


def pytest_terminal_summary(terminalreporter):
    """Also at the end: ``pytest -q`` (make test, CI) prints no header."""
    terminalreporter.write_line(_randomness())


@pytest.fixture
def torch_seed(request) -> int:
    """This test's torch seed (:func:`tests.seeds.derived_seed` of its node id); a failure
    report prints it."""
    from tests.seeds import derived_seed

    seed = derived_seed(request.node.nodeid)
    request.node.user_properties.append(("torch seed", seed))
    return seed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        from tests.seeds import SESSION_SEED

        for name, value in item.user_properties:
            if name == "torch seed":
                report.sections.append(("torch seed", f"{value} (session seed {SESSION_SEED})"))
