"""The README example on each model family, trained briefly on digits: python -m benchmarks.model_families

For the tiny HF ViT / ResNet / ConvNeXt / Swin and the torchvision- and timm-named networks of
tests/zoo.py: train 15 epochs (AdamW 3e-3) on every digits class, then
`prunelora.unlearn(..., epochs=10, until=5.0, keep_sparsity=True)` with PruneLoRA and LoRA, and
print a Markdown table. One seed: it shows that each family runs and what it reports, not a
ranking. Needs the hf extra; about a minute on 2 cores. Run from the repository root.
"""
from __future__ import annotations

import warnings

import torch

import prunelora
from prunelora.data import class_splits, load_dataset
from prunelora.models.outputs import Classifier, input_name
from prunelora.train import OptimSettings, fit
from tests.zoo import TimmViT, TorchvisionResNet18, hf_models


def main() -> None:
    warnings.simplefilter("ignore")
    splits = class_splits(load_dataset("digits"), 3)
    families = {**{f"HF {k}": v for k, v in hf_models().items()},
                "torchvision-named ResNet-18 (w8)": TorchvisionResNet18(), "timm-named ViT": TimmViT()}
    recipe = OptimSettings(optimizer="adamw", lr=3e-3, weight_decay=0.05, batch_size=64, augment=False,
                           schedule="cosine")
    print("| model | original TA / forget-train acc | method | epochs run | forget-train acc | TA | forgotten |")
    print("|---|---|---|---:|---:|---:|---|")
    for name, model in families.items():
        torch.manual_seed(0)
        fit(Classifier(model, input_name=input_name(model)), splits.train, recipe, 15, seed=0, progress=False)
        before = prunelora.evaluate(model, splits)
        for method in ("prunelora", "lora"):
            result = prunelora.unlearn(model, splits.retain_train, splits.forget_train, method=method, epochs=10,
                                       until=5.0, test=splits.test_retain, keep_sparsity=True)
            print(f"| {name} | {before['ta']:.1f} / {100 - before['ua']:.1f} | {method} | {result.epochs} | "
                  f"{result.metrics['forget_acc']:.1f} | {result.metrics['test_acc']:.1f} | {result.forgotten} |",
                  flush=True)


if __name__ == "__main__":
    main()
