"""Registry models as a stage subject: built by models.build_model, saved as safetensors with their metadata.

A budget's model is seed<s>/models/<model>[/r<k>]/<method>[_e<epochs>].safetensors; the final budget's
adapters (LoRA methods) go beside it in <method>_e<epochs>_adapter/ with their base.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import storage
from ..adapters import BASE_SUFFIX, base_description, model_card, same_weights, save_adapter_folder
from ..config import DataConfig, RunConfig
from ..data import ImageSet, Splits
from ..metrics.cost import MemoryMeter
from ..metrics.evaluate import set_accuracy
from ..models import build_model, get_spec
from ..runner import count_trainable, method_context, pretrain_settings, run_method
from ..train import PRETRAIN_HINT, fit
from .subject import Delivery, Outcome, StagePlace


def model_meta(name: str, args: dict, splits: Splits, data: DataConfig, **extra: Any) -> dict[str, Any]:
    """A checkpoint's description of itself: how to rebuild it, and the data context it was made in.

    The data context (dataset, its folder, the per-class subset sizes) lets `unlearn` and
    `evaluate` on the checkpoint use the same data without the user repeating it.
    """
    channels, size, _ = splits.image_shape
    root = str(Path(data.data_root).expanduser().resolve()) if data.data_root else None
    context = {"data_root": root, "train_per_class": data.train_per_class, "test_per_class": data.test_per_class}
    if splits.subset_key is not None:  # named samples were forced into the training subset: which subset it was
        context["subset_key"] = splits.subset_key
    return {"model": name, "model_args": args, "num_classes": splits.num_classes, "in_channels": channels,
            "image_size": size, "mean": list(splits.mean), "std": list(splits.std), "dataset": data.dataset,
            "data": context, **extra}


def describe_model(name: str, args: dict, params: int) -> str:
    shown = ", ".join(f"{k} {v}" for k, v in args.items())
    return f"{name} ({shown}; {params / 1e3:.0f}k params)" if shown else f"{name} ({params / 1e3:.0f}k params)"


def forgotten_at(until: float | None, forget: ImageSet):
    """An on_epoch hook that stops the run once the forget set's accuracy is at most `until` (%), or None."""
    if until is None:
        return None

    def check(epoch: int, model: nn.Module) -> bool:
        return len(forget) > 0 and set_accuracy(model, forget) <= until

    return check


def budget_tag(method: str, epochs: int | None) -> str:
    """A budget's file name stem: the method, and its epochs for iterative methods."""
    return method + (f"_e{epochs}" if epochs is not None else "")


@dataclass
class RegistrySubject:
    """One registry model of the run (name and arguments from the config)."""

    name: str
    config: RunConfig
    device: torch.device
    flip: bool  # may augmentation mirror the images (the dataset's)
    progress: bool = True

    @property
    def args(self) -> dict[str, Any]:
        return self.config.model_args.get(self.name, {})

    @property
    def family(self) -> str:
        return get_spec(self.name, self.args).family

    def fresh(self, splits: Splits, start: nn.Module | None = None) -> nn.Module:
        return build_model(self.name, splits.num_classes, splits.image_shape[0], splits.image_shape[1],
                           splits.mean, splits.std, self.args)

    def train(self, data: ImageSet, splits: Splits, seed: int, desc: str) -> tuple[nn.Module, dict[str, Any], float]:
        """A fresh model trained on `data` with the pre-training recipe (an original); what it cost (its
        checkpoint's "training" record), and the seconds inside training steps."""
        cfg = self.config
        torch.manual_seed(seed)
        model = self.fresh(splits).to(self.device)
        settings = pretrain_settings(cfg, self.family, self.flip)
        with MemoryMeter(self.device) as meter:
            history = fit(model, data, settings, cfg.pretrain.epochs, seed=seed, precision=cfg.precision,
                          channels_last=cfg.channels_last, desc=desc, progress=self.progress, hint=PRETRAIN_HINT,
                          on_epoch_end=lambda epoch, history: meter.stop_counting_tensors())
        training = {"sec_per_epoch": sum(history.epoch_seconds) / len(history.epoch_seconds),
                    "total_sec": history.seconds_until(len(history.epoch_seconds)),
                    "peak_memory_mb": meter.final_mb, "memory_kind": meter.kind, "rss_growth_mb": meter.final_rss_mb,
                    "trainable_params": count_trainable(model)}
        return model, training, sum(history.epoch_seconds)

    def run_on(self, method: str, start: nn.Module, retain: ImageSet, forget: ImageSet | None, splits: Splits,
               seed: int, desc: str | None = None, until: ImageSet | None = None) -> Outcome:
        """The method on `start` with `retain` / `forget` (the run's sets, or a U-LiRA shadow pair's)."""
        cfg, spec = self.config, get_spec(self.name, self.args)
        ctx = method_context(cfg, spec.plan, spec.family, lambda: self.fresh(splits), retain, forget,
                             splits.forget_classes or None, flip=self.flip)
        on_epoch = forgotten_at(cfg.unlearn.until_forget_acc, until) if until is not None else None
        return Outcome(run_method(method, start, retain, ctx, seed=seed, precision=cfg.precision,
                                  channels_last=cfg.channels_last, cache_prefix=cfg.unlearn.cache_prefix,
                                  progress=self.progress, desc=desc, on_epoch=on_epoch))

    def run(self, method: str, start: nn.Module, splits: Splits, seed: int, desc: str) -> Outcome:
        return self.run_on(method, start, splits.retain_train, splits.new_forget, splits, seed, desc,
                           until=splits.forget_train)

    def evaluated(self, model: nn.Module) -> nn.Module:
        return model

    def final(self, outcome: Outcome) -> nn.Module:
        return outcome.run.snapshots[-1].model

    def deliverable(self, place: StagePlace, method: str, epochs: int | None, last: bool) -> Path:
        folder = place.models / place.part if place.part else place.models
        return folder / f"{budget_tag(method, epochs)}.safetensors"

    def save(self, path: Path, delivery: Delivery) -> dict[str, Any]:
        """The model with its metadata; for the final budget of a LoRA method, the adapter and its base too."""
        run, splits, snap = delivery.run, delivery.splits, delivery.snapshot
        meta = model_meta(self.name, self.args, splits, self.config.data, method=run.method, epochs=snap.epochs,
                          seed=delivery.seed, forget_class=splits.forget_class, forget_classes=splits.forget_classes,
                          request=delivery.request, **run.info)
        storage.save_model(snap.model, path, meta)
        if run.prepared.save_adapters is not None and delivery.last:
            base = run.prepared.adapter_base()
            description = base_description(run.info, same_weights(base, delivery.start))
            base_meta = {**meta, "method": run.method + BASE_SUFFIX, "adapter_base": True}
            save_adapter_folder(path.with_name(f"{path.stem}_adapter"), run.prepared.save_adapters, base, base_meta,
                                model_card(meta, delivery.metrics, description, path.name))
        return {}

    def load(self, path: Path) -> nn.Module:
        return storage.load_model(path)[0].to(self.device)

    def loader(self) -> dict[str, Any]:
        return {"kind": "prunelora"}
