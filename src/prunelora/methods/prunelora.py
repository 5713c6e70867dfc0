"""PruneLoRA: prune first, then adapt, then unlearn (the paper's method).

As in the paper's code, the LoRA update B A is dense, so merging it re-grows pruned channels of
mask mode. With keep_sparsity the rows of each lora_B are masked too, and the merged model keeps
exactly the pruned structure. In remove mode the channels are gone and nothing can re-grow.
"""
from torch import nn

from .base import Method, MethodContext, Prepared, working_copy
from .lora_method import lora_prepared, with_adapters
from .prune_finetune import prune
from .pruning import bind_lora_masks


class PruneLoRA(Method):
    name = "prunelora"
    prunes, adapts, trains_all = True, True, False

    def prepare(self, original: nn.Module, ctx: MethodContext) -> Prepared:
        model = working_copy(original, False)
        masks, info = prune(model, ctx)
        peft_model = with_adapters(model, ctx)
        after_step = None
        if masks is not None and ctx.unlearn.keep_sparsity:
            bind_lora_masks(peft_model, masks)
            after_step = masks.apply
        info["keep_sparsity"] = bool(ctx.unlearn.keep_sparsity)
        return lora_prepared(peft_model, ctx, after_step=after_step, info=info)
