"""``python -m bench.real_music {build,classical,compare}``: see :mod:`bench.real_music.cli`."""
import sys

from bench.real_music.cli import main

if __name__ == "__main__":
    sys.exit(main())
