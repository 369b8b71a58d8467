"""Binding VQ codes to existing token ids of a frozen text model (the paper's LLM plug-in).

No vocabulary rows are added. Two linear adapters are trained while the text model stays frozen:
`vq_to_token` maps a code vector p' into the model's hidden space, where the frozen LM head picks
the bound id p = argmax LMHead(W_vq->tok p'); `token_to_vq` maps the frozen input embedding E[p]
back to the code space, where the nearest code is read. The loss is the paper's
`||W_tok->vq(E[p]) - p'||^2 + ||E[p] - W_vq->tok(p')||^2`.

One choice is ours: the paper's argmax can bind two codes to the same id, which makes id -> code
ambiguous, so `bind` assigns ids one-to-one (codes take their highest-logit free id, most
confident code first); `allowed_ids` restricts the ids that may be used (e.g. leave special
tokens alone). The plain alternative, a reserved id block per codebook, is the modalzoo bridge
(`MultimodalTokenizer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CodeTokenBinding(nn.Module):
    """`CodeTokenBinding(code_vectors, input_embeddings, lm_head)`; `fit()`, then
    `codes_to_ids` / `ids_to_codes`. `code_vectors` `[K, d]` are the tokenizer's (normalised)
    codebook, `input_embeddings` an `nn.Embedding` and `lm_head` a module from hidden `[..., H]` to
    vocabulary logits; both stay frozen (no gradients reach them)."""

    def __init__(self, code_vectors: torch.Tensor, input_embeddings: nn.Embedding, lm_head: nn.Module,
                 *, allowed_ids: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("code_vectors", code_vectors.detach().float().clone())
        self.input_embeddings = input_embeddings
        self.lm_head = lm_head
        for parameter in (*input_embeddings.parameters(), *lm_head.parameters()):
            parameter.requires_grad_(False)
        hidden = input_embeddings.weight.shape[1]
        vocabulary = input_embeddings.weight.shape[0]
        if allowed_ids is None:
            allowed_ids = torch.arange(vocabulary)
        allowed_ids = torch.as_tensor(allowed_ids, dtype=torch.long)
        if allowed_ids.numel() < code_vectors.shape[0]:
            raise ValueError(f"{code_vectors.shape[0]} codes need at least as many allowed ids, got {allowed_ids.numel()}")
        self.register_buffer("allowed_ids", allowed_ids)
        self.vq_to_token = nn.Linear(code_vectors.shape[1], hidden)
        self.token_to_vq = nn.Linear(hidden, code_vectors.shape[1])
        self.register_buffer("code_to_id", torch.full((code_vectors.shape[0],), -1, dtype=torch.long))

    @classmethod
    def from_models(cls, tokenizer_model, text_model, **kwargs) -> CodeTokenBinding:
        """From a `CADTokenizerModel` and a transformers causal LM (its input embeddings and head)."""
        return cls(tokenizer_model.quantizer.normalized, text_model.get_input_embeddings(), text_model.get_output_embeddings(), **kwargs)

    # ----- binding ---------------------------------------------------------------------------------
    def logits(self) -> torch.Tensor:
        """`[K, len(allowed_ids)]` LM-head logits of every adapted code."""
        return self.lm_head(self.vq_to_token(self.code_vectors))[:, self.allowed_ids]

    @torch.no_grad()
    def bind(self) -> torch.LongTensor:
        """One-to-one argmax: each code gets its highest-logit id not taken by a more confident code."""
        logits = self.logits()
        order = logits.max(dim=1).values.argsort(descending=True)
        taken = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        for code in order.tolist():
            choice = int(logits[code].masked_fill(taken, float("-inf")).argmax())
            taken[choice] = True
            self.code_to_id[code] = self.allowed_ids[choice]
        return self.code_to_id.clone()

    def loss(self) -> torch.Tensor:
        ids = self.code_to_id
        embedded = self.input_embeddings(ids).float()
        back = self.token_to_vq(embedded)
        forward = self.vq_to_token(self.code_vectors)
        return F.mse_loss(back, self.code_vectors) + F.mse_loss(forward, embedded)

    def fit(self, steps: int = 300, lr: float = 1e-2, rebind_every: int = 50) -> list[float]:
        """Adam on the two adapters; the binding is refreshed every `rebind_every` steps (and at
        the end). Returns the loss history."""
        optimizer = torch.optim.Adam([*self.vq_to_token.parameters(), *self.token_to_vq.parameters()], lr=lr)
        history = []
        self.bind()
        for step in range(steps):
            loss = self.loss()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
            if (step + 1) % rebind_every == 0:
                self.bind()
        self.bind()
        return history

    # ----- codes <-> ids --------------------------------------------------------------------------------
    def codes_to_ids(self, codes: torch.Tensor) -> torch.LongTensor:
        if (self.code_to_id < 0).any():
            raise RuntimeError("the binding is empty: call fit() or bind() first")
        return self.code_to_id[codes]

    @torch.no_grad()
    def ids_to_codes(self, ids: torch.Tensor) -> torch.LongTensor:
        """Frozen embedding -> `token_to_vq` -> nearest code (cosine, as the tokenizer's codebook)."""
        vectors = F.normalize(self.token_to_vq(self.input_embeddings(ids).float()), dim=-1)
        return (vectors @ F.normalize(self.code_vectors, dim=-1).t()).argmax(-1)
