"""Music datasets for genre classification: discovery, splits, a decoded-audio cache, clips.

A dataset is first described as a :class:`~models.data.tracks.TrackList` (files, labels,
optional predefined splits) by one of the readers of :mod:`models.data.readers` (GTZAN,
ISMIR2004, a folder per class, a CSV manifest, the embedded synthetic corpus), chosen by
:func:`~models.data.tracklists.open_tracklist`. It is then decoded once into a
:class:`~models.data.cache.Corpus`; :mod:`models.data.splits` splits it and
:class:`~models.data.clips.RandomClipDataset` draws the training clips.

The names of the former ``models.data`` module are offered here, imported on first use.
"""
from ..base.lazy import lazy_exports

_EXPORTS = {
    "DataError": "tracks", "Track": "tracks", "TrackList": "tracks",
    "restrict_classes": "tracks", "Corpus": "cache", "load_corpus": "cache",
    "default_cache_dir": "cache", "STORAGES": "cache", "RandomClipDataset": "clips",
    "GTZAN_GENRES": "readers.gtzan", "gtzan": "readers.gtzan",
    "gtzan_filtered_splits": "readers.gtzan", "ISMIR2004_CLASSES": "readers.ismir2004",
    "ISMIR2004_GENRES": "readers.ismir2004", "ismir2004": "readers.ismir2004",
    "ismir2004_class": "readers.ismir2004", "folder_per_class": "readers.folder",
    "manifest": "readers.manifest", "synthetic_tracklist": "readers.synthetic",
    "open_tracklist": "tracklists", "stratified_folds": "splits", "resolved_protocol": "splits",
    "make_splits": "splits",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
