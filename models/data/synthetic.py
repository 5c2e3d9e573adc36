"""A procedurally generated music-genre corpus: the default dataset when no data is given.

Each genre is a recipe — tempo range, drum pattern, swing, instrument timbre, scale and chord
vocabulary, register and note density — and each song draws its key, tempo, progression and mix
from a seeded generator, so the corpus is identical on every machine. The genres differ the way
real ones do (rhythm, timbre, harmony, tempo), which is what a learned filterbank must pick up.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GENRES", "Genre", "synthesize_song", "synthesize_corpus"]


@dataclass(frozen=True)
class Genre:
    """The recipe of one synthetic genre."""

    name: str
    tempo: tuple[float, float]          # beats per minute
    kick: str                           # 16 sixteenth-note steps, 'x' = hit
    snare: str
    hat: str
    swing: float                        # delay of odd sixteenths, as a fraction of a step
    lead: str                           # timbre of the melody/chords
    bass: str                           # timbre of the bass line
    scale: tuple[int, ...]              # semitones above the key
    chord: tuple[int, ...]              # chord shape on each degree
    notes_per_beat: float               # melodic density
    octave: int                         # register of the lead (MIDI octave)


GENRES: tuple[Genre, ...] = (
    Genre("ambient", (60, 72), "." * 16, "." * 16, "." * 16, 0.0, "pad", "sine",
          (0, 2, 4, 7, 9, 11), (0, 4, 7, 11), 0.5, 5),
    Genre("rock", (118, 140), "x.......x.x.....", "....x.......x...", "x.x.x.x.x.x.x.x.", 0.0,
          "distorted", "saw", (0, 3, 5, 7, 10), (0, 7, 12), 1.0, 4),
    Genre("techno", (124, 134), "x...x...x...x...", "........" * 2, "..x...x...x...x.", 0.0,
          "square", "square", (0, 2, 3, 5, 7, 8, 10), (0, 3, 7), 2.0, 4),
    Genre("jazz", (92, 124), "x.........x.....", "...." * 4, "x..xx..xx..xx..x", 0.33,
          "electric_piano", "pluck", (0, 2, 3, 5, 7, 9, 10), (0, 4, 7, 10, 14), 1.5, 5),
    Genre("reggae", (68, 84), "........x.......", "........x.......", "x.x.x.x.x.x.x.x.", 0.1,
          "skank", "sine", (0, 2, 4, 5, 7, 9, 11), (0, 4, 7), 0.5, 5),
    Genre("baroque", (84, 108), "." * 16, "." * 16, "." * 16, 0.0, "harpsichord", "pluck",
          (0, 2, 4, 5, 7, 9, 11), (0, 4, 7), 4.0, 5),
)


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def _tone(kind: str, freq: float, length: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of ``length`` samples in the given timbre, with its own envelope."""
    t = np.arange(length) / sr
    phase = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
    if kind in ("sine", "pad"):
        wave = np.sin(phase) + (0.3 * np.sin(2 * phase) if kind == "pad" else 0.0)
    elif kind in ("saw", "distorted"):
        harmonics = np.arange(1, max(2, int(sr / 2 / freq)) if freq > 0 else 2)[:24]
        wave = (np.sin(np.outer(harmonics, phase)) / harmonics[:, None]).sum(0)
        if kind == "distorted":
            wave = np.tanh(3.0 * wave)
    elif kind in ("square", "skank"):
        harmonics = np.arange(1, 30, 2)
        harmonics = harmonics[harmonics * freq < sr / 2]
        wave = (np.sin(np.outer(harmonics, phase)) / harmonics[:, None]).sum(0)
    elif kind == "electric_piano":   # two-operator FM: bell-like, decaying brightness
        index = 2.5 * np.exp(-t * 6)
        wave = np.sin(phase + index * np.sin(2 * np.pi * 2 * freq * t))
    elif kind in ("pluck", "harpsichord"):
        harmonics = np.arange(1, 16)
        harmonics = harmonics[harmonics * freq < sr / 2]
        decay = np.exp(-np.outer(harmonics, t) * (3 if kind == "pluck" else 8))
        wave = (np.sin(np.outer(harmonics, phase)) * decay / harmonics[:, None] ** 0.7).sum(0)
    else:
        raise ValueError(f"unknown timbre {kind!r}")
    return (wave * _envelope(kind, length, sr)).astype(np.float32)


def _envelope(kind: str, length: int, sr: int) -> np.ndarray:
    t = np.arange(length) / sr
    attack = {"pad": 0.25, "sine": 0.01}.get(kind, 0.004)
    rise = np.clip(t / attack, 0, 1)
    if kind == "pad":
        return rise
    if kind == "skank":       # short, choppy off-beat chords
        return rise * np.exp(-t * 25)
    return rise * np.exp(-t * {"pluck": 4, "harpsichord": 6}.get(kind, 2.5))


def _drum(kind: str, length: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / sr
    if kind == "kick":       # pitch-swept sine
        sweep = 50 + 90 * np.exp(-t * 30)
        return np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t * 12)
    noise = rng.standard_normal(length)
    if kind == "snare":
        return 0.6 * noise * np.exp(-t * 22) + 0.4 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 30)
    hat = np.diff(noise, prepend=0.0)             # crude high-pass: hats are bright
    return 0.35 * hat * np.exp(-t * 70)


def _place(track: np.ndarray, sound: np.ndarray, start: int, gain: float) -> None:
    end = min(len(track), start + len(sound))
    if start < end:
        track[start:end] += gain * sound[: end - start]


def synthesize_song(genre: Genre, seconds: float, sample_rate: int,
                    rng: np.random.Generator) -> np.ndarray:
    """One song of ``genre``: drums, a bass line and a chord/melody part, mixed and normalised."""
    n = int(seconds * sample_rate)
    track = np.zeros(n, dtype=np.float64)
    bpm = rng.uniform(*genre.tempo)
    step = 60.0 / bpm / 4 * sample_rate                        # one sixteenth, in samples
    key = int(rng.integers(0, 12))
    steps = int(n / step) + 1
    for index in range(steps):
        swing = genre.swing * step if index % 2 else 0.0
        start = int(index * step + swing)
        for name, pattern, gain in (("kick", genre.kick, 0.9), ("snare", genre.snare, 0.6),
                                    ("hat", genre.hat, 0.4)):
            if pattern[index % 16] == "x":
                _place(track, _drum(name, int(0.25 * sample_rate), sample_rate, rng), start,
                       gain * rng.uniform(0.8, 1.0))
    beat = 4 * step
    bar = 4 * beat
    progression = rng.choice(len(genre.scale), size=4)
    for bar_index in range(int(n / bar) + 1):
        degree = genre.scale[progression[bar_index % 4]]
        root = 12 * (genre.octave + 1) + key + degree
        bar_start = int(bar_index * bar)
        for beat_index in range(4):      # bass on every beat
            note = root - 24 + (7 if beat_index % 2 and genre.bass == "pluck" else 0)
            _place(track, _tone(genre.bass, _midi_hz(note), int(beat), sample_rate, rng),
                   bar_start + int(beat_index * beat), 0.5)
        if genre.lead in ("pad", "skank", "distorted"):           # chords
            hits = [0] if genre.lead == "pad" else ([2 * step + i * beat for i in range(4)]
                                                    if genre.lead == "skank" else
                                                    [i * 2 * beat for i in range(2)])
            length = int(bar if genre.lead == "pad" else beat)
            for hit in hits:
                for interval in genre.chord:
                    _place(track, _tone(genre.lead, _midi_hz(root + interval), length, sample_rate,
                                        rng), bar_start + int(hit), 0.25)
        count = max(1, int(round(4 * genre.notes_per_beat)))    # melody / arpeggio
        for note_index in range(count):
            degree = genre.scale[int(rng.integers(0, len(genre.scale)))]
            if genre.lead == "harpsichord":     # arpeggiate the chord upwards
                degree = genre.chord[note_index % len(genre.chord)] + 12 * (note_index // 8 % 2)
            note = 12 * (genre.octave + 1) + key + degree + 12
            length = int(bar / count * 1.5)
            _place(track, _tone(genre.lead if genre.lead != "skank" else "electric_piano",
                                _midi_hz(note), length, sample_rate, rng),
                   bar_start + int(note_index * bar / count), 0.3)
    track += 0.003 * rng.standard_normal(n)
    return (track / (np.abs(track).max() + 1e-9) * rng.uniform(0.5, 0.9)).astype(np.float32)


def synthesize_corpus(songs_per_genre: int = 24, seconds: float = 6.0, sample_rate: int = 16000,
                      seed: int = 0, genres: tuple[Genre, ...] = GENRES):
    """``(tracks, labels, names, classes)``: ``songs_per_genre`` songs of every genre, in a fixed
    order, generated from ``seed`` (each song from its own sub-seed, so any subset is stable)."""
    tracks, labels, names = [], [], []
    for label, genre in enumerate(genres):
        for index in range(songs_per_genre):
            rng = np.random.default_rng([seed, label, index])
            tracks.append(synthesize_song(genre, seconds, sample_rate, rng))
            labels.append(label)
            names.append(f"{genre.name}.{index:05d}")
    return tracks, labels, names, [g.name for g in genres]
