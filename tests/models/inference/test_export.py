"""``mssincresnet export`` and ``predict --onnx``: the exported graphs against eager PyTorch.

The ONNX tests need the ``export`` extra (onnx, onnxscript, onnxruntime) and skip without it;
the torch.export ones need nothing more than torch. References are independent of the export
code: the eager model, :class:`models.audio.Framing` (Python slicing) for the clips,
:func:`models.results.vote` for the vote, torchaudio for the resampler.
"""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from models.data.audio import Framing, resample, sinc_resample
from models.training.checkpoints import load_checkpoint
from models.cli import main
from models.inference.export import (ExportError, SongClassifier, export_classifier,
                                     read_torch_export_metadata)
from models.evaluation.results import vote
from tests.models.authors_release import released_checkpoint
from tests.models.helpers import randomise_batch_norms, relative_error
from tests.models.training.test_authors_checkpoint import compact_release, random_release  # noqa: F401
from tests.oracles import randomise_bank

needs_onnx = pytest.mark.skipif(
    not all(find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime")),
    reason="the export extra is not installed (pip install '.[export]')")
CLIP, HOP = 8000, 4000          # the compact checkpoint's clips


@pytest.fixture(scope="module")
def checkpoint(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's best.pt with random cut-offs, BatchNorm and LayerNorm parameters, so that
    a folding or pooling mistake cannot hide behind near-default statistics, and a last layer
    whose probabilities are far from 0 and 1, so that every logit moves a mean-vote confidence."""
    model, _ = load_checkpoint(tiny_run / "best.pt")
    generator = torch.Generator().manual_seed(5)
    for bank in model.banks:
        randomise_bank(bank, generator)
    randomise_batch_norms(model, generator)
    last = model.resnet.head[-1]
    with torch.no_grad():
        last.weight.copy_(0.01 * torch.randn(last.weight.shape, generator=generator))
        last.bias.zero_()
    state = torch.load(tiny_run / "best.pt", weights_only=True)
    state["model_state"] = model.state_dict()
    path = tmp_path_factory.mktemp("export") / "random.pt"
    torch.save(state, path)
    return path


def eager_model(checkpoint):
    model, state = load_checkpoint(checkpoint)
    return model.eval(), state


@pytest.fixture(scope="module")
def onnx_clips(checkpoint) -> Path:
    """The clip model, exported by the command line."""
    out = checkpoint.with_name("clips.onnx")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def onnx_song(checkpoint):
    return export_classifier(checkpoint, checkpoint.with_name("song.onnx"), "onnx", song=True)


def session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@needs_onnx
def test_onnx_clip_model_matches_eager_at_two_batch_sizes(onnx_clips, checkpoint):
    model, _ = eager_model(checkpoint)
    runner = session(onnx_clips)
    assert isinstance(runner.get_inputs()[0].shape[0], str)          # a dynamic batch
    for batch in (1, 5):
        clips = torch.randn(batch, 1, CLIP)
        (logits,) = runner.run(None, {"clips": clips.numpy()})
        with torch.no_grad():
            want = model(clips)
        assert logits.shape == (batch, 6)
        assert relative_error(torch.from_numpy(logits), want) < 1e-4


@needs_onnx
def test_onnx_metadata_records_versions_classes_and_card(onnx_clips, checkpoint):
    import onnx
    import sincfb

    _, state = eager_model(checkpoint)
    meta = session(onnx_clips).get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == state["classes"]
    assert [meta[k] for k in ("sample_rate", "clip_samples", "hop_samples")] == ["16000", "8000",
                                                                                 "4000"]
    assert meta["sincfb.version"] == sincfb.__version__
    assert meta["torch.version"] == torch.__version__
    opsets = {o.domain: o.version for o in onnx.load(onnx_clips).opset_import}
    assert meta["onnx.opset"] == str(opsets[""]) == "18"
    assert meta["summary"] == state["card"]["summary"] and meta["kind"] == "clips"


def track(samples: int, seed: int) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


LENGTHS = (3000, CLIP, CLIP + HOP - 1, CLIP + 3 * HOP + 123, 40000)


@needs_onnx
def test_onnx_song_model_classifies_the_checkpoints_clips_and_votes(onnx_song, checkpoint):
    model, state = eager_model(checkpoint)
    framing, runner = Framing(CLIP, HOP), session(onnx_song["path"])
    for seed, samples in enumerate(LENGTHS):
        waveform = track(samples, seed)
        logits, mean, shares, majority = runner.run(None, {"waveform": waveform})
        with torch.no_grad():
            want = model(framing.clips(waveform))
        winner, _, want_shares, want_mean = vote(torch.softmax(want, -1), "majority")
        assert logits.shape == (framing.count(samples), 6)
        assert relative_error(torch.from_numpy(logits), want) < 1e-4
        np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(shares, want_shares, rtol=0, atol=1e-7)
        assert int(majority) == winner


class Echo(torch.nn.Module):
    """A stand-in classifier whose 'logits' are the clip itself: the song model's output then
    shows exactly which samples each clip holds."""

    def forward(self, clips):
        return clips[:, 0]


@pytest.mark.parametrize("framing", [Framing(CLIP, HOP), Framing(CLIP, HOP, 5333, 2.5)],
                         ids=["paper", "lookback"])
def test_song_model_cuts_the_framings_clips_in_eager_and_exported_mode(framing):
    song = SongClassifier(Echo(), framing).eval()
    program = torch.export.export(song, (torch.randn(CLIP + 3 * HOP + 7),),
                                  dynamic_shapes=({0: torch.export.Dim("samples", min=1)},))
    for samples in (1, 2000, 5333, HOP, CLIP, CLIP + 1, 2 * CLIP + HOP - 1, 37000):
        waveform = torch.from_numpy(track(samples, samples))
        want = framing.clips(waveform.numpy())[:, 0]
        torch.testing.assert_close(song.clips(waveform)[:, 0], want, rtol=0, atol=0)
        torch.testing.assert_close(program.module()(waveform)[0], want, rtol=0, atol=0)


class Stub(torch.nn.Module):
    """Logits are the first four samples of each clip (x 10), so a waveform sets every clip's
    vote."""

    def forward(self, clips):
        return 10 * clips[:, 0, :4]


@pytest.mark.parametrize("tie_break", ["probability", "lowest"])
def test_song_model_vote_is_the_checkpoints_vote(tie_break):
    framing = Framing(CLIP, HOP)
    song = SongClassifier(Stub(), framing, tie_break).eval()
    program = torch.export.export(song, (torch.randn(CLIP + 3 * HOP),),
                                  dynamic_shapes=({0: torch.export.Dim("samples", min=1)},))
    rng = np.random.default_rng(0)
    for picks in ([2, 1, 2, 1], [3, 3, 0], [0, 1, 2, 3], [1]):     # ties, a clear winner, one clip
        waveform = np.zeros(CLIP + (len(picks) - 1) * HOP, dtype=np.float32)
        for i, pick in enumerate(picks):
            waveform[i * HOP: i * HOP + 4] = rng.uniform(0, 0.1, 4)
            waveform[i * HOP + pick] = 0.3 + rng.uniform(0, 0.1)
        probabilities = torch.softmax(Stub()(framing.clips(waveform)), -1)
        winner, _, shares, mean = vote(probabilities, "majority", tie_break)
        for run in (song, program.module()):
            _, got_mean, got_shares, majority = run(torch.from_numpy(waveform))
            assert int(majority) == winner, (picks, tie_break)
            np.testing.assert_allclose(got_shares.numpy(), shares, atol=1e-7)
            np.testing.assert_allclose(got_mean.numpy(), mean, rtol=1e-6)


def test_torch_export_file_round_trip(checkpoint, tmp_path):
    result = export_classifier(checkpoint, tmp_path / "model.pt2", "torch-export")
    program = torch.export.load(tmp_path / "model.pt2")
    model, state = eager_model(checkpoint)
    clips = torch.randn(4, 1, CLIP)
    with torch.no_grad():
        assert relative_error(program.module()(clips), model(clips)) < 1e-6
    meta = read_torch_export_metadata(tmp_path / "model.pt2")
    assert meta == result["metadata"] and json.loads(meta["classes"]) == state["classes"]
    assert result["relative_error"] < 1e-6


def test_authors_checkpoint_exports_with_their_framing(tmp_path, compact_release):
    theirs = random_release(4, torch.float32, **compact_release)
    torch.save(released_checkpoint(theirs), tmp_path / "MS-SincResNet.tar")
    result = export_classifier(tmp_path / "MS-SincResNet.tar", format="torch-export", song=True)
    assert result["path"] == tmp_path / "MS-SincResNet-song.pt2" and "assuming" in result["note"]
    meta = read_torch_export_metadata(result["path"])
    clip = compact_release["clip_samples"]
    assert meta["lookback_samples"] == str(round(2 / 3 * clip)) and meta["audio_scale"] == "32768.0"
    assert meta["fixed_samples"] == "480000" and meta["tie_break"] == "lowest"
    assert "authors' released" in meta["summary"]
    program = torch.export.load(result["path"]).module()
    model, record = load_checkpoint(tmp_path / "MS-SincResNet.tar")
    framing = Framing(clip, 8000, round(2 / 3 * clip), 32768.0)
    waveform = track(clip + 8000 * 2 + 3, 9)
    with torch.no_grad():
        want = model.eval()(framing.clips(waveform))
        assert relative_error(program(torch.from_numpy(waveform))[0], want) < 1e-5


@pytest.mark.parametrize("rates", [(44100, 16000), (22050, 16000), (8000, 16000), (48000, 16000)])
def test_numpy_resampler_is_torchaudios(rates):
    signal = track(int(rates[0] * 0.7) + 3, rates[0])
    want = resample(signal, *rates)
    got = sinc_resample(signal, *rates)
    assert got.shape == want.shape and got.dtype == np.float32
    assert relative_error(torch.from_numpy(got), torch.from_numpy(want)) < 1e-5


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """Two songs at other sample rates than the model's, one shorter than a clip, a broken file."""
    root = tmp_path_factory.mktemp("songs")
    soundfile.write(root / "a.wav", track(44100 * 2, 1), 44100)
    soundfile.write(root / "b.flac", track(4000, 2), 22050)
    soundfile.write(root / "c.wav", track(16000 * 3 + 5, 3), 16000)
    (root / "broken.wav").write_bytes(b"RIFF....WAVEnot audio")
    return root


def predict_json(argv, capsys) -> dict:
    assert main(["predict", *map(str, argv), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def predict_without_torch(argv) -> dict:
    """``mssincresnet predict ARGV --format json`` in a fresh interpreter where torch cannot
    be imported."""
    probe = ("import sys\nsys.modules['torch'] = None\nfrom models.cli import main\n"
             f"code = main({['predict', *map(str, argv), '--format', 'json']!r})\n"
             "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
             "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=Path(__file__).parents[3], timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_same_results(got: dict, want: dict):
    assert got["classes"] == want["classes"] and got["skipped"] == want["skipped"]
    assert [r["path"] for r in got["results"]] == [r["path"] for r in want["results"]]
    for ours, theirs in zip(got["results"], want["results"]):
        assert ours["genre"] == theirs["genre"] and ours["clips"] == theirs["clips"]
        for key in ("genre_vote_share", "genre_mean_probability"):
            assert ours[key] == pytest.approx(theirs[key], abs=2e-4)


@needs_onnx
def test_predict_onnx_needs_no_torch_and_agrees_with_the_checkpoint(checkpoint, onnx_clips,
                                                                    onnx_song, songs, capsys):
    # --vote mean: the decision is the mean probability, a number every step affects
    want = predict_json([songs, "--checkpoint", checkpoint, "--vote", "mean", "--device", "cpu"],
                        capsys)
    assert len(want["results"]) == 3 and len(want["skipped"]) == 1
    for model in (onnx_clips, onnx_song["path"]):
        assert_same_results(predict_without_torch([songs, "--onnx", model, "--vote", "mean"]), want)
    majority = predict_json([songs, "--checkpoint", checkpoint, "--device", "cpu"], capsys)
    assert_same_results(predict_json([songs, "--onnx", onnx_song["path"]], capsys), majority)


@needs_onnx
def test_predict_onnx_refuses_foreign_and_missing_models(songs, tmp_path, capsys):
    import onnx

    foreign = tmp_path / "foreign.onnx"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.save(onnx.helper.make_model(graph), foreign)
    for model, message in ((foreign, "not one written by 'mssincresnet export'"),
                           (tmp_path / "absent.onnx", "no such ONNX model")):
        assert main(["predict", str(songs), "--onnx", str(model)]) == 2
        assert message in capsys.readouterr().err


def test_export_errors_are_one_line(checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert "nope.pt: no such checkpoint" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ExportError, match="format must be one of"):
        export_classifier(checkpoint, tmp_path / "m.tflite", "tflite")
