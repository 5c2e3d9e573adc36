"""The real-recordings development benchmark: game soundtracks shipped by Debian, one class per
soundtrack, split by track.

- :mod:`bench.real_music.dataset` finds the installed packages' music, decodes every file with
  :mod:`models.audio`, cuts excerpts and writes a manifest ``models train`` reads;
- :mod:`bench.real_music.classical` is the classical reference: per-song log-mel and chroma
  statistics with a multinomial logistic regression;
- :mod:`bench.real_music.compare` trains the networks on the same split and writes one JSON.

Run ``python -m bench.real_music --help``. The packages' ``apt-get install`` is the documented
prerequisite (see :data:`bench.real_music.dataset.SOUNDTRACKS`); the test suite does not need it.
"""
