"""Peak of live tensor bytes on the CPU: the figure CUDA's max_memory_allocated gives on a GPU.

Resident-set growth on a CPU is dominated by the allocator and fixed costs (thread pools, kernels
loaded on first use), so it says little about what a method needs. This meter instead watches every
tensor an operator creates while it is open (a TorchDispatchMode sees each op's outputs, forward,
backward and optimiser alike), counts each storage once at its size, and subtracts it when the
storage is freed (a weak reference's callback): live bytes, and their peak.

Storages that existed before the meter opened (the model's weights, the data) are not counted, as
CUDA's figure is taken above what was allocated at entry; nor is an output that shares an input's
storage (a view such as a slice of the data, an in-place or out= result): only storages an
operator creates are allocations. Memory an operator uses internally and frees
before returning (a kernel's workspace) is not a tensor and is not counted on either device.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def _tensors(value) -> list[torch.Tensor]:
    """The tensors in an op's arguments or outputs (tuples, lists, dicts nested): torch's pytree flattening,
    restricted to the containers ops take, at a fraction of its per-op cost."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _storage_key(tensor: torch.Tensor) -> int:
    """The address of the tensor's storage (0 for tensors without one: sparse, meta)."""
    if tensor.layout != torch.strided or tensor.device.type == "meta":
        return 0
    return tensor.untyped_storage().data_ptr()


class TensorPeak(TorchDispatchMode):
    """Live bytes of the tensor storages created while open (`live`), and their maximum (`peak`)."""

    def __init__(self, device_type: str | None = "cpu"):
        super().__init__()
        self.device_type = device_type  # None: every device
        self.live = 0
        self.peak = 0
        self.counting = True  # False: ops pass through untracked (the peak so far is kept)
        self._storages: dict[int, tuple[weakref.ref, int]] = {}  # data pointer -> (storage ref, bytes)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.counting:
            return out
        inputs = {_storage_key(t) for t in _tensors((args, kwargs))}
        for value in _tensors(out):
            if _storage_key(value) not in inputs:
                self._track(value)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        key = _storage_key(tensor)
        if key == 0 or (self.device_type is not None and tensor.device.type != self.device_type):
            return
        storage = tensor.untyped_storage()
        size = storage.nbytes()
        if size == 0:
            return
        known = self._storages.get(key)
        if known is not None:
            if known[0]() is storage or known[1] == size:  # a view, an in-place op's output
                return
            self._release(key)  # the address was freed and reused before its callback ran
        self._storages[key] = (weakref.ref(storage, lambda _ref, key=key: self._release(key)), size)
        self.live += size
        self.peak = max(self.peak, self.live)

    def _release(self, key: int) -> None:
        entry = self._storages.pop(key, None)
        if entry is not None:
            self.live -= entry[1]

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20
