"""Training MS-SincResNet and its baselines with the paper's or the authors' recipe (models.training.recipes).

SGD with Nesterov momentum and weight decay; a few warm-up epochs at a tiny learning rate, then the
base rate halved at a fixed period; each epoch draws a few random clips per song with gain and noise
augmentation; model selection on the validation split's song accuracy, never on the test songs.

Everything that could be lost survives a crash or Ctrl-C: checkpoints and logs are written to a
temporary file and renamed into place, and an interrupt saves the exact position inside the epoch.
Because every random choice of an epoch is seeded by (seed, epoch), ``--resume`` continues with the
same numbers an uninterrupted run would have produced.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..base.datafiles import CheckpointError
from ..base.logs import write_logs
from ..base.messages import warn
from ..base.progress import progress_bar
from ..base.runtime import autocast, resolve_device
from ..data.cache import Corpus
from ..data.clips import RandomClipDataset
from ..evaluation.scoring import predict_songs, score
from ..nets.common import count_parameters
from .card import build_card, describe_device, write_card
from .checkpoints import (CHECKPOINT_FORMAT, build_from_config, check_classes, load_model_state,
                          read_checkpoint, save_checkpoint)
from .config import TrainConfig
from .cutoffs import cutoff_shift, parameter_groups, shift_summary
from .mixup import mix_batch, mixed_cross_entropy
from .runs import split_names
from .schedule import EpochSampler, learning_rate

__all__ = ["Trainer", "EpochSampler", "learning_rate"]

class _StopRequested(Exception):
    """Raised at a step boundary after Ctrl-C, to save the exact position."""


@contextmanager
def _sigint_handler(handler):
    """Route Ctrl-C to ``handler`` inside the block, then restore the previous handler. Outside
    the main thread signals cannot be handled, and the block runs unchanged."""
    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _sigint_deferred():
    """Hold Ctrl-C while a checkpoint is being written, so a second press cannot corrupt it."""
    return _sigint_handler(signal.SIG_IGN)


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


class Trainer:
    """Trains one model on one split of a corpus and writes everything into ``out_dir``:
    ``last.pt`` (resumable), ``best.pt`` (the best epoch on ``config.select_on``: validation song
    accuracy by default) with its ``MODEL_CARD.md`` (each checkpoint carries its card as JSON,
    :mod:`models.training.card`), ``log.csv`` and ``log.json`` (one row per epoch).

    ``resume_from``: a checkpoint of this run to continue from (the trunk then comes from it, so
    no ImageNet weights are fetched); the trunk is otherwise initialised as ``config.backbone``.
    """

    def __init__(self, config: TrainConfig, corpus: Corpus, splits: dict, out_dir,
                 progress: bool = True, log=print, resume_from=None,
                 split_spec: Optional[dict] = None):
        self.config, self.corpus, self.splits = config, corpus, splits
        self.split_spec = split_spec      # how the splits were made (protocol, fold, ...), if known
        self.out_dir = Path(out_dir)
        self.progress, self.log = progress, log
        self.rank, self.local_rank, self.world = _distributed()
        self.device = resolve_device(config.device, self.local_rank)
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if len(splits["train"]) == 0:
            raise ValueError("the training split is empty")
        torch.manual_seed(config.seed)
        # A resumed run takes its trunk from the checkpoint: no ImageNet weights to fetch.
        self.model = build_from_config(config.model, len(corpus.classes), config.model_kwargs,
                                       config.sample_rate, config.clip_samples, config.spp,
                                       None if resume_from else config.backbone).to(self.device)
        if self._use("channels_last"):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # the cut-offs' own treatment (models.training.cutoffs); 'decay' is the published single group
        groups = parameter_groups(self.model, config.cutoffs, config.cutoff_lr_scale)
        self.optimizer = torch.optim.SGD(groups, lr=config.lr,
                                         momentum=config.momentum, nesterov=config.nesterov,
                                         weight_decay=config.weight_decay)
        framing = config.framing
        self.dataset = RandomClipDataset(corpus, splits["train"], config.clip_samples,
                                         config.hop_samples, config.clips_per_song, config.seed,
                                         config.gain, config.noise_std, config.noise,
                                         framing.lookback_samples, framing.scale)
        self.sampler = EpochSampler(len(self.dataset), config.seed, self.rank, self.world,
                                    config.clips_per_song if config.song_batches else 1)
        self.epoch, self.step = 0, 0
        self.partial = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.history: list[dict] = []
        self.best: dict = {"epoch": -1}
        # the evaluations (confusion matrices) of the best and of the latest epoch, for the cards
        self.best_scores: dict = {}
        self.last_scores: dict = {}
        self.rng_state = torch.get_rng_state()   # as of the last completed step
        self._stop_requested = False
        if config.select_on == "test":
            warn("select_on='test' keeps the epoch with the best *test* song accuracy, as the "
                 "authors' main.py reports it; that accuracy is optimistic, not an estimate of "
                 "accuracy on unseen songs")
        if resume_from:
            self.resume(resume_from)

    # -- helpers ---------------------------------------------------------------------------
    def _use(self, option: str) -> bool:
        value = getattr(self.config, option)
        return self.device.type == "cuda" if value == "auto" else value == "on"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def checkpoint(self) -> dict:
        """Everything needed to continue exactly where training stands now."""
        return {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
                "classes": list(self.corpus.classes), "dataset": self.corpus.name,
                "model_state": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch, "step": self.step, "partial": dict(self.partial),
                "history": self.history, "best": self.best, "torch_rng": self.rng_state,
                "splits": {k: np.asarray(v).tolist() for k, v in self.splits.items()},
                "split_names": split_names(self.splits, self.corpus.names),
                "split_spec": self.split_spec, "best_scores": self.best_scores}

    def card(self, epoch: int) -> dict:
        """The model card (:func:`models.training.card.build_card`) of the weights after ``epoch``."""
        scores = self.best_scores if epoch == self.best["epoch"] else self.last_scores
        card = build_card(config=self.config, classes=self.corpus.classes,
                          dataset=self.corpus.name,
                          split_sizes={k: int(len(v)) for k, v in self.splits.items()},
                          split_spec=self.split_spec, parameters=count_parameters(self.model),
                          epoch=epoch, best=self.best, history=self.history, scores=scores,
                          device=describe_device(self.device))
        card["training"]["step"] = self.step      # > 0: saved part-way through the next epoch
        return card

    def save(self, name: str = "last.pt") -> Path:
        """Write a checkpoint with its card atomically (main rank only), and for ``best.pt``
        the ``MODEL_CARD.md`` beside it; returns its path."""
        path = self.out_dir / name
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            best = name == "best.pt"
            card = self.card(self.best["epoch"] if best else self.epoch)
            with _sigint_deferred():
                save_checkpoint({**self.checkpoint(), "card": card}, path)
                if best:
                    write_card(self.out_dir, card, name)
        return path

    def resume(self, path) -> None:
        """Continue from a checkpoint of this run (same classes, same model)."""
        state = read_checkpoint(path)
        check_classes(state, self.corpus.classes, path)
        if state["config"]["model"] != self.config.model:
            raise CheckpointError(f"{path}: holds a {state['config']['model']!r} model, not "
                                  f"{self.config.model!r}")
        load_model_state(self.model, state["model_state"], path)
        saved_cutoffs = state["config"].get("cutoffs", "decay")
        if saved_cutoffs != self.config.cutoffs:    # other parameter groups in the optimiser
            raise CheckpointError(
                f"{path}: its optimiser state was saved with cutoffs={saved_cutoffs!r}, not "
                f"{self.config.cutoffs!r}; resume with the cut-off treatment the run started "
                "with")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) \
                as error:              # what torch's parsers of a file's dicts raise
            raise CheckpointError(f"{path}: its optimizer or random state does not fit this run "
                                  f"({type(error).__name__}: {str(error)[:100]})") from None
        self.epoch, self.step, self.partial = state["epoch"], state["step"], state["partial"]
        self.history, self.best = state["history"], state["best"]
        self.best_scores = state.get("best_scores", {})
        self.rng_state = state["torch_rng"]
        self.log(f"resumed from {path}: epoch {self.epoch + 1}, step {self.step}")

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train up to ``config.epochs``; returns the per-epoch history.

        The first Ctrl-C asks for a stop at the end of the current step: that exact position is
        saved to ``last.pt`` and ``KeyboardInterrupt`` is raised. A second Ctrl-C aborts at once
        and leaves the files on disk as they were (the last completed epoch).
        """
        with self._stop_on_sigint():
            try:
                while self.epoch < self.config.epochs:
                    self._train_epoch()
                    self._finish_epoch()
            except _StopRequested:
                path = self.save()
                self.log(f"\nstopped in epoch {self.epoch + 1} after step {self.step}: saved "
                         f"{path}; continue with --resume")
                raise KeyboardInterrupt from None
        return self.history

    def _stop_on_sigint(self):
        self._stop_requested = False

        def request_stop(signum, frame):
            if self._stop_requested:           # second Ctrl-C: abort now, write nothing
                raise KeyboardInterrupt
            self._stop_requested = True
            self.log("\nCtrl-C: stopping after this step (press again to abort without saving)")

        return _sigint_handler(request_stop)

    def _train_epoch(self) -> None:
        config = self.config
        lr = learning_rate(config, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.dataset.set_epoch(self.epoch)
        self.sampler.epoch, self.sampler.start = self.epoch, self.step * config.batch_size
        # the loader's own generator: creating its iterator must not draw from the global RNG,
        # whose state (dropout) a mid-epoch resume restores exactly
        loader_rng = torch.Generator().manual_seed(config.seed * 100003 + self.epoch)
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=config.batch_size,
                                             sampler=self.sampler, num_workers=config.workers,
                                             pin_memory=self.device.type == "cuda",
                                             generator=loader_rng)
        bar = self._bar(loader, f"epoch {self.epoch + 1}/{config.epochs}")
        self.model.train()
        started = time.perf_counter() - self.partial["seconds"]
        for clips, labels in bar:
            clips = clips.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            batch = mix_batch(clips, labels, config.mixup)
            with autocast(self.device, self._use("amp")):
                logits = self.net(batch.clips)
            loss = mixed_cross_entropy(logits.float(), batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(self._divergence_message(loss.item()))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            self.rng_state = torch.get_rng_state()
            self.partial["loss"] += loss.item() * len(labels)
            # under mixup a clip counts as right when it names the larger share of its mix
            dominant = batch.labels if batch.share >= 0.5 else batch.partner_labels
            self.partial["correct"] += int((logits.argmax(1) == dominant).sum())
            self.partial["seen"] += len(labels)
            self.partial["seconds"] = time.perf_counter() - started
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{self.partial['loss'] / self.partial['seen']:.3f}",
                                acc=f"{self.partial['correct'] / self.partial['seen']:.3f}",
                                clips_s=f"{self.partial['seen'] / self.partial['seconds']:.1f}")
            if self._stop_requested:
                raise _StopRequested

    def _divergence_message(self, loss: float) -> str:
        """What happened and what is safe: the step was not taken, and the checkpoints on disk
        are those of the last completed epoch."""
        last = self.out_dir / "last.pt"
        kept = (f"the last good checkpoint, {last} (after epoch {self.epoch}), is kept"
                if last.exists() else "no checkpoint was written yet")
        return (f"training diverged: the loss is {loss} in epoch {self.epoch + 1}, step "
                f"{self.step + 1}; that step was not taken and {kept}. Check the data for "
                "silent or broken files, or lower --lr")

    def _bar(self, loader, description):
        return progress_bar(loader, description, "batch", self.progress and self.is_main)

    def _finish_epoch(self) -> None:
        """Evaluate, log and checkpoint the epoch just trained. Its row times the training steps
        (data loading included) as ``step_seconds`` and the epoch as ``wall_seconds``: the steps
        and the evaluation (writing the checkpoints is not counted)."""
        evaluation_started = time.perf_counter()
        seen = max(1, self.partial["seen"])
        row = {"epoch": self.epoch + 1, "lr": learning_rate(self.config, self.epoch),
               "train_loss": self.partial["loss"] / seen, "train_clip_accuracy": self.partial["correct"] / seen,
               "step_seconds": self.partial["seconds"],
               "clips_per_second": seen / max(1e-9, self.partial["seconds"]),
               **cutoff_shift(self.model)}
        self.last_scores = {}
        if self.is_main:
            for split in dict.fromkeys(("valid", self.config.select_on)):
                if len(self.splits[split]):
                    scores = self.last_scores[split] = self.evaluate(split)
                    row.update({f"{split}_song_accuracy": scores["song_accuracy"],
                                f"{split}_clip_accuracy": scores["clip_accuracy"]})
        row["wall_seconds"] = self.partial["seconds"] + time.perf_counter() - evaluation_started
        self.history.append(row)
        self.epoch, self.step = self.epoch + 1, 0
        self.partial = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        improved = self._is_best(row)
        if improved:
            self.best_scores = self.last_scores
        if self.is_main:
            self.save("last.pt")
            if improved:
                self.save("best.pt")
            write_logs(self.history, self.out_dir)
            self.log(self._summary(row))
        if self.world > 1:
            torch.distributed.barrier()

    def _is_best(self, row: dict) -> bool:
        """Whether ``row``'s epoch is the best so far on the selection split (and record it).

        On the validation split, song accuracy on a few dozen songs ties often (several epochs
        reach 1.0), so the clip accuracy breaks the tie in favour of the epoch that is right more
        decisively. On the test split (select_on='test') the rule is the authors' main.py:
        the highest song accuracy, the earliest epoch on a tie. Without the split, every epoch
        is the best (the last one is kept).
        """
        split = self.config.select_on
        if not len(self.splits[split]):
            self.best = {"epoch": row["epoch"]}
            return True
        keys = [f"{split}_song_accuracy"] + ([f"{split}_clip_accuracy"] if split == "valid" else [])
        if [row[k] for k in keys] <= [self.best.get(k, -1.0) for k in keys]:
            return False
        self.best = {"epoch": row["epoch"], "selected_on": split, **{k: row[k] for k in keys}}
        return True

    def _summary(self, row: dict) -> str:
        text = (f"epoch {row['epoch']:3d}  lr {row['lr']:.2e}  loss {row['train_loss']:.4f}  "
                f"train clip acc {row['train_clip_accuracy']:.3f}  "
                f"{row['clips_per_second']:.1f} clips/s")
        for split in ("valid", "test"):
            if f"{split}_song_accuracy" in row:
                text += f"  {split} song acc {row[f'{split}_song_accuracy']:.3f}"
        moved = shift_summary(row)
        if moved:
            text += "  cut-offs moved (mean/max mel) " + ", ".join(
                f"{bank} {s['mean_mel']:.2f}/{s['max_mel']:.2f}" for bank, s in moved.items())
        return text

    def evaluate(self, split: str = "test", model=None) -> dict:
        """Song-level scores of ``model`` (default: the current one) on a split."""
        predictions = predict_songs(model or self.model, self.corpus, self.splits[split],
                                    self.config.framing, self.config.eval_batch_size, self.device,
                                    self._use("amp"), self.config.vote,
                                    progress=self.progress and self.is_main,
                                    tie_break=self.config.tie_break,
                                    description=f"evaluating the {split} songs")
        return score(predictions, self.corpus.classes)
