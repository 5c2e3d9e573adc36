"""Where the tests' randomness comes from, so that a CI run can be replayed exactly.

``SINCFB_HYPOTHESIS_PROFILE`` picks one of three settings (tests/conftest.py registers them with
hypothesis and prints the choice in the session header):

- ``ci`` (when ``CI`` is set, and under ``make test``): hypothesis derandomized (the same
  examples on every run, no example database), torch inputs from session seed 0;
- ``dev`` (the default elsewhere): hypothesis draws new examples and replays failures from its
  database; torch inputs from session seed 0;
- ``deep``: long exploration with fresh seeds: each hypothesis test runs :func:`examples` x 10
  examples from a random start, and the torch session seed is drawn anew.

Per-call torch seeds are :func:`derived_seed` of the session seed and a label of the call, and
failures print them; ``SINCFB_TEST_SEED=<session seed>`` replays a run's inputs.
"""
from __future__ import annotations

import hashlib
import os
import secrets

__all__ = ["PROFILES", "profile", "SESSION_SEED", "derived_seed", "examples"]

PROFILES = ("ci", "dev", "deep")


def profile() -> str:
    """The settings this run uses: ``SINCFB_HYPOTHESIS_PROFILE``, else 'ci' under CI, else 'dev'."""
    chosen = os.environ.get("SINCFB_HYPOTHESIS_PROFILE", "").strip().lower()
    if not chosen:
        chosen = "ci" if os.environ.get("CI", "").strip().lower() not in ("", "0", "false") \
            else "dev"
    if chosen not in PROFILES:
        raise ValueError(f"SINCFB_HYPOTHESIS_PROFILE must be one of {PROFILES}, got {chosen!r}")
    return chosen


def _session_seed() -> int:
    given = os.environ.get("SINCFB_TEST_SEED", "").strip()
    if given:
        return int(given)
    return secrets.randbelow(2**31) if profile() == "deep" else 0


SESSION_SEED = _session_seed()


def derived_seed(label: str) -> int:
    """A torch seed in [0, 2^31) for the call named ``label``: fixed by the session seed and the
    label, the same on every machine and in every test order."""
    digest = hashlib.sha256(f"{SESSION_SEED}/{label}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 2**31


def examples(count: int) -> int:
    """A hypothesis test's ``max_examples``: ``count``, or ten times as many under 'deep'."""
    return count * 10 if profile() == "deep" else count
