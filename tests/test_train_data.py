"""The training batches: the authors' sampling (each epoch a permutation of the images, drop_last), as a pure
function of (seed, step), sliced by rank, and the h5 checks at set-up."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from srkit.data.train_data import StepBatches, TrainDataError
from train_fixtures import packed_div2k


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    return packed_div2k(tmp_path_factory.mktemp("eight"))


@pytest.mark.parametrize("batch", [8, 4, 3])
def test_every_image_once_per_epoch_over_2000_steps(eight, batch):
    data = StepBatches(eight, (2,), 16, batch, seed=3)
    per_epoch = 8 // batch  # drop_last: 3 images of batch 3 are left out of each epoch, as in the authors' loader
    epochs = [np.concatenate([data.images(e * per_epoch + k) for k in range(per_epoch)]) for e in range(2000 // per_epoch)]
    for seen in epochs:
        assert len(seen) == per_epoch * batch and len(set(seen.tolist())) == len(seen)  # no repeat in an epoch
    if batch in (8, 4):
        assert all(sorted(seen.tolist()) == list(range(8)) for seen in epochs)  # every image, exactly once
    assert len({tuple(e) for e in epochs}) > 100  # the order changes from epoch to epoch


def test_a_batch_is_a_function_of_seed_and_step_and_ranks_slice_it(eight):
    one = StepBatches(eight, (2, 3, 4), 16, 4, seed=1)
    again = StepBatches(eight, (2, 3, 4), 16, 4, seed=1)
    for step in (0, 5, 1234):
        (hr, lr, s), = one[step]
        (hr2, lr2, s2), = again[step]
        assert s == s2 and torch.equal(hr, hr2) and torch.equal(lr, lr2)
        parts = [StepBatches(eight, (2, 3, 4), 16, 4, seed=1, rank=r, world=2)[step][0] for r in (0, 1)]
        assert all(p[2] == s for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), hr) and torch.equal(torch.cat([p[1] for p in parts]), lr)
    other = StepBatches(eight, (2, 3, 4), 16, 4, seed=2)[5][0]
    assert not torch.equal(other[1], one[5][0][1])


def test_bgr_is_the_rgb_patch_reversed(eight):
    rgb = StepBatches(eight, (2,), 16, 4, seed=1)[7][0]
    bgr = StepBatches(eight, (2,), 16, 4, seed=1, channel_order="BGR")[7][0]
    assert torch.equal(bgr[0], rgb[0].flip(1)) and torch.equal(bgr[1], rgb[1].flip(1))


def test_too_few_images_for_a_batch_is_one_line(eight):
    with pytest.raises(TrainDataError, match="8 images, fewer than one batch of 16"):
        StepBatches(eight, (2,), 16, 16)
