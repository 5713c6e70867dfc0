"""The Python API: unlearn a user's own model on their own data, verify the forgetting, evaluate, load.

Any nn.Module works: prunelora's own models (with their registry plan), Hugging Face
`*ForImageClassification` models and torchvision/timm-style networks (plan inferred from their
structure). The model comes back as the same class, inside an UnlearnResult that says whether
the forget set is still recognised.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import storage
from .adapters import is_adapter_folder, load_adapter, save_user_adapter
from .config import MIA_MAX_PER_SIDE, EvidenceConfig, RunConfig, UnlearnConfig, validate
from .data import EVAL_BATCH, ImageSet, to_float
from .data.user import as_imageset, check_alike
from .errors import UnlearningWarning, UserError
from .methods import METHODS, MethodContext, get_method, grid_name
from .methods.reinflate import reinflate, strip
from .metrics.evaluate import collect_logits, metrics_from_logits, model_evidence, set_accuracy
from .models import LayerPlan, infer_plan, spec_of
from .models.causal_lm.loading import is_causal_lm
from .models.outputs import PREFIX, Classifier, input_name, logits_of, needs_wrapper, run_once, unwrap
from .plan_report import PlanReport, describe_plan
from .registry import CAUSAL_LM, IMAGE
from .runner import MethodRun, Snapshot, effective_plan, method_context, reinitialized, run_method

if TYPE_CHECKING:  # the causal-LM result; its module is imported when a causal LM is given
    from .api_causal_lm import LMResult

# Without until=, class-wise forgetting counts as done when the forget set's accuracy is at most this.
FORGET_TARGET = 20.0
# Samples of kept classes: forgotten at most this many points above unseen data's accuracy (the test set's).
SAMPLE_MARGIN = 5.0
RETAIN_PROBE = 1000  # retain samples measured after each epoch (a fixed, evenly spaced subset)


@dataclass
class UnlearnResult:
    """What `unlearn` returns: the model (the caller's own class) and the evidence that it forgot."""

    model: nn.Module
    method: str
    plan: LayerPlan
    history: list[dict[str, float]]  # per epoch: forget_acc, retain_acc, test_acc (percent, when measured)
    metrics: dict[str, float]  # the last epoch's
    epochs: int  # epochs run (fewer than asked when `until` was reached)
    seconds: float
    peak_memory_mb: float
    memory_kind: str  # cuda_max_allocated | cpu_tensor_peak (live tensor bytes, comparable with CUDA's)
    forgotten: bool | None  # None without a forget set to check
    target: float  # the forget accuracy (%) at or below which it counts as forgotten (NaN: not checked)
    warning: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # surgery facts (pruned channels, ...)
    trainable_params: int = 0
    rss_growth_mb: float | None = None  # CPU: resident-set growth (allocator and fixed costs included)
    _run: Any = field(default=None, repr=False)
    _wrapped: bool = field(default=False, repr=False)
    _in_original_shapes: bool = field(default=False, repr=False)  # `model` already written back (prune_mode auto)

    @property
    def removed_channels(self) -> dict[str, dict[str, list[int]]] | None:
        """Remove mode: the original indices taken out of each layer ("out"/"in"), in the model's own names."""
        prepared = self._run.prepared if self._run is not None else None
        if prepared is None or not prepared.removed:
            return None
        return strip(prepared.removed, PREFIX if self._wrapped else "")

    def in_original_shapes(self, template: nn.Module) -> nn.Module:
        """Remove mode: `template` (a copy of the original model, same class) holding this model's function,
        the removed channels back as exact zeros, so that `save_pretrained` / the user's factory reload it.
        Other modes: the model itself."""
        if self.removed_channels is None or self._in_original_shapes:
            return self.model
        return reinflate(self.model, template, self.removed_channels)

    def save_adapter(self, folder: str | Path, template: nn.Module | None = None) -> bool:
        """Write the PEFT adapter and the base it applies to (False for methods without adapters).

        The base is the model the method left outside the LoRA matrices (pruned, with its
        batch-norm statistics): a `save_pretrained` folder `base/` for Hugging Face models, else
        `base_model.safetensors` (the state dict). `PeftModel.from_pretrained(base, folder)` then
        gives `self.model`'s logits. Names are the user's own (prunelora's wrapper is taken out).
        In remove mode with `template` (a copy of the original model), base and adapter are written in
        the original shapes, removed channels as zeros (see in_original_shapes).
        """
        prepared = self._run.prepared if self._run is not None else None
        if prepared is None or prepared.save_adapters is None:
            return False
        removed = self.removed_channels if template is not None else None
        save_user_adapter(Path(folder), prepared, self.plan, self._wrapped, template, removed)
        return True

    def __repr__(self) -> str:
        shown = ", ".join(f"{k} {v:.1f}" for k, v in self.metrics.items())
        state = {True: "forgotten", False: "NOT forgotten", None: "unchecked"}[self.forgotten]
        return (f"UnlearnResult({self.method}, {self.epochs} epochs, {self.seconds:.1f} s: {shown}; {state}"
                f"{'; ' + self.warning if self.warning else ''})")


def as_classifier(model: nn.Module, example: torch.Tensor, mean: Sequence[float] | None,
                   std: Sequence[float] | None) -> tuple[nn.Module, bool]:
    """The model behind prunelora's contract (wrapped where it needs to be) and whether it was wrapped.

    Every entry point that runs a user's model goes through here: `unlearn`, `plan`, `evaluate` and
    the command line's `--model`.
    """
    if (mean is None) != (std is None):
        raise UserError("give both mean and std (per channel), or neither")
    check_weights(model)
    if needs_wrapper(model, example, normalized=mean is not None):
        return Classifier(model, mean, std, input_name(model)), True
    return model, False


def check_weights(model: nn.Module) -> None:
    """A model built on the meta device (shapes without weights, e.g. under init_empty_weights) has nothing to
    unlearn: said before torch fails to copy it."""
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        raise UserError("the model has no weights (its tensors are on the meta device): materialise it and load its "
                        "weights first (model.to_empty(device='cpu'), then model.load_state_dict(...))")


def check_labels_fit(net: nn.Module, example: torch.Tensor, sets: dict[str, ImageSet | None]) -> None:
    """Every label names one of the model's outputs: the class count is the model's, never the largest label."""
    width = logits_of(run_once(net, example)).shape[-1]
    for name, data in sets.items():
        top = int(data.labels.max()) if data is not None and len(data.labels) else -1  # empty: a set not given
        if top >= width:
            raise UserError(f"{name}: label {top} is out of range for a model with {width} outputs (classes 0 to "
                            f"{width - 1}); fix the labels, or give the model an output per class")


def plan(model: nn.Module, images: Any = None, methods: list[str] | None = None, mean: Sequence[float] | None = None,
         std: Sequence[float] | None = None, **settings: Any) -> PlanReport | str:
    """Which layers each method would prune, adapt and train on `model` (nothing runs but one forward pass).

    images: a few example images (or any data `unlearn` accepts) of the size the model takes. A causal LM needs
    none: its plan (a text: blocks, projections, what each surgery removes and trains) comes from its structure;
    settings are the causal-LM task's (e.g. {"unlearn.prune_amount": 0.5}).
    """
    if is_causal_lm(model):
        from .api_causal_lm import plan_causal_lm

        return plan_causal_lm(model, **settings)
    if images is None:
        raise UserError("plan(model, images): give a few images of the size the model takes")
    data = as_imageset(images, "images") if not isinstance(images, torch.Tensor) else None
    example = to_float((data.images if data is not None else images)[:2])
    net, wrapped = as_classifier(model, example, mean, std)
    return describe_plan(model, plan_for(model, net, example, wrapped, None), methods)


def plan_for(model: nn.Module, net: nn.Module, example: torch.Tensor, wrapped: bool,
              given: LayerPlan | None) -> LayerPlan:
    """The user's plan, the registry's for prunelora's own models, else one inferred from the structure."""
    if given is not None:
        return given
    spec = spec_of(model)
    if spec is not None:
        return dataclasses.replace(spec.plan, family=spec.family)
    return infer_plan(model, example, run=net if wrapped else None)


def unlearn(model: nn.Module, retain: Any, forget: Any | None = None, method: str | None = None,
            epochs: int = 5, plan: LayerPlan | None = None, seed: int = 0, pretrain_epochs: int = 15,
            test: Any | None = None, until: float | None = None, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None, progress: bool = False, surgery: str | None = None,
            objective: str | None = None, method_args: dict[str, Any] | None = None, stream: bool = False,
            flip: bool = True, tokenizer: Any = None, holdout: Any = None,
            **options: Any) -> UnlearnResult | LMResult:
    """Unlearn a copy of `model` (the input is not modified).

    A Hugging Face causal LM (with `tokenizer=`) runs the causal-LM task (api_causal_lm.py): `retain` and
    `forget` are question/answer or plain-text examples (a .jsonl path or rows), or `forget` names ids of
    `retain`'s examples; `holdout` (examples never trained on) gives the membership evidence; method defaults
    to "npo@prune+lora" and options are the task's settings by dotted name ({"unlearn.lora_r": 4}); the result
    is an LMResult. Everything below is the image task's.

    method: a registered method (default "prunelora"; see prunelora.METHODS), or give `surgery`
    ("none", "prune", "lora", "prune+lora") and `objective` (see prunelora.OBJECTIVES: "retain",
    "ga", "neggrad+", "rl", "l1-sparse", "salun", "scrub") for any point of the grid, e.g.
    surgery="prune+lora", objective="salun". method_args: the objective's settings (lr, optimizer,
    alpha, ...; defaults are its paper's).
    retain / forget / test: an ImageSet, an (images, labels) pair (uint8 pixels, or floats on the
    model's own scale; tensors or numpy), a torch Dataset of (image, label), or a DataLoader. Each is
    checked as it enters (a UserError otherwise): some images, integer labels within the model's
    outputs, no NaN or infinite pixels (streamed: as each batch is read), one image shape and kind
    across the sets. uint8 pixels are scaled to [0, 1] and, when `mean`/`std` are given (a Hugging Face model's
    image-processor values), normalised. Retain-only methods never train on the forget set;
    forget-aware ones (ga, rl, salun, scrub, ...) do. After every epoch the forget set's accuracy
    (and the test set's, when given) is measured; `until` stops at the first epoch at or below
    that forget accuracy (%). When the budget ends with the forget set still above the target
    (`until`, else 20 %), the result carries a warning (also issued as UnlearningWarning).
    `plan`: which layers to prune and adapt (default: the registry's for prunelora's own models,
    else inferred from the structure; see `prunelora.plan`). stream: data that does not fit in
    memory: images stay where they are (a Dataset, a np.memmap, host memory) and are read a batch
    at a time onto the model's device; the same results as in memory, slower. flip: whether the
    augmentation of the methods whose reference augments (rl, salun, ga, l1-sparse) may mirror the
    images (False for data that is not mirror-symmetric: digits, text). options: any UnlearnConfig field.
    prune_mode: auto (the default) trains the smaller network where removing channels is exact and returns
    the model in your model's own shapes, the removed channels as zeros (a drop-in replacement that
    `save_pretrained` and your factory reload); remove returns the smaller network itself
    (`result.in_original_shapes(copy.deepcopy(model))` writes it back); mask keeps the shapes throughout.
    """
    if method is not None and (surgery is not None or objective is not None):
        raise UserError("give a method, or a surgery and an objective, not both")
    if is_causal_lm(model):
        from .api_causal_lm import unlearn_causal_lm

        if forget is None:
            raise UserError("forget: name the examples to forget (rows, a .jsonl path, or ids of retain's examples)")
        chosen_lm = grid_name(surgery or "none", objective or "retain", CAUSAL_LM) if surgery or objective else method
        return unlearn_causal_lm(model, retain, forget, tokenizer=tokenizer, method=chosen_lm, holdout=holdout,
                                 epochs=epochs, seed=seed, method_args=method_args, progress=progress, **options)
    if tokenizer is not None or holdout is not None:
        raise UserError("tokenizer= and holdout= are for causal language models; this model is an image classifier")
    if surgery is not None or objective is not None:
        method = grid_name(surgery or "none", objective or "retain")
    method = method or "prunelora"
    chosen = get_method(method)
    check_weights(model)
    onto = next((p.device for p in model.parameters()), torch.device("cpu")) if stream else None
    retain_set = as_imageset(retain, "retain", stream, onto)
    forget_set = as_imageset(forget, "forget", stream, onto) if forget is not None else None
    test_set = as_imageset(test, "test", stream, onto) if test is not None else None
    sets = {"retain": retain_set, "forget": forget_set, "test": test_set}
    check_alike(sets)
    if chosen.uses_forget and forget_set is None:
        raise UserError(f"method '{method}' trains on the forget set: pass forget= (the data to forget)")
    if until is not None and not 0.0 <= until <= 100.0:
        raise UserError(f"until must be a forget-set accuracy in [0, 100] %, got {until}")
    fields = {f.name for f in dataclasses.fields(UnlearnConfig)} - {"until_forget_acc"}  # that one is until=
    unknown = set(options) - fields
    if unknown:
        raise UserError(f"unknown option '{sorted(unknown)[0]}' (known: {', '.join(sorted(fields))})")
    config = RunConfig(unlearn=UnlearnConfig(epochs=[epochs], **options), methods=[method],
                       method_args={method: dict(method_args or {})})
    config.pretrain.epochs = pretrain_epochs
    validate(config)
    chosen.check(config.method_args)
    forget_classes = whole_classes(retain_set, forget_set)
    if chosen.class_only and not forget_classes:
        raise UserError(f"method '{method}' forgets whole classes: the forget set must hold every sample of its "
                        "classes (none of them in retain)")
    device = retain_set.labels.device
    model = model.to(device)
    example = to_float(retain_set.images[:2])
    net, wrapped = as_classifier(model, example, mean, std)
    check_labels_fit(net, example, sets)
    ctx, user_plan = user_context(config, model, net, example, wrapped, plan, retain_set,
                                  forget_set if chosen.uses_forget else None, forget_classes or None, flip)
    log = EpochLog(retain_set, forget_set, test_set, until)
    started = time.perf_counter()
    run = run_method(method, net, retain_set, ctx, seed=seed, cache_prefix=config.unlearn.cache_prefix,
                     progress=progress, on_epoch=log)
    seconds = time.perf_counter() - started
    if not log.history:  # a method that does not train (logit-mask): measured once
        log(0, run.snapshots[-1].model)
    result = result_of(run, run.snapshots[-1], user_plan, log.history, until, wrapped, seconds,
                       class_wise=bool(forget_classes))
    if config.unlearn.prune_mode == "auto" and result.removed_channels:  # trained smaller, handed back in its shapes
        result.model = result.in_original_shapes(copy.deepcopy(model))
        result._in_original_shapes = True
    if result.warning:
        warnings.warn(result.warning, UnlearningWarning, stacklevel=2)
    return result


def user_context(config: RunConfig, model: nn.Module, net: nn.Module, example: torch.Tensor, wrapped: bool,
                 given: LayerPlan | None, retain: ImageSet, forget: ImageSet | None, forget_classes: list[int] | None,
                 flip: bool = True) -> tuple[MethodContext, LayerPlan]:
    """A method's context on a user's model (net: the model behind prunelora's contract), and the plan in the
    user's own layer names. The config's layer overrides are applied to the plan (and then cleared in
    `config`, since they name the user's layers, not the wrapper's)."""
    user_plan = effective_plan(config, plan_for(model, net, example, wrapped, given))
    config.unlearn.prune_layers = config.unlearn.lora_layers = None  # applied above, to the user's own names
    family = user_plan.family or ("resnet" if any(isinstance(m, nn.Conv2d) for m in model.modules()) else "vit")
    run_plan = user_plan.prefixed(PREFIX) if wrapped else user_plan
    ctx = method_context(config, run_plan, family, lambda: reinitialized(net), retain, forget, forget_classes,
                         flip=flip)
    return ctx, user_plan


class EpochLog:
    """An on_epoch hook: after every epoch the accuracy on a fixed retain probe, the forget set and the test
    set (the given ones) goes into `history`; the run stops at the first epoch at or below `until`."""

    def __init__(self, retain: ImageSet, forget: ImageSet | None, test: ImageSet | None,
                 until: float | None) -> None:
        self.probe, self.forget, self.test, self.until = _retain_probe(retain), forget, test, until
        self.history: list[dict[str, float]] = []

    def __call__(self, epoch: int, current: nn.Module) -> bool:
        row = {"epoch": epoch, "retain_acc": set_accuracy(current, self.probe)}
        if self.forget is not None:
            row["forget_acc"] = set_accuracy(current, self.forget)
        if self.test is not None:
            row["test_acc"] = set_accuracy(current, self.test)
        self.history.append(row)
        return self.until is not None and self.forget is not None and row["forget_acc"] <= self.until


def result_of(run: MethodRun, snapshot: Snapshot, plan: LayerPlan, history: list[dict[str, float]],
              target: float | None, wrapped: bool, seconds: float, class_wise: bool = True) -> UnlearnResult:
    """The UnlearnResult of one budget of a run: `history` holds that budget's epochs, the last one deciding
    whether the forget set is forgotten (a warning when it is still recognised).

    Whole classes are forgotten when their accuracy is at most `target` (until=, else FORGET_TARGET). Samples
    of classes the model keeps (a named-sample or random request) are forgotten when they are recognised no
    better than unseen data of the kept classes: their accuracy at most the test set's plus SAMPLE_MARGIN
    points (until= sets it instead); far below it they are over-forgotten (a tell of its own), and without a
    test set they are not checked."""
    final = history[-1] if history else {}
    metrics = {k: v for k, v in final.items() if k != "epoch"}
    unseen = metrics.get("test_acc")
    if target is None and not class_wise:
        target = unseen + SAMPLE_MARGIN if unseen is not None else None
    elif target is None:
        target = FORGET_TARGET
    forgotten = metrics["forget_acc"] <= target if "forget_acc" in metrics and target is not None else None
    warning = None
    if forgotten is False and class_wise:
        warning = (f"the forget set is still recognised: forget accuracy {metrics['forget_acc']:.1f} % after "
                   f"{len(history)} epochs (target at most {target:g} %). Try more epochs, a higher learning rate "
                   f"(lr=3e-3), more layers in the plan, or {forget_aware_hint(get_method(run.method))}")
    elif forgotten is False:
        warning = (f"the forget set is still recognised: forget accuracy {metrics['forget_acc']:.1f} % after "
                   f"{len(history)} epochs, unseen data's {unseen:.1f} % (target at most {target:.1f} %, the unseen "
                   f"accuracy plus {SAMPLE_MARGIN:g} points). Try more epochs, a higher learning rate or "
                   f"{forget_aware_hint(get_method(run.method))}")
    elif not class_wise and unseen is not None and "forget_acc" in metrics \
            and metrics["forget_acc"] < unseen - SAMPLE_MARGIN:
        warning = (f"the forget set is over-forgotten: forget accuracy {metrics['forget_acc']:.1f} % after "
                   f"{len(history)} epochs, well below unseen data's {unseen:.1f} % (a model that never saw these "
                   "samples would recognise them about as well as unseen ones). Try fewer epochs or a lower "
                   "learning rate")
    return UnlearnResult(model=unwrap(snapshot.model), method=run.method, plan=plan, history=history,
                         metrics=metrics, epochs=max(0, final["epoch"]) if final else 0, seconds=seconds,
                         peak_memory_mb=snapshot.peak_memory_mb, memory_kind=snapshot.memory_kind,
                         forgotten=forgotten, target=target if target is not None else float("nan"),
                         warning=warning, info=dict(run.info),
                         trainable_params=run.trainable_params, rss_growth_mb=snapshot.rss_growth_mb, _run=run,
                         _wrapped=wrapped)


def forget_aware_hint(chosen) -> str:
    """What to try next: the forget-aware methods (that train on the forget set), with this method's surgery."""
    names = ", ".join(f"'{m.name}'" for m in METHODS.of(IMAGE).values() if m.uses_forget)
    if chosen.uses_forget:
        return f"another forget-aware method ({names})"
    hint = f"a forget-aware method (method={names.split(', ')[0]} or {', '.join(names.split(', ')[1:])})"
    if chosen.surgery not in ("none", "reinit"):
        hint += f", or keep this surgery with a forget-aware objective (surgery='{chosen.surgery}', objective='salun')"
    return hint


def whole_classes(retain: ImageSet, forget: ImageSet | None) -> list[int]:
    """The forget set's classes when it holds whole classes (none of them in retain), else []."""
    if forget is None or len(forget) == 0:
        return []
    classes = set(forget.labels.unique().tolist())
    return sorted(classes) if not classes & set(retain.labels.unique().tolist()) else []


def _retain_probe(retain: ImageSet) -> ImageSet:
    """An evenly spaced subset of the retain set: its accuracy per epoch at a bounded cost."""
    if len(retain) <= RETAIN_PROBE:
        return retain
    index = torch.linspace(0, len(retain) - 1, RETAIN_PROBE).round().long()
    return retain.subset(index)


def evaluate(model: nn.Module, splits: Any, seed: int = 0, batch_size: int = EVAL_BATCH,
             mia_cap: int = MIA_MAX_PER_SIDE, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None, evidence: EvidenceConfig | None = None,
             original: nn.Module | None = None, tokenizer: Any = None, **settings: Any) -> dict[str, float]:
    """UA, RA, TA, forget-test accuracy, every membership attack (with its attacker's accuracy), the
    challenge's loss attack and the linear probe, in percent; relearn time too when `original` is given.

    evidence: the settings of the evidence (EvidenceConfig(): 5 shadow draws, balanced protocol).
    A causal LM (with `tokenizer=`) is measured on `splits` = {"forget": ..., "retain": ..., "holdout": ...}
    (examples: a .jsonl path or rows): answer probability, ROUGE-L, truth ratio, utility and the attacks' AUCs.
    """
    if is_causal_lm(model):
        from .api_causal_lm import evaluate_causal_lm

        return evaluate_causal_lm(model, splits, tokenizer=tokenizer, seed=seed, **settings)
    evidence = evidence or EvidenceConfig()
    example = to_float(splits.retain_train.images[:2])
    net, _ = as_classifier(model, example, mean, std)
    reference = as_classifier(original, example, mean, std)[0] if original is not None else None
    features: dict = {}
    logits, labels = collect_logits(net, splits, batch_size, features)
    return {**metrics_from_logits(logits, labels, seed, mia_cap, evidence),
            **model_evidence(net, splits, seed, evidence, reference, batch_size, features=features or None)}


def load(path: str | Path) -> nn.Module:
    """A model saved by prunelora; no unpickling.

    A .safetensors checkpoint gives the model it describes; a saved adapter folder gives its base
    with the adapter applied, as a PEFT model (the same predictions as the merged checkpoint).
    """
    if is_adapter_folder(Path(path)):
        return load_adapter(path)
    return storage.load_model(path)[0]
