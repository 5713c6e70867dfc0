"""The cached frozen prefix trains the same weights as the plain path, and is refused where inexact."""
import pytest
import torch

from prunelora.config import resolve
from prunelora.data import ImageSet
from prunelora.methods import get_method
from prunelora.models import build_model, get_spec
from prunelora.prefix_cache import PrefixCache
from prunelora.runner import method_context
from prunelora.train import fit

VIT = {"depth": 2, "dim": 16, "heads": 2, "mlp_dim": 32}


def _data(n: int = 40, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g),
                    torch.randint(0, 4, (n,), generator=g))


def _prepared(name: str, args: dict, method: str, data: ImageSet, **unlearn):
    config = resolve(preset="smoke", overrides={"unlearn": {"batch_size": 8, **unlearn}})
    torch.manual_seed(0)
    model = build_model(name, 4, 3, 16, (0.5,) * 3, (0.25,) * 3, args)
    spec = get_spec(name, args)
    ctx = method_context(config, spec.plan, spec.family, lambda: None, data)
    return get_method(method).prepare(model, ctx)


def _train(prepared, data, cache: bool):
    torch.manual_seed(1)
    return fit(prepared.model, data, prepared.optim, 3, seed=0, after_step=prepared.after_step,
               cache_prefix=cache, progress=False)


def test_cached_and_plain_runs_give_the_same_weights():
    data = _data()
    for method in ("lora", "prunelora"):
        plain, cached = _prepared("vit", VIT, method, data), _prepared("vit", VIT, method, data)
        history_plain = _train(plain, data, cache=False)
        history_cached = _train(cached, data, cache=True)
        assert not history_plain.cache and history_cached.cache["prefix_stages"] > 0
        plain_state, cached_state = plain.model.state_dict(), cached.model.state_dict()
        moved = 0
        for key, value in plain_state.items():
            torch.testing.assert_close(cached_state[key], value, rtol=1e-4, atol=1e-5)
            moved += "lora_B" in key and bool(value.abs().sum() > 0)
        assert moved >= 2  # the adapters trained, so equality is not the trivial all-zero case


def test_cache_holds_the_prefix_output_of_every_sample():
    data = _data(12)
    prepared = _prepared("vit", VIT, "lora", data)
    cache = PrefixCache.build(prepared.model, data)
    base = prepared.model.get_base_model()
    with torch.no_grad():
        x = data.images.float() / 255
        x = base.patch_embed(base.normalize(x))
        for block in list(base.blocks)[: cache.prefix_len - 2]:
            x = block(x)
    torch.testing.assert_close(cache.features, x)


def test_no_cache_where_it_would_not_be_exact_or_would_not_fit():
    data = _data(12)
    # finetune trains the first stage: nothing is frozen before it
    assert PrefixCache.build(_prepared("vit", VIT, "finetune", data).model, data) is None
    # the ResNet's frozen stem holds a batch norm whose statistics move in train mode
    assert PrefixCache.build(_prepared("resnet18", {"width": 2}, "lora", data).model, data) is None
    # over the memory budget: fall back to the plain path
    assert PrefixCache.build(_prepared("vit", VIT, "lora", data).model, data, budget_bytes=10) is None


@pytest.mark.slow
def test_augmented_training_never_uses_the_cache():
    data = _data(16)
    prepared = _prepared("vit", VIT, "lora", data)
    prepared.optim.augment = True
    history = fit(prepared.model, data, prepared.optim, 1, seed=0, cache_prefix=True, progress=False)
    assert history.cache == {}
