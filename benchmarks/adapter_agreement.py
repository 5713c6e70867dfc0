"""Do a run's saved adapters reproduce its merged models? python -m benchmarks.adapter_agreement RUN_DIR

For every `<method>_e<E>_adapter` folder of the run (seed 0), on every image of the run's dataset
(train and test): argmax agreement and max |logit difference| between the merged checkpoint and
the adapter loaded with PEFT onto its saved base, and, for contrast, onto the original model
(what users did before the base was saved), with the forget class's accuracy for each. An adapter trained on
a model whose channels were removed (the default on conv nets) fits only its pruned base: its row onto the
original says so.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from peft import PeftModel

import prunelora
from prunelora.data import class_splits, load_dataset, to_float


def logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(images)


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def main(run: Path) -> None:
    data = json.loads((run / "results.json").read_text())["config"]["data"]
    splits = class_splits(load_dataset(data["dataset"], data["data_root"], False), data["forget_class"])
    parts = list(splits.named().values())
    images = torch.cat([to_float(p.images) for p in parts])
    labels = torch.cat([p.labels for p in parts])
    forget = labels == splits.forget_class
    print(f"{len(labels)} images of {data['dataset']}, forget class {splits.forget_class}")
    print("| adapter | model | loaded onto | argmax agreement % | max abs logit diff | forget acc merged / PEFT % |")
    print("|---|---|---|---:|---:|---|")
    for adapter in sorted(run.glob("seed0/models/*/*_adapter")):
        model = adapter.parent.name
        merged = logits(prunelora.load(adapter.with_name(adapter.name[:-len("_adapter")] + ".safetensors")), images)
        base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
        original = prunelora.load(next(run.glob(f"cache/{model}-*.safetensors")))
        saved_base = prunelora.load(adapter / base)
        fits = _shapes(saved_base)  # before PEFT wraps it in place
        for where, start in (("saved base", saved_base), ("original", original)):
            if _shapes(start) != fits:  # channels removed: the adapter fits its own base only
                print(f"| {adapter.name} | {model} | {where} | n/a: channels removed, the adapter fits its base only "
                      "| - | - |")
                continue
            out = logits(PeftModel.from_pretrained(start, str(adapter)), images)
            agree = (out.argmax(1) == merged.argmax(1)).float().mean() * 100
            acc = [(z.argmax(1)[forget] == splits.forget_class).float().mean() * 100 for z in (merged, out)]
            print(f"| {adapter.name} | {model} | {where} | {agree:.2f} | {(out - merged).abs().max():.2e} | "
                  f"{acc[0]:.1f} / {acc[1]:.1f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/digits"))
