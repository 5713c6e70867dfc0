"""Each baseline does what its reference code does (issue 20), checked from the definitions on hand-built problems.

RL relabels over every class, anew each epoch (per batch in the sequential variant); one NegGrad+ step is the
plain SGD step on alpha CE(retain) - (1 - alpha) CE(forget); SCRUB draws the reference's batch sizes and
decays its lr by the reference's rule; augmentation is on exactly where the reference trains with it, seeded,
and never mirrors when the images may not be; no SGD objective uses Nesterov unless asked; l1-sparse's every
budget gets its own full decay.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunelora import train
from prunelora.config import RunConfig, UnlearnConfig, resolve
from prunelora.data import ImageSet
from prunelora.errors import UserError
from prunelora.methods import METHODS, MethodContext, get_method, objective_args
from prunelora.methods.base import recipe_settings
from prunelora.models import LayerPlan
from prunelora.objectives import random_labels as rl_module
from prunelora.objectives.l1_sparse import L1Sparse
from prunelora.objectives.neggrad_plus import NegGradArgs, NegGradPlus
from prunelora.objectives.random_labels import RandomLabels, RLArgs
from prunelora.objectives.scrub import Scrub, ScrubArgs
from prunelora.registry import IMAGE
from prunelora.runner import pretrain_settings, resolved_settings, run_method
from prunelora.train import OptimSettings, fit

CLASSES = 4
SGD_METHODS = ("ga", "neggrad+", "rl", "ft-l1", "salun", "scrub")
AUGMENTED = {"ga", "rl", "salun", "ft-l1", "retrain"}  # the references that train on augmented images


class Recorder(nn.Module):
    """A small classifier that keeps every input it is given (what the training steps feed it)."""

    def __init__(self, shape: tuple[int, int, int] = (1, 4, 4), seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        c, h, w = shape
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 8), nn.Tanh(), nn.Linear(8, CLASSES))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.body(x)


def noise(n: int, seed: int, shape: tuple[int, int, int] = (1, 4, 4), first_pixel: int | None = None) -> ImageSet:
    """Random uint8 images with random labels; first_pixel marks the set (0 retain, 255 forget)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(1, 255, (n, *shape), generator=g, dtype=torch.uint8)
    if first_pixel is not None:
        images[:, 0, 0, 0] = first_pixel
    return ImageSet(images, torch.randint(0, CLASSES, (n,), generator=g))


def context(retain: ImageSet, forget: ImageSet, epochs: tuple[int, ...] = (1,), flip: bool = True,
            method_args: dict | None = None) -> MethodContext:
    return MethodContext(plan=LayerPlan("", ""), unlearn=UnlearnConfig(epochs=list(epochs)), pretrain=OptimSettings(),
                         pretrain_epochs=1, fresh_model=Recorder, retain=retain, forget=forget,
                         method_args=method_args or {}, flip=flip)


def unlearn(name: str, retain: ImageSet, forget: ImageSet, seed: int = 0, **kwargs):
    original = Recorder(tuple(retain.images.shape[1:]))
    return run_method(name, original, retain, context(retain, forget, **kwargs), seed=seed, cache_prefix=False,
                      progress=False, count_tensors=False)


def capture_optimizers(monkeypatch) -> list[torch.optim.Optimizer]:
    made: list[torch.optim.Optimizer] = []
    real = train.make_optimizer

    def keep(settings, params):
        made.append(real(settings, params))
        return made[-1]

    monkeypatch.setattr(train, "make_optimizer", keep)
    return made


# --- RL (and SalUn's training) --------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["mixed", "sequential"])
def test_rl_labels_hit_the_true_class_one_time_in_c_and_change_every_epoch(variant):
    retain, forget = noise(200, 0), noise(2000, 1)
    objective = RandomLabels(RLArgs(variant=variant))
    per_epoch: list[torch.Tensor] = []
    fit(Recorder(), retain, OptimSettings(optimizer="sgd", lr=0.01, batch_size=256), 3, seed=0,
        objective=objective, forget=forget, progress=False,
        on_epoch_end=lambda epoch, history: per_epoch.append(objective.forget_labels.clone()))
    for labels in per_epoch:
        assert labels.min() >= 0 and labels.max() < CLASSES
        # 1/C = 0.25 (sd 0.01 at 2000 samples); a rule that never draws the true class gives 0
        assert float((labels == forget.labels).float().mean()) == pytest.approx(1 / CLASSES, abs=0.04)
    for before, after in zip(per_epoch, per_epoch[1:]):
        # redrawn each epoch: a sample keeps its label 1/C of the time (labels fixed for a run: never changes)
        assert float((before != after).float().mean()) == pytest.approx(1 - 1 / CLASSES, abs=0.04)


@pytest.mark.parametrize("variant, sizes", [("mixed", [600]), ("sequential", [256, 256, 88])])
def test_rl_draws_labels_per_epoch_mixed_and_per_forget_batch_sequential(monkeypatch, variant, sizes):
    draws: list[int] = []
    real = rl_module.random_labels

    def record(size, classes, generator):
        draws.append(size)
        return real(size, classes, generator)

    monkeypatch.setattr(rl_module, "random_labels", record)
    fit(Recorder(), noise(300, 0), OptimSettings(optimizer="sgd", lr=0.01, batch_size=256), 2, seed=0,
        objective=RandomLabels(RLArgs(variant=variant)), forget=noise(600, 1), progress=False)
    assert draws == sizes * 2


def test_rl_mixed_shuffles_forget_into_retain_batches_sequential_runs_forget_then_retain():
    retain, forget = noise(600, 0, first_pixel=0), noise(300, 1, first_pixel=255)
    shares = {}
    for variant in ("mixed", "sequential"):
        model = Recorder()
        fit(model, retain, OptimSettings(optimizer="sgd", lr=0.01, batch_size=128), 2, seed=0,
            objective=RandomLabels(RLArgs(variant=variant)), forget=forget, progress=False)
        batches = [x for x in model.seen if len(x) > 1]  # not the one-image probe of the class count
        shares[variant] = [float((x[:, 0, 0, 0] == 1.0).float().mean()) for x in batches]
    assert sum(0 < s < 1 for s in shares["mixed"]) >= 10  # one shuffled pass over the union
    assert all(s in (0.0, 1.0) for s in shares["sequential"])  # never mixed within a batch
    assert shares["sequential"] == [1.0] * 3 + [0.0] * 5 + [1.0] * 3 + [0.0] * 5  # forget pass, then retain


def test_rl_variant_is_checked():
    with pytest.raises(UserError, match="variant"):
        get_method("rl").check({"rl": {"variant": "fixed"}})


# --- NegGrad+ -------------------------------------------------------------------------------------------------

def test_neggrad_plus_steps_are_plain_sgd_on_the_weighted_loss():
    """Retain 128 and forget 32 samples: one step per epoch over whole sets; two steps, so momentum would show."""
    args = NegGradArgs()
    assert (args.alpha, args.batch_size, args.forget_batch_size, args.lr) == (0.9999, 128, 32, 0.01)
    settings = recipe_settings(args, UnlearnConfig())
    retain, forget = noise(128, 0), noise(32, 1)
    model = Recorder()
    by_hand = copy.deepcopy(model)
    fit(model, retain, settings, 2, seed=0, objective=NegGradPlus(args), forget=forget, progress=False)
    params = list(by_hand.parameters())
    for _ in range(2):
        loss = (0.9999 * F.cross_entropy(by_hand(retain.images.float() / 255), retain.labels)
                - 0.0001 * F.cross_entropy(by_hand(forget.images.float() / 255), forget.labels))
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.01 * g  # no momentum, no weight decay
    for a, b in zip(model.parameters(), by_hand.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("cycle", ["replay", "reshuffle"])
def test_neggrad_plus_cycles_the_forget_set_as_itertools_cycle(cycle):
    """Retain 512 (4 steps of 128) beside forget 64 (2 batches of 32): steps 3-4 replay steps 1-2's forget batches."""
    retain, forget = noise(512, 0), noise(64, 1)
    model = Recorder()
    fit(model, retain, OptimSettings(optimizer="sgd", lr=0.01, batch_size=128), 2, seed=0,
        objective=NegGradPlus(NegGradArgs(forget_cycle=cycle)), forget=forget, progress=False)
    forget_batches = model.seen[1::2]  # each step: a retain forward, then a forget forward
    assert [len(x) for x in model.seen] == [128, 32] * 8
    first, second = forget_batches[:4], forget_batches[4:]
    replayed = torch.equal(first[2], first[0]) and torch.equal(first[3], first[1])
    assert replayed == (cycle == "replay")
    assert not torch.equal(second[0], first[0])  # each epoch's first pass is shuffled anew


# --- SCRUB ----------------------------------------------------------------------------------------------------

def test_scrub_draws_forget_512_and_retain_256_and_decays_its_lr(monkeypatch):
    args = ScrubArgs()
    settings = recipe_settings(args, UnlearnConfig())
    retain, forget = noise(600, 0), noise(1100, 1)
    original = Recorder()
    student = copy.deepcopy(original)
    lrs: dict[int, list[float]] = {}
    epoch = [1]
    real = train.make_optimizer

    def hooked(settings, params):  # the lr of every step, by epoch
        optimizer = real(settings, params)
        optimizer.register_step_pre_hook(
            lambda opt, *_: lrs.setdefault(epoch[0], []).append(opt.param_groups[0]["lr"]))
        return optimizer

    monkeypatch.setattr(train, "make_optimizer", hooked)
    fit(student, retain, settings, 10, seed=0, objective=Scrub(args, original=original), forget=forget,
        progress=False, on_epoch_end=lambda done, history: epoch.__setitem__(0, done + 1))
    sizes = [len(x) for x in student.seen]
    max_epoch, min_epoch = [512, 512, 76, 256, 256, 88], [256, 256, 88]
    assert sizes == max_epoch * 2 + min_epoch * 8  # max-steps in the first 2 epochs only
    expected = {1: 5e-4, 2: 5e-4, 3: 5e-4, 4: 5e-5, 5: 5e-5, 6: 5e-6, 7: 5e-6, 8: 5e-6, 9: 5e-6, 10: 5e-7}
    assert sorted(lrs) == list(expected)
    for e, lr in expected.items():
        assert lrs[e] == pytest.approx([lr] * len(lrs[e])), e


# --- augmentation ---------------------------------------------------------------------------------------------

def share_of_originals(seen: list[torch.Tensor], *sets: ImageSet) -> float:
    """The share of the images fed to the model that are exactly one of the stored images (unaugmented)."""
    stored = {bytes((x.float() / 255).numpy().tobytes()) for s in sets for x in s.images}
    images = [x for batch in seen for x in batch]
    return sum(bytes(x.numpy().tobytes()) in stored for x in images) / len(images)


@pytest.mark.parametrize("name", ["ga", "rl", "salun", "ft-l1", "neggrad+", "scrub", "finetune"])
def test_augmentation_is_on_exactly_where_the_reference_trains_with_it(name):
    retain, forget = noise(256, 0, (1, 8, 8)), noise(128, 1, (1, 8, 8))
    run = unlearn(name, retain, forget)
    share = share_of_originals(run.prepared.model.seen, retain, forget)
    if name in AUGMENTED:
        assert share < 0.3  # crop (padding 1 at 8x8: 1 in 9 unshifted) and flip (1 in 2)
    else:
        assert share == 1.0


def test_every_method_records_whether_it_augments():
    config = resolve(preset="smoke")
    for name in METHODS.names(IMAGE):
        settings = resolved_settings(config, name, "resnet", flip=True, side=32)
        if name == "logit-mask":
            assert settings["trains"] is False
            continue
        assert settings["augmentation"]["on"] == (name in AUGMENTED), name
        if name in AUGMENTED:
            assert "4 px" in settings["augmentation"]["crop"] and settings["augmentation"]["flip"] is True
    assert pretrain_settings(config, "resnet", flip=False).augment  # Retrain: the pre-training recipe


def test_augmentation_switches_off_per_method():
    config = RunConfig(method_args={"rl": {"augment": "false"}})
    get_method("rl").check(config.method_args)
    assert resolved_settings(config, "rl", "resnet")["augmentation"] == {"on": False}
    assert resolved_settings(config, "salun", "resnet")["augmentation"]["on"]  # another method keeps its own
    retain, forget = noise(256, 0, (1, 8, 8)), noise(128, 1, (1, 8, 8))
    run = unlearn("rl", retain, forget, method_args={"rl": {"augment": False}})
    assert share_of_originals(run.prepared.model.seen, retain, forget) == 1.0


@pytest.mark.slow
def test_augmentation_is_seeded():
    retain, forget = noise(256, 0, (1, 8, 8)), noise(128, 1, (1, 8, 8))
    a, b, c = (unlearn("rl", retain, forget, seed=s).prepared.model.seen for s in (0, 0, 1))
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("flip", [False, True])
def test_digit_sized_images_are_cropped_by_2_and_mirrored_only_with_flip(flip):
    """16x16 images whose every row rises left to right: a crop keeps the rise, only a mirror reverses it."""
    ramp = (torch.arange(16) * 10 + 10).to(torch.uint8).expand(300, 1, 16, 16).contiguous()
    data = ImageSet(ramp, torch.randint(0, CLASSES, (300,), generator=torch.Generator().manual_seed(0)))
    model = Recorder((1, 16, 16))
    fit(model, data, OptimSettings(optimizer="sgd", lr=0.01, batch_size=64, augment=True, flip=flip), 1, seed=0,
        progress=False)
    rows = torch.cat(model.seen)[:, 0, 8]  # the middle row of every image fed
    zeros = (rows == 0).sum(1)
    assert zeros.max() == 2 and (zeros == 0).any()  # padding 16 // 8 = 2: shifts of 0 to 2 columns
    steps = [row[row > 0].diff() for row in rows]
    falling = sum(bool((s < 0).all()) for s in steps)
    assert all(bool((s > 0).all()) or bool((s < 0).all()) for s in steps)
    assert (falling > 50) if flip else (falling == 0)


# --- Nesterov -------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", SGD_METHODS)
def test_no_sgd_objective_uses_nesterov_unless_asked(monkeypatch, name):
    optimizers = capture_optimizers(monkeypatch)
    retain, forget = noise(64, 0), noise(32, 1)
    unlearn(name, retain, forget)
    unlearn(name, retain, forget, method_args={name: {"nesterov": True, "momentum": 0.9}})
    assert [type(o) for o in optimizers] == [torch.optim.SGD] * 2
    assert [o.param_groups[0]["nesterov"] for o in optimizers] == [False, True]
    assert optimizers[0].param_groups[0]["momentum"] == (0.0 if name == "neggrad+" else 0.9)  # plain SGD there


def test_nesterov_without_momentum_is_refused_before_anything_runs():
    with pytest.raises(UserError, match="nesterov needs a momentum"):
        get_method("neggrad+").check({"neggrad+": {"nesterov": True}})


def test_pretraining_uses_heavy_ball_momentum():
    optimizer = train.make_optimizer(pretrain_settings(RunConfig(), "resnet"), list(nn.Linear(2, 2).parameters()))
    assert optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["nesterov"] is False


# --- l1-sparse ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_l1_sparse_gives_each_budget_its_own_full_decay(monkeypatch):
    weights: list[tuple[int, int, float]] = []
    real = L1Sparse.weight

    def record(self, progress):
        weights.append((progress.epoch, progress.epochs, real(self, progress)))
        return weights[-1][2]

    monkeypatch.setattr(L1Sparse, "weight", record)
    retain, forget = noise(64, 0), noise(16, 1)
    run = unlearn("ft-l1", retain, forget, epochs=(5, 10))
    gamma = L1Sparse.Args().gamma
    assert gamma == 1e-4
    assert [(e, n) for e, n, _ in weights] == [(e, 5) for e in range(1, 6)] + [(e, 10) for e in range(1, 11)]
    assert weights[4][2] == pytest.approx(gamma * (1 - 4 / 5))  # the 5-epoch budget's last epoch
    assert weights[-1][2] == pytest.approx(gamma * (1 - 9 / 10))
    assert [s.epochs for s in run.snapshots] == [5, 10] and len(run.history.epoch_seconds) == 15
    alone = unlearn("ft-l1", retain, forget, epochs=(5,))  # the 5-epoch row is a 5-epoch run from the same start
    for a, b in zip(run.snapshots[0].model.parameters(), alone.snapshots[0].model.parameters()):
        assert torch.equal(a, b)
    assert resolved_settings(RunConfig(), "ft-l1", "resnet")["run_per_budget"] is True


def test_resolved_settings_come_from_the_objective_args():
    config = RunConfig(method_args={"scrub": {"lr_decay_epochs": [], "forget_batch_size": 64}})
    scrub = resolved_settings(config, "scrub", "resnet")
    assert scrub["batch_sizes"] == {"retain": 256, "forget": 64} and "lr_by_epoch" not in scrub["schedule"]
    default = resolved_settings(RunConfig(), "scrub", "resnet")
    assert default["schedule"]["lr_by_epoch"] == [5e-4] * 3 + [5e-5] * 2 + [5e-6] * 4 + [5e-7]
    neggrad = resolved_settings(RunConfig(), "neggrad+", "resnet")
    assert (neggrad["momentum"], neggrad["weight_decay"], neggrad["nesterov"]) == (0.0, 0.0, False)
    assert neggrad["objective_settings"]["alpha"] == 0.9999
    assert objective_args(RandomLabels, "salun", {}).variant == "mixed"
