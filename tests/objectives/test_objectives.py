"""The forget-aware objectives on hand-built problems: each does what its paper defines, and no more."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunelora.data import ImageSet, to_float
from prunelora.objectives import OBJECTIVES, Feed
from prunelora.objectives.gradient_ascent import GradientAscent
from prunelora.objectives.l1_sparse import L1Args, L1Sparse
from prunelora.objectives.neggrad_plus import NegGradPlus
from prunelora.objectives.random_labels import RandomLabels, random_labels
from prunelora.objectives.salun import SalUn, SalUnArgs
from prunelora.objectives.scrub import Scrub, ScrubArgs, distill_kl
from prunelora.registry import IMAGE
from prunelora.train import OptimSettings, fit

CLASSES = 4


def blobs(n: int, seed: int, classes: tuple[int, ...] = tuple(range(CLASSES))) -> ImageSet:
    """uint8 1x4x4 images whose class decides which quarter is bright: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor(classes)[torch.randint(0, len(classes), (n,), generator=g)]
    images = torch.randint(0, 60, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    for k in range(CLASSES):
        rows, cols = divmod(k, 2)
        images[labels == k, :, 2 * rows:2 * rows + 2, 2 * cols:2 * cols + 2] += 180
    return ImageSet(images, labels)


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, CLASSES))


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, ImageSet, ImageSet]:
    """A model that knows every class, its retain set (classes 1-3) and forget set (class 0)."""
    data = blobs(400, 0)
    model = tiny_model()
    fit(model, data, OptimSettings(optimizer="adam", lr=1e-2, batch_size=32), 15, seed=0, progress=False)
    forget_mask = data.labels == 0
    retain, forget = data.subset(torch.nonzero(~forget_mask).flatten()), data.subset(torch.nonzero(forget_mask).flatten())
    assert accuracy(model, forget) > 90
    return model, retain, forget


def accuracy(model: nn.Module, data: ImageSet) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(to_float(data.images)).argmax(1) == data.labels).float().mean() * 100)


def mean_loss(model: nn.Module, data: ImageSet) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(to_float(data.images)), data.labels))


def l1_norm(model: nn.Module) -> float:
    return sum(float(p.detach().abs().sum()) for p in model.parameters())


def run(objective, model, retain, forget, epochs=3, **settings) -> nn.Module:
    opts = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 32, **settings}
    fit(model, retain, OptimSettings(**opts), epochs, seed=1, objective=objective, forget=forget, progress=False)
    return model


def test_registry_names_every_objective_once():
    objectives = OBJECTIVES.of(IMAGE)
    assert list(objectives) == ["retain", "ga", "neggrad+", "rl", "l1-sparse", "salun", "scrub"]
    assert [name for name, o in objectives.items() if not o.uses_forget] == ["retain", "l1-sparse"]


def test_forget_aware_objective_without_forget_data_is_refused(trained):
    model, retain, _ = trained
    with pytest.raises(ValueError, match="needs a non-empty forget set"):
        run(GradientAscent(), copy.deepcopy(model), retain, None)


def test_ga_raises_the_forget_loss_and_never_sees_the_retain_set(trained):
    model, retain, forget = trained
    before = mean_loss(model, forget)
    # A retain set of the wrong shape would crash any step that touched it: GA draws from forget only.
    poisoned = ImageSet(torch.zeros(len(retain), 1, 2, 2, dtype=torch.uint8), retain.labels)
    after = mean_loss(run(GradientAscent(), copy.deepcopy(model), poisoned, forget, epochs=5, lr=1.0), forget)
    assert after > before + 1.0


def test_neggrad_plus_ascends_on_forget_while_descending_on_retain(trained):
    model, retain, forget = trained
    unlearned = run(NegGradPlus(NegGradPlus.Args(alpha=0.5)), copy.deepcopy(model), retain, forget, epochs=5,
                    lr=0.5)
    assert mean_loss(unlearned, forget) > mean_loss(model, forget) + 1.0
    assert accuracy(unlearned, retain) > accuracy(unlearned, forget)


def test_rl_labels_are_uniform_over_every_class():
    drawn = random_labels(10_000, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn, minlength=10).float()
    assert len(counts) == 10 and ((counts - 1000).abs() < 150).all()


def test_rl_trains_on_retain_plus_relabelled_forget(trained):
    model, retain, forget = trained
    objective = RandomLabels()
    unlearned = run(objective, copy.deepcopy(model), retain, forget)
    # Labels redrawn over every class each epoch push the forget outputs towards uniform (loss towards ln C).
    assert mean_loss(unlearned, forget) > mean_loss(model, forget) + 0.5
    assert accuracy(unlearned, retain) > 90


def test_l1_weight_decays_linearly_to_zero():
    from prunelora.objectives.base import Progress

    objective = L1Sparse(L1Args(gamma=1e-3))
    weights = [objective.weight(Progress(e, 4)) for e in range(1, 5)]
    assert weights == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])


def test_l1_penalty_shrinks_the_weights(trained):
    model, retain, forget = trained
    plain = run(OBJECTIVES.get("retain", IMAGE)(), copy.deepcopy(model), retain, forget, weight_decay=0.0)
    sparse = run(L1Sparse(L1Args(gamma=5e-3)), copy.deepcopy(model), retain, forget, weight_decay=0.0)
    assert l1_norm(sparse) < l1_norm(plain)


@pytest.mark.parametrize("share", [0.5, 0.3])
def test_salun_mask_keeps_exactly_the_share_and_frozen_weights_stay_bit_identical(trained, share):
    model, retain, forget = trained
    student = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    objective = SalUn(SalUnArgs(share=share))
    # Momentum and a large weight decay: both move a weight whose gradient is merely masked.
    run(objective, student, retain, forget, epochs=3, lr=0.05, momentum=0.9, weight_decay=0.1)
    total = sum(p.numel() for p in student.parameters())
    kept = sum(int(m.sum()) for m in objective.masks.values())
    assert kept == round(share * total)
    assert objective.salient_share() == pytest.approx(share, abs=1 / total)
    moved = 0
    for name, p in student.named_parameters():
        mask = objective.masks[p]
        assert torch.equal(p.detach()[~mask], before[name][~mask]), name  # bit-identical
        moved += int((p.detach()[mask] != before[name][mask]).sum())
    assert moved > 0.9 * kept


def test_salun_saliency_follows_the_forget_gradient(trained):
    """The salient weights are those with the largest |d forget-loss / d w| (checked against autograd directly)."""
    from prunelora.objectives.salun import saliency_masks

    model, retain, forget = trained
    net = copy.deepcopy(model)
    feed = Feed({"retain": retain, "forget": forget}, 64, False, torch.Generator().manual_seed(0))
    masks = saliency_masks(net, feed, 0.25)
    net.eval()
    net.zero_grad()
    F.cross_entropy(net(to_float(forget.images)), forget.labels, reduction="sum").backward()
    scores = torch.cat([p.grad.abs().flatten() for p in net.parameters()])
    threshold = scores.kthvalue(scores.numel() - round(0.25 * scores.numel())).values
    chosen = torch.cat([masks[p].flatten() for p in net.parameters()])
    assert (scores[chosen] >= threshold - 1e-9).all()


def test_scrub_teacher_never_changes_while_the_student_forgets(trained):
    model, retain, forget = trained
    original = copy.deepcopy(model)
    frozen = {k: v.clone() for k, v in original.state_dict().items()}
    student = copy.deepcopy(model)
    objective = Scrub(ScrubArgs(max_steps=2, forget_batch_size=16), original=original)
    run(objective, student, retain, forget, epochs=3, lr=0.05)
    for key, value in original.state_dict().items():
        assert torch.equal(value, frozen[key]), key
    for key, value in objective.teacher.state_dict().items():
        assert torch.equal(value, frozen[key]), key
    assert not any(p.requires_grad for p in objective.teacher.parameters())
    assert mean_loss(student, forget) > mean_loss(original, forget)  # the max-steps pushed the forget set away


def test_scrub_precomputed_teacher_outputs_match_the_teacher(trained):
    """Without augmentation the teacher's logits are computed once: they must be the teacher's own."""
    model, retain, forget = trained
    objective = Scrub(original=model)
    feed = Feed({"retain": retain, "forget": forget}, 32, False, torch.Generator().manual_seed(0))
    objective.start(copy.deepcopy(model), feed)
    for name, data in (("retain", retain), ("forget", forget)):
        with torch.no_grad():
            expected = objective.teacher(to_float(data.images))
        assert torch.allclose(objective.fixed[name], expected, atol=1e-6)


def test_distillation_kl_is_zero_for_equal_outputs_and_positive_otherwise():
    logits = torch.randn(8, 5)
    assert float(distill_kl(logits, logits, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_kl(logits, torch.randn(8, 5), 4.0)) > 0
