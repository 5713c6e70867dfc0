"""The paper's simple ViT: patch 4, fixed 2-D sin-cos positions, pre-norm blocks, mean pooling.

Attention is built from nn.Linear projections and F.scaled_dot_product_attention. It computes the
same function as nn.MultiheadAttention, but its output projection is a module the forward pass
calls, so a LoRA adapter or a pruning mask on it takes effect (nn.MultiheadAttention reads
out_proj.weight directly and skips any wrapper: docs/design.md, trap 1).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Normalize, TokenMeanPool


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding of shape (grid * grid, dim)."""
    if dim % 4:
        raise ValueError(f"ViT width must be a multiple of 4 for 2-D sin-cos positions, got {dim}")
    y, x = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    omega = 1.0 / (10000 ** (torch.arange(dim // 4) / (dim // 4 - 1 if dim > 4 else 1)))
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch: int, image_size: int):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)
        self.register_buffer("pos", sincos_2d(image_size // patch, dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"ViT width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(n, t, d))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Sequential):
    """normalize -> patch_embed -> blocks -> norm -> pool -> head."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32, patch: int = 4,
                 dim: int = 384, depth: int = 12, heads: int = 6, mlp_dim: int = 1536,
                 mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.25,)):
        super().__init__(OrderedDict(
            normalize=Normalize(mean, std),
            patch_embed=PatchEmbed(in_channels, dim, patch, image_size),
            blocks=nn.Sequential(*[Block(dim, heads, mlp_dim) for _ in range(depth)]),
            norm=nn.LayerNorm(dim),
            pool=TokenMeanPool(),
            head=nn.Linear(dim, num_classes),
        ))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
