"""Build the development benchmark's manifest from the game soundtracks Debian installs.

Each soundtrack of :data:`SOUNDTRACKS` is one class. Its files are found through dpkg's own
record of the package (``/var/lib/dpkg/info/<package>.list``), decoded by
:func:`models.audio.read_mono`, and cut into excerpts of equal length spread over the track;
every excerpt is written as 16-bit FLAC at the file's own sample rate and listed in a CSV
manifest (``path,label,split``) that ``python -m models train`` reads. The split is by track:
all excerpts of a track are in the same split, so no test track is heard in training.

Prerequisite (not part of the project's install)::

    apt-get install warzone2100-music hyperrogue-music singularity-music drascula-music \\
        planetblupi-music-ogg wesnoth-1.16-music
"""
from __future__ import annotations

import collections
import csv
import hashlib
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from models.audio import AUDIO_EXTENSIONS, AudioError, read_mono
from models.data import DataError
from models.fileio import atomic_open, atomic_write_json

__all__ = ["Soundtrack", "SOUNDTRACKS", "SPLIT_FRACTIONS", "MANIFEST_NAME", "DATASET_INFO_NAME",
           "installed_package", "soundtrack_files", "excerpt_starts", "allocate_excerpts",
           "split_by_track", "track_of", "build_dataset"]

#: The manifest's file name; ``models train`` names the dataset after its stem.
MANIFEST_NAME = "realmusic.csv"
#: The JSON beside the manifest: packages, licences, tracks, excerpts, split, skipped files.
DATASET_INFO_NAME = "realmusic.json"
#: train / valid / test shares of every class's tracks.
SPLIT_FRACTIONS = (("train", 0.6), ("valid", 0.2), ("test", 0.2))
# Opus is what warzone2100-music ships; libsndfile decodes it (in an Ogg container).
MUSIC_EXTENSIONS = (*AUDIO_EXTENSIONS, ".opus")
# An excerpt quieter than this RMS (-60 dBFS) is a pause, not music.
SILENT_RMS = 1e-3
EXCERPT_SEPARATOR = "__e"
#: Why a file or an excerpt is left out (every reason is counted, zeros included).
SKIP_REASONS = ("undecodable", "duplicate", "silent", "too_short", "silent_excerpts")


@dataclass(frozen=True)
class Soundtrack:
    """One class: a Debian package's music folder, and the licence its copyright file gives."""

    package: str
    label: str
    folder: str            # the music folder, as dpkg lists it (absolute)
    licence: str           # what /usr/share/doc/<package>/copyright says of the music
    licence_marker: str    # text that must occur in that file (checked at every build)
    exclude: str = ""      # regex on the path within ``folder``: derived versions of other tracks


# Licences read from each package's /usr/share/doc/<package>/copyright (and, for warzone2100,
# the albums' license.txt). All allow copying and local use.
SOUNDTRACKS = (
    Soundtrack("drascula-music", "drascula", "/usr/share/scummvm/drascula/audio/",
               "Drascula-License (free redistribution, BSD-like; Alcachofa Soft)",
               "License: Drascula-License"),
    Soundtrack("hyperrogue-music", "hyperrogue", "/usr/share/hyperrogue/music/",
               "CC-BY-SA-3.0 (Shawn Parrotte, Lincoln Domina, Will Savino)",
               "License: CC-BY-SA-3.0"),
    Soundtrack("planetblupi-music-ogg", "planetblupi", "/usr/share/planetblupi/music/",
               "GPL-3+ (Files: *)", "License: GPL-3+"),
    Soundtrack("singularity-music", "singularity", "/usr/share/games/singularity/music/",
               "CC-BY-SA-3.0 (Max McCracken)", "Attribution, ShareAlike"),
    # track3_enhanced and menu_enhanced are new versions of other tracks: left out, so that no
    # composition is heard in two splits.
    Soundtrack("warzone2100-music", "warzone2100", "/usr/share/games/warzone2100/music/",
               "CC-BY-SA-3.0 or GPL-2+ (LupusMechanicus' albums' license.txt; GPL-2+ Files: *)",
               "License: GPL-2+", exclude=r"_enhanced\.[^/]*$"),
    Soundtrack("wesnoth-1.16-music", "wesnoth", "/usr/share/games/wesnoth/1.16/data/core/music/",
               "GPL-2+", "GNU General Public License version 2"),
)


# ------------------------------------------------------------------------------- packages
def installed_package(package: str, dpkg_dir: Path) -> dict:
    """``{'package', 'version', 'files'}`` of an installed package, from dpkg's status file and
    file list; a :class:`DataError` with the install command when it is not installed."""
    paragraph = _status_paragraph(package, Path(dpkg_dir) / "status")
    if paragraph is None or not paragraph.get("Status", "").endswith(" installed"):
        raise DataError(f"{package} is not installed; run: apt-get install {package}")
    lists = sorted((Path(dpkg_dir) / "info").glob(f"{package}.list")) + \
        sorted((Path(dpkg_dir) / "info").glob(f"{package}:*.list"))
    if not lists:
        raise DataError(f"{package}: dpkg lists no files ({Path(dpkg_dir) / 'info'})")
    files = [line for line in lists[0].read_text(encoding="utf-8").splitlines() if line]
    return {"package": package, "version": paragraph.get("Version", "unknown"), "files": files}


def _status_paragraph(package: str, status: Path) -> Optional[dict]:
    """The fields of ``package``'s paragraph in dpkg's status file (continuation lines left out)."""
    if not status.is_file():
        raise DataError(f"{status}: no dpkg status file (is this a Debian system?)")
    for block in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith((" ", "\t")))
        if fields.get("Package") == package:
            return fields
    return None


def soundtrack_files(soundtrack: Soundtrack, listed: Sequence[str], root: Path) -> list[Path]:
    """The music files of ``soundtrack`` among the package's ``listed`` paths, under ``root``
    (``/`` on a real system), symbolic links and excluded versions left out, sorted."""
    exclude = re.compile(soundtrack.exclude) if soundtrack.exclude else None
    found = []
    for name in listed:
        if not name.startswith(soundtrack.folder) or \
                Path(name).suffix.lower() not in MUSIC_EXTENSIONS:
            continue
        if exclude and exclude.search(name[len(soundtrack.folder):]):
            continue
        path = Path(root) / name.lstrip("/")
        if path.is_file() and not path.is_symlink():   # drascula's language folders link audio/
            found.append(path)
    return sorted(found)


def _licence(soundtrack: Soundtrack, root: Path) -> dict:
    """Where the package's copyright file is, its digest, and the licence it gives the music;
    an error when the file no longer says what :data:`SOUNDTRACKS` records."""
    path = Path(root) / "usr/share/doc" / soundtrack.package / "copyright"
    if not path.is_file():
        raise DataError(f"{path}: missing; cannot check the licence of {soundtrack.package}")
    data = path.read_bytes()
    if soundtrack.licence_marker.encode() not in data:
        raise DataError(f"{path}: does not contain {soundtrack.licence_marker!r}; its licence "
                        "changed, read it again before using the package")
    return {"licence": soundtrack.licence, "copyright_file": f"/{path.relative_to(root)}",
            "copyright_sha256": hashlib.sha256(data).hexdigest()}


# ------------------------------------------------------------------------------- excerpts
def excerpt_starts(num_samples: int, excerpt_samples: int, count: int) -> list[int]:
    """Starts of ``count`` excerpts: the track is cut into ``count`` equal parts and each
    excerpt is centred in its part (no overlap, intros and endings avoided)."""
    if count < 1 or count * excerpt_samples > num_samples:
        raise ValueError(f"{count} excerpts of {excerpt_samples} samples do not fit in "
                         f"{num_samples} samples")
    part = num_samples / count
    return [int(round((i + 0.5) * part - excerpt_samples / 2)) for i in range(count)]


def allocate_excerpts(capacities: Sequence[int], target: int) -> list[int]:
    """Excerpts per track of one class: one more to every track that still has room, round by
    round, until the class holds ``target`` (or every track is full); in the last round the
    tracks with the most room go first. Every track gets at least one."""
    counts = [min(1, c) for c in capacities]
    order = sorted(range(len(capacities)), key=lambda i: (-capacities[i], i))
    while sum(counts) < target:
        grown = False
        for i in order:
            if counts[i] < capacities[i] and sum(counts) < target:
                counts[i] += 1
                grown = True
        if not grown:
            break
    return counts


# ------------------------------------------------------------------------------- split
def split_by_track(tracks_by_label: dict[str, list[str]], seed: int,
                   min_tracks: int = 5) -> dict[str, str]:
    """``{track: split}``: every class's tracks shuffled (a generator seeded by the seed and the
    class name, so one class's split does not depend on the others) and dealt 60/20/20, with at
    least one track in each split. A class with fewer than ``min_tracks`` is an error naming it."""
    split = {}
    for label, tracks in sorted(tracks_by_label.items()):
        if len(tracks) < max(min_tracks, len(SPLIT_FRACTIONS)):
            raise DataError(f"class {label!r} has {len(tracks)} usable track(s); the split by "
                            f"track needs at least {max(min_tracks, len(SPLIT_FRACTIONS))}")
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        order = [sorted(tracks)[i] for i in rng.permutation(len(tracks))]
        held = [max(1, round(share * len(tracks))) for _, share in SPLIT_FRACTIONS[1:]]
        names = [name for name, _ in SPLIT_FRACTIONS]
        sizes = [len(tracks) - sum(held), *held]
        position = 0
        for name, size in zip(names, sizes):
            split.update({track: name for track in order[position:position + size]})
            position += size
    return split


def tracks_by_label(tracklist) -> dict[str, list[str]]:
    """``{class: [track, ...]}`` of a manifest's excerpts (:func:`track_of` of each name), in the
    order they first appear: what :func:`split_by_track` deals out."""
    by_label: dict[str, list[str]] = {}
    for excerpt in tracklist.tracks:
        tracks = by_label.setdefault(tracklist.classes[excerpt.label], [])
        track = track_of(excerpt.name)
        if track not in tracks:
            tracks.append(track)
    return by_label


def resplit_manifest(manifest_path, seed: int) -> Path:
    """Write ``realmusic-split<seed>.csv`` beside ``manifest_path``: the same excerpts, re-split
    by track with ``seed`` (:func:`split_by_track`), so that the networks can be trained on the
    re-splits the classical reference also scores. The paths stay as written (relative to the
    same folder), so a track keeps its name and its decoded-audio cache entry. Returns the path."""
    from models.data import manifest

    manifest_path = Path(manifest_path)
    tracklist = manifest(manifest_path, ignore_splits=True)
    split = split_by_track(tracks_by_label(tracklist), seed)
    out = manifest_path.with_name(f"{manifest_path.stem}-split{seed}.csv")
    _write_manifest(out, ([excerpt.name, tracklist.classes[excerpt.label],
                           split[track_of(excerpt.name)]] for excerpt in tracklist.tracks))
    return out


def _write_manifest(path: Path, rows) -> None:
    """Write the manifest CSV (``path,label,split`` rows under their header) atomically."""
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)


def track_of(name: str) -> str:
    """The track an excerpt's manifest path belongs to (the path without its excerpt number and
    extension); a path that is not an excerpt is its own track."""
    stem = name.rsplit(".", 1)[0] if Path(name).suffix else name
    head, separator, number = stem.rpartition(EXCERPT_SEPARATOR)
    return head if separator and number.isdigit() else stem


# ------------------------------------------------------------------------------- build
@dataclass
class _Track:
    """A usable track: its id, class, source file, rate and length (its audio is decoded again
    when its excerpts are cut: ten hours of decoded music would not fit in memory)."""

    track: str
    label: str
    source: Path
    rate: int
    samples: int


def _track_id(soundtrack: Soundtrack, path: Path, root: Path) -> str:
    """``<label>/<path within the music folder, '/' as '-', no extension>``, file-name safe."""
    within = f"/{path.relative_to(root)}"[len(soundtrack.folder):]
    stem = within.rsplit(".", 1)[0].replace("/", "-")
    return f"{soundtrack.label}/{re.sub(r'[^A-Za-z0-9._-]+', '_', stem)}"


def _decode_soundtrack(soundtrack: Soundtrack, files: list[Path], root: Path,
                       excerpt_seconds: float, skipped: dict) -> list[_Track]:
    """The usable tracks of one soundtrack; the others are recorded in ``skipped`` by reason."""
    tracks, digests = [], set()
    for path in files:
        where = f"/{path.relative_to(root)}"
        try:
            samples, rate = read_mono(path, allow_silent=True)
        except AudioError as error:
            skipped["undecodable"].append(f"{where}: {str(error).split(': ', 1)[-1]}")
            continue
        digest = hashlib.sha1(samples.tobytes()).hexdigest()
        if digest in digests:
            skipped["duplicate"].append(where)
            continue
        digests.add(digest)
        if float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < SILENT_RMS:
            skipped["silent"].append(where)
        elif len(samples) < excerpt_seconds * rate:
            skipped["too_short"].append(f"{where}: {len(samples) / rate:.1f} s")
        else:
            tracks.append(_Track(_track_id(soundtrack, path, root), soundtrack.label, path,
                                 rate, len(samples)))
    return tracks


def _write_excerpts(track: _Track, count: int, excerpt_seconds: float, out: Path,
                    skipped: dict) -> list[dict]:
    """Write ``count`` excerpts of ``track`` as FLAC under ``out``; silent ones are dropped."""
    import soundfile

    samples, _ = read_mono(track.source, allow_silent=True)
    length = int(round(excerpt_seconds * track.rate))
    written = []
    for number, start in enumerate(excerpt_starts(len(samples), length, count)):
        piece = samples[start:start + length]
        if float(np.sqrt(np.mean(np.square(piece, dtype=np.float64)))) < SILENT_RMS:
            skipped["silent_excerpts"].append(f"{track.track} at {start / track.rate:.1f} s")
            continue
        relative = f"audio/{track.track}{EXCERPT_SEPARATOR}{number:02d}.flac"
        buffer = io.BytesIO()
        # decoders overshoot full scale a little; clipping keeps int16 from wrapping around
        soundfile.write(buffer, np.clip(piece, -1.0, 32767 / 32768), track.rate, format="FLAC",
                        subtype="PCM_16")
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(out / relative, "wb") as sink:
            sink.write(buffer.getvalue())
        written.append({"path": relative, "start_sample": int(start),
                        "start_s": round(start / track.rate, 3)})
    return written


def build_dataset(out, soundtracks: Sequence[Soundtrack] = SOUNDTRACKS, root="/",
                  dpkg_dir="/var/lib/dpkg", excerpt_seconds: float = 20.0,
                  excerpts_per_class: int = 36, seed: int = 0, min_tracks: int = 5,
                  overwrite: bool = False) -> dict:
    """Write ``out/realmusic.csv`` (path,label,split) and ``out/realmusic.json``, and the
    excerpts under ``out/audio/<label>/``; returns the JSON's content.

    Tracks that do not decode, are shorter than one excerpt, are silent or repeat another
    track's audio are skipped and counted; a class left with fewer than ``min_tracks`` tracks is
    an error naming it.
    """
    out, root = Path(out), Path(root)
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise DataError(f"{out / MANIFEST_NAME} exists; pass --overwrite to rebuild it")
    skipped = {reason: [] for reason in SKIP_REASONS}
    packages, tracks = [], []
    for soundtrack in soundtracks:
        package = installed_package(soundtrack.package, Path(dpkg_dir))
        files = soundtrack_files(soundtrack, package["files"], root)
        usable = _decode_soundtrack(soundtrack, files, root, excerpt_seconds, skipped)
        packages.append({"package": soundtrack.package, "version": package["version"],
                         "label": soundtrack.label, "music_folder": soundtrack.folder,
                         "excluded": soundtrack.exclude or None, "files": len(files),
                         "usable_tracks": len(usable), **_licence(soundtrack, root)})
        tracks.extend(usable)
    by_label = collections.defaultdict(list)
    for track in tracks:
        by_label[track.label].append(track.track)
    split = split_by_track(by_label, seed, min_tracks)
    rows, listing = _excerpt_all(tracks, split, excerpt_seconds, excerpts_per_class, out, skipped)
    info = _dataset_info(packages, listing, skipped, excerpt_seconds, excerpts_per_class, seed)
    _write_manifest(out / MANIFEST_NAME, rows)
    atomic_write_json(out / DATASET_INFO_NAME, info, indent=1)
    return info


def _excerpt_all(tracks: list[_Track], split: dict, excerpt_seconds: float,
                 excerpts_per_class: int, out: Path, skipped: dict):
    """Cut and write every class's excerpts; returns the manifest rows and the track listing."""
    rows, listing = [], []
    for label in sorted({t.label for t in tracks}):
        members = [t for t in tracks if t.label == label]
        capacities = [int(t.samples // round(excerpt_seconds * t.rate)) for t in members]
        for track, count in zip(members, allocate_excerpts(capacities, excerpts_per_class)):
            excerpts = _write_excerpts(track, count, excerpt_seconds, out, skipped)
            rows += [(e["path"], label, split[track.track]) for e in excerpts]
            listing.append({"track": track.track, "label": label, "split": split[track.track],
                            "source": str(track.source), "sample_rate": track.rate,
                            "duration_s": round(track.samples / track.rate, 2),
                            "excerpts": excerpts})
    return rows, listing


def _dataset_info(packages, listing, skipped, excerpt_seconds, excerpts_per_class, seed) -> dict:
    """What realmusic.json records: sources, licences, policy, counts, split, skips."""
    per_class = collections.defaultdict(collections.Counter)
    for entry in listing:
        counts = per_class[entry["label"]]
        counts[f"{entry['split']}_tracks"] += 1
        counts[f"{entry['split']}_excerpts"] += len(entry["excerpts"])
        counts["source_seconds"] += entry["duration_s"]
    return {
        "packages": packages,
        "excerpts": {"seconds": excerpt_seconds, "target_per_class": excerpts_per_class,
                     "format": "FLAC, 16-bit, mono (mean of the channels), the file's own rate",
                     "placement": "the track is cut into as many equal parts as it gives "
                                  "excerpts; each excerpt is centred in its part (no overlap)"},
        "split": {"by": "track: every excerpt of a track is in the track's split, so no excerpt "
                        "of a test track is in train", "seed": seed,
                  "fractions": dict(SPLIT_FRACTIONS), "stratified": "per class"},
        "per_class": {label: dict(sorted(c.items())) for label, c in sorted(per_class.items())},
        "totals": {"tracks": len(listing),
                   "excerpts": sum(len(e["excerpts"]) for e in listing),
                   "source_seconds": round(sum(e["duration_s"] for e in listing), 1)},
        "skipped": {reason: {"count": len(items), "items": items}
                    for reason, items in sorted(skipped.items())},
        "tracks": listing,
    }
