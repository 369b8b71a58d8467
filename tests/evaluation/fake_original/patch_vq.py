"""A stand-in "original repository" for the --compare-original tests: a patch VQ tokenizer
written independently of modalzoo (plain torch, its own names and layouts), the role that a
user's clone of bytedance/1d-tokenizer or WavTokenizer plays for a real family."""

import torch
import torch.nn.functional as F
from torch import nn


class PatchVQ(nn.Module):
    def __init__(self, hidden=16, patch=4, codebook_size=64, codebook_dim=8, image_size=32):
        super().__init__()
        self.grid = image_size // patch
        self.encoder = nn.Conv2d(3, hidden, patch, stride=patch)
        self.to_code = nn.Linear(hidden, codebook_dim)
        self.from_code = nn.Linear(codebook_dim, hidden)
        self.register_buffer("embedding", torch.zeros(codebook_size, codebook_dim))
        self.decoder = nn.ConvTranspose2d(hidden, 3, patch, stride=patch)

    def encode(self, images):
        """images [B, 3, H, W] -> indices [B, N] (cosine nearest code)."""
        features = self.encoder(images).flatten(2).transpose(1, 2)
        queries = F.normalize(self.to_code(features), dim=-1)
        return (queries @ F.normalize(self.embedding, dim=-1).t()).argmax(-1)

    def decode(self, indices):
        vectors = self.from_code(F.normalize(self.embedding, dim=-1)[indices])
        return self.decoder(vectors.transpose(1, 2).reshape(indices.shape[0], -1, self.grid, self.grid))
