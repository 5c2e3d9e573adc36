"""Entry point of ``python -m bench``; see :func:`bench.harness.main`."""
from bench.harness import main

# The guard matters: 'spawn' children re-import this module (as __mp_main__) and must not rerun main.
if __name__ == "__main__":
    raise SystemExit(main())
