"""On-device batches and batched augmentation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from prunelora.data import ImageSet, augment, eval_batches, to_float, train_batches
from prunelora.data.batches import random_crop, random_flip


def random_images(n=32, c=3, h=16, w=16, seed=0) -> torch.Tensor:
    """uint8 images with no zero pixel (so that zero padding is recognisable) and no mirror symmetry."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def test_augment_keeps_shape_and_dtype():
    for shape in [(8, 3, 32, 32), (5, 1, 16, 16)]:
        images = random_images(*shape)
        out = augment(images, torch.Generator().manual_seed(0))
        assert out.shape == images.shape and out.dtype == torch.uint8
        assert out.is_contiguous()
        assert not torch.equal(out, images)  # something was cropped or flipped


def test_random_crop_with_zero_padding_is_identity():
    images = random_images()
    assert torch.equal(random_crop(images, 0, torch.Generator().manual_seed(0)), images)


def test_flip_flips_exactly_the_selected_images():
    images = random_images(n=40)
    out = random_flip(images, torch.Generator().manual_seed(3))
    selected = torch.rand(40, generator=torch.Generator().manual_seed(3)) < 0.5
    assert 0 < int(selected.sum()) < 40
    for i in range(40):
        expected = images[i].flip(-1) if selected[i] else images[i]
        assert torch.equal(out[i], expected), i
    # the flipped ones really differ from the input (the images are not mirror-symmetric)
    assert all(not torch.equal(out[i], images[i]) for i in range(40) if selected[i])


def _matching_shifts(original: torch.Tensor, crop: torch.Tensor, padding: int) -> list[tuple[int, int]]:
    c, h, w = original.shape
    padded = F.pad(original, (padding,) * 4)
    return [(dy - padding, dx - padding)
            for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
            if torch.equal(padded[:, dy:dy + h, dx:dx + w], crop)]


def test_crops_are_shifted_copies_of_the_padded_image():
    padding = 2
    images = random_images(n=24, c=3, h=12, w=12, seed=1)
    out = random_crop(images, padding, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    dy = torch.randint(0, 2 * padding + 1, (24,), generator=g)
    dx = torch.randint(0, 2 * padding + 1, (24,), generator=g)
    shifts = []
    for i in range(24):
        found = _matching_shifts(images[i], out[i], padding)
        assert len(found) == 1, f"image {i}: crop is not a unique shifted window of the padded image"
        assert found[0] == (int(dy[i]) - padding, int(dx[i]) - padding)
        shifts.append(found[0])
        # pixels that come from the image, not the padding, keep their values
        sy, sx = found[0]
        inner = out[i][:, max(0, -sy):12 - max(0, sy), max(0, -sx):12 - max(0, sx)]
        assert bool((inner > 0).all())
    assert len(set(shifts)) > 3  # the offsets vary over the batch


def test_augment_is_crop_then_flip_with_padding_an_eighth_of_the_side():
    images = random_images(n=16, c=3, h=32, w=32, seed=2)
    out = augment(images, torch.Generator().manual_seed(9))
    for i in range(16):
        direct = _matching_shifts(images[i], out[i], 4)
        mirrored = _matching_shifts(images[i], out[i].flip(-1), 4)
        assert len(direct) + len(mirrored) == 1


def numbered_set(n=50) -> ImageSet:
    """Sample i has label i and every pixel equal to i."""
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 1, 8, 8).contiguous()
    return ImageSet(images, torch.arange(n))


def test_train_batches_cover_every_sample_once_per_epoch():
    data = numbered_set(50)
    g = torch.Generator().manual_seed(0)
    orders = []
    for _ in range(2):
        seen, sizes = [], []
        for x, y in train_batches(data, 7, g, augmentation=False):
            assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
            assert torch.allclose(x[:, 0, 0, 0] * 255.0, y.float())  # images stay with their labels
            seen += y.tolist()
            sizes.append(len(y))
        assert sorted(seen) == list(range(50))
        assert sizes == [7] * 7 + [1]  # the last partial batch is kept
        orders.append(seen)
    assert orders[0] != orders[1] and orders[0] != list(range(50))  # shuffled, differently each epoch


def test_train_batches_with_augmentation_still_cover_every_label_once():
    data = ImageSet(random_images(n=30, c=3, h=16, w=16), torch.arange(30))
    seen = []
    for x, y in train_batches(data, 8, torch.Generator().manual_seed(1), augmentation=True):
        assert x.shape[1:] == (3, 16, 16) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        seen += y.tolist()
    assert sorted(seen) == list(range(30))


def test_train_batches_same_seed_same_order():
    data = numbered_set(20)
    a = [y.tolist() for _, y in train_batches(data, 6, torch.Generator().manual_seed(4), False)]
    b = [y.tolist() for _, y in train_batches(data, 6, torch.Generator().manual_seed(4), False)]
    c = [y.tolist() for _, y in train_batches(data, 6, torch.Generator().manual_seed(5), False)]
    assert a == b and a != c


def test_eval_batches_keep_order_and_to_float_scales():
    data = numbered_set(10)
    labels = torch.cat([y for _, y in eval_batches(data, 4)])
    assert labels.tolist() == list(range(10))
    x = to_float(torch.tensor([0, 51, 255], dtype=torch.uint8))
    assert torch.allclose(x, torch.tensor([0.0, 0.2, 1.0]))
