"""Mixup (models.training.mixup) against float64 oracles written from Zhang et al. (ICLR 2018):
the mixed batch is share * x + (1 - share) * x[partner], the loss the cross-entropy against the
soft target share * onehot(y) + (1 - share) * onehot(y[partner])."""
import numpy as np
import pytest
import torch

from models.cli import build_parser
from models.training.config import TrainConfig
from models.training.mixup import MixedBatch, mix_batch, mixed_cross_entropy

SEED = 23


def batch(seed=SEED, size=6, samples=50, classes=4):
    print(f"mixup batch seed {seed}")
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(size, samples, generator=gen),
            torch.randint(0, classes, (size,), generator=gen))


def test_the_mixed_batch_is_the_convex_combination_of_the_batch_and_its_permutation():
    clips, labels = batch()
    torch.manual_seed(SEED)
    mixed = mix_batch(clips, labels, alpha=0.4)
    assert 0.0 <= mixed.share <= 1.0
    # which clip went with which: each row of the result lies on the segment between its own clip
    # and exactly one other row of the batch, the one whose label is its partner label
    x = clips.double().numpy()
    for row in range(len(clips)):
        partner = [j for j in range(len(clips))
                   if np.allclose(mixed.clips[row].double().numpy(),
                                  mixed.share * x[row] + (1 - mixed.share) * x[j], atol=1e-6)]
        assert len(partner) == 1, row
        assert int(mixed.partner_labels[row]) in {int(labels[j]) for j in partner}
    assert torch.equal(mixed.labels, labels)
    # a permutation: every clip is somebody's partner once
    assert sorted(mixed.partner_labels.tolist()) == sorted(labels.tolist())


def test_mixing_is_reproducible_under_the_global_seed_and_off_at_alpha_zero():
    clips, labels = batch()
    torch.manual_seed(SEED)
    first = mix_batch(clips, labels, 0.4)
    torch.manual_seed(SEED)
    again = mix_batch(clips, labels, 0.4)
    assert first.share == again.share and torch.equal(first.clips, again.clips)
    state = torch.get_rng_state()
    off = mix_batch(clips, labels, 0.0)
    assert off.share == 1.0 and off.clips is clips and torch.equal(off.partner_labels, labels)
    assert torch.equal(torch.get_rng_state(), state), "alpha = 0 must not draw random numbers"


def test_the_shares_follow_beta_alpha_alpha():
    clips, labels = batch(size=4)
    torch.manual_seed(SEED)
    shares = np.array([mix_batch(clips, labels, 0.4).share for _ in range(4000)])
    # Beta(0.4, 0.4): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.1389; 4000 draws put the
    # sample mean within ~0.006 (1 sigma) and the variance within ~0.003 of them
    assert abs(shares.mean() - 0.5) < 0.03
    assert abs(shares.var() - 1 / (4 * (2 * 0.4 + 1))) < 0.015
    assert (np.abs(shares - 0.5) > 0.4).mean() > 0.3      # U-shaped: most mass near 0 and 1


@pytest.mark.parametrize("share", [1.0, 0.73, 0.2])
def test_the_mixed_loss_is_the_cross_entropy_against_the_soft_target(share):
    gen = torch.Generator().manual_seed(SEED)
    logits = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 1])
    partners = torch.tensor([2, 2, 0, 3, 1])
    mixed = MixedBatch(torch.zeros(5, 3), labels, partners, share)
    log_p = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    target = share * np.eye(4)[labels.numpy()] + (1 - share) * np.eye(4)[partners.numpy()]
    expected = -(target * log_p).sum(1).mean()
    got = float(mixed_cross_entropy(logits, mixed))
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_the_flag_reaches_the_config_and_a_negative_value_is_an_error():
    args = build_parser().parse_args(["train", "data/", "--mixup", "0.4"])
    assert args.mixup == 0.4
    assert TrainConfig(mixup=0.4).mixup == 0.4
    assert TrainConfig().mixup == 0.0          # both recipes: off (the paper does not mix)
    with pytest.raises(ValueError, match="mixup must be non-negative"):
        TrainConfig(mixup=-0.1)
