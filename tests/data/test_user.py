"""The user's data in every accepted form, in memory and streamed: the same samples, the same results."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import prunelora
from prunelora.data import ImageSet
from prunelora.data.stream import StreamedImages
from prunelora.data.user import as_imageset, streamed
from prunelora.errors import UserError

from ..zoo import TorchvisionResNet18


class CountingDataset(Dataset):
    """(image, label) items as NHWC numpy arrays; records every item read and the most read between resets."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.reads = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        self.reads += 1
        return self.images[i].transpose(1, 2, 0), int(self.labels[i])


@pytest.fixture(scope="module")
def pixels(digits_splits):
    data = digits_splits.retain_train
    return data.images.numpy(), data.labels.numpy()


@pytest.mark.parametrize("form", ["uint8", "nhwc-numpy", "float", "tensor-dataset", "dataloader", "dataset"])
def test_every_form_gives_the_same_images_and_labels(form, pixels):
    images, labels = pixels
    as_float = torch.from_numpy(images).float() / 255
    data = {
        "uint8": lambda: (torch.from_numpy(images), torch.from_numpy(labels)),
        "nhwc-numpy": lambda: (images.transpose(0, 2, 3, 1), labels),
        "float": lambda: (as_float, torch.from_numpy(labels)),
        "tensor-dataset": lambda: TensorDataset(as_float, torch.from_numpy(labels)),
        "dataloader": lambda: DataLoader(TensorDataset(as_float, torch.from_numpy(labels)), batch_size=7),
        "dataset": lambda: CountingDataset(images, labels),
    }[form]()
    expected = as_float if form in ("float", "tensor-dataset", "dataloader") else torch.from_numpy(images)
    for stream in (False, True):
        got = as_imageset(data, "retain", stream=stream)
        assert got.streamed is stream
        assert torch.equal(got.labels, torch.from_numpy(labels).long())
        assert got.images.shape == expected.shape and got.images.dtype == expected.dtype
        assert torch.equal(got.images[torch.arange(len(got))], expected)


def test_streamed_images_read_only_what_is_indexed(pixels):
    images, labels = pixels
    source = CountingDataset(images, labels)
    data = streamed(source, "retain")
    source.reads = 0
    part = data.subset(np.array([5, 1, 5, 9]))  # subsets never read
    joined = ImageSet.join([part, data.subset(torch.arange(3))])
    assert source.reads == 0 and joined.streamed and len(joined) == 7
    batch = joined.images[torch.tensor([0, 1, 2, 4])]  # positions 5, 1, 5 (read once), 0
    assert source.reads == 3
    assert torch.equal(batch, torch.from_numpy(images[[5, 1, 5, 0]]))
    assert torch.equal(joined.images[2:5], torch.from_numpy(images[[5, 9, 0]]))
    mask = torch.zeros(len(joined), dtype=torch.bool)
    mask[[1, 6]] = True
    assert torch.equal(joined.subset(mask).images[:], torch.from_numpy(images[[1, 2]]))


def test_a_memmap_pair_streams_by_itself(tmp_path, pixels):
    images, labels = pixels
    path = tmp_path / "images.u8"
    mapped = np.memmap(path, dtype=np.uint8, mode="w+", shape=images.shape)
    mapped[:] = images
    mapped.flush()
    data = as_imageset((np.memmap(path, dtype=np.uint8, mode="r", shape=images.shape), labels), "retain")
    assert isinstance(data.images, StreamedImages)
    assert torch.equal(data.images[np.arange(len(data))], torch.from_numpy(images))


@pytest.mark.parametrize("bad, message", [
    ((np.zeros((4, 8, 8, 8, 1), np.uint8), np.zeros(4, np.int64)), "shape"),
    ((np.zeros((4, 1, 8, 8), np.int32), np.zeros(4, np.int64)), "uint8 pixels or floats"),
    ((np.zeros((4, 1, 8, 8), np.uint8), np.zeros(3, np.int64)), "4 integer class indices"),
    ((np.zeros((4, 1, 8, 8), np.uint8), np.zeros(4, np.float32)), "integer class indices"),
    ("images.png", "cannot be streamed"),
])
def test_bad_data_to_stream_is_a_user_error(bad, message):
    with pytest.raises(UserError, match=message):
        streamed(bad, "retain")


@pytest.mark.slow
def test_unlearn_on_a_streamed_dataset_equals_unlearn_in_memory(digits_splits):
    """The same batches reach the model either way: the same history, metrics and weights."""
    splits = digits_splits
    torch.manual_seed(0)
    model = TorchvisionResNet18()
    results = {}
    for stream in (False, True):
        retain = CountingDataset(splits.retain_train.images.numpy(), splits.retain_train.labels.numpy())
        forget = CountingDataset(splits.forget_train.images.numpy(), splits.forget_train.labels.numpy())
        results[stream] = prunelora.unlearn(model, retain, forget, method="rl", epochs=2, batch_size=32,
                                            test=(splits.test_retain.images, splits.test_retain.labels),
                                            stream=stream)
    memory, stream = results[False], results[True]
    assert memory.history == stream.history
    for (name, a), (_, b) in zip(memory.model.state_dict().items(), stream.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_streamed_subset_takes_its_labels_from_its_dataset_without_reading(pixels):
    from torch.utils.data import Subset

    images, labels = pixels
    source = CountingDataset(images, labels)
    picked = [7, 3, 11]
    data = streamed(Subset(source, picked), "forget")
    assert source.reads == 1  # the first item, for the image shape
    assert data.labels.tolist() == labels[picked].tolist()
    assert torch.equal(data.images[torch.arange(3)], torch.from_numpy(images[picked]))


def test_a_streamed_dataloader_with_a_sampler_of_its_own_is_refused(pixels):
    from torch.utils.data import SubsetRandomSampler

    images, labels = pixels
    loader = DataLoader(CountingDataset(images, labels), sampler=SubsetRandomSampler([1, 2, 3]))
    with pytest.raises(UserError, match="Subset"):
        streamed(loader, "retain")
    assert len(as_imageset(loader, "retain")) == 3  # in memory, the loader's own batches are gathered
