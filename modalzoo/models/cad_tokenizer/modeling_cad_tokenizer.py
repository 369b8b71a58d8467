"""CAD-Tokenizer: a primitive-level VQ-VAE over sketch-and-extrude token sequences.

Encoder: a bidirectional transformer over the tokens. Pooling: the features of each primitive
(a curve by default, see `primitives.py`) are max-pooled into one vector, projected to the
codebook space and quantised against one codebook. Decoder: an autoregressive transformer that
reads the quantised primitives through cross-attention and predicts the next token; each input
token also carries the index of the primitive it belongs to (and, with `offset_embedding`, its
offset within it, in both transformers), which the decoder follows while it generates. Training
loss (the paper's): the squared Earth-Mover distance between the predicted distribution over
ordinal value bins and the target bin, plus the VQ codebook / commitment terms; we add token
cross-entropy, which sharpens exact bins and types (weights in the recipe).
Decoding is greedy and, by default, constrained by the grammar automaton (`grammar.py`).
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
from torch import nn

from ...modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from .configuration_cad_tokenizer import CADTokenizerConfig
from .grammar import AXIS_BASE, BOS, EOS, PAD, VALUE_BASE, Grammar, State
from .primitives import primitive_ids_and_offsets

ORDINAL_FREQUENCIES = 8
MAX_OFFSET = 31  # offsets within a primitive beyond this share one embedding (loop / single pooling)


# ordinal bin ranges of the vocabulary: value bins, and the three axis values -1 / 0 / +1
def ordinal_ranges(bits: int) -> list[tuple[int, int]]:
    return [(VALUE_BASE, VALUE_BASE + 2**bits), (AXIS_BASE, VALUE_BASE)]


def squared_emd(logits: torch.Tensor, targets: torch.Tensor, ranges: list[tuple[int, int]]) -> torch.Tensor:
    """Mean over ordinal targets of sum_k (CDF_pred(k) - CDF_target(k))^2, with the predicted
    distribution restricted to (and renormalised over) the target's bin range."""
    terms = []
    for low, high in ranges:
        selected = (targets >= low) & (targets < high)
        if not selected.any():
            continue
        probabilities = logits[selected][:, low:high].float().softmax(-1)
        target = F.one_hot(targets[selected] - low, high - low).float()
        terms.append((probabilities.cumsum(-1) - target.cumsum(-1)).pow(2).sum(-1))
    if not terms:
        return logits.sum() * 0.0
    return torch.cat(terms).mean()


class CADCodebook(nn.Module):
    """One l2-normalised codebook: nearest code by cosine similarity, straight-through gradients,
    codebook and commitment terms returned separately, dead-code re-seeding in training."""

    def __init__(self, codebook_size: int, dim: int, *, threshold: float, decay: float):
        super().__init__()
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim))
        # usage EMA in units of the uniform rate (1.0 = used as often as a uniform codebook would)
        self.register_buffer("usage", torch.ones(codebook_size))
        self.threshold = threshold
        self.decay = decay
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.codebook)

    @property
    def normalized(self) -> torch.Tensor:
        return F.normalize(self.codebook.float(), dim=-1)

    def forward(self, vectors: torch.Tensor):
        """`[N, dim]` -> (quantised [N, dim] with straight-through gradients, codes [N], losses)."""
        vectors = F.normalize(vectors.float(), dim=-1)
        codebook = self.normalized
        codes = (vectors @ codebook.t()).argmax(-1)
        quantized = codebook[codes]
        losses = {
            "codebook": F.mse_loss(quantized, vectors.detach()),
            "commitment": F.mse_loss(vectors, quantized.detach()),
        }
        if self.training and torch.is_grad_enabled() and vectors.shape[0]:
            self._update_usage(codes, vectors.detach())
        return vectors + (quantized - vectors).detach(), codes, losses

    @torch.no_grad()
    def _update_usage(self, codes: torch.Tensor, vectors: torch.Tensor) -> None:
        counts = torch.bincount(codes, minlength=self.codebook.shape[0]).float()
        rate = counts * self.codebook.shape[0] / codes.numel()
        self.usage.mul_(self.decay).add_(rate, alpha=1 - self.decay)
        dead = (self.usage < self.threshold).nonzero().flatten()
        if dead.numel():
            picks = torch.randint(0, vectors.shape[0], (dead.numel(),), device=vectors.device)
            self.codebook.data[dead] = vectors[picks] + 0.01 * torch.randn_like(vectors[picks])
            self.usage[dead] = 1.0

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.normalized[codes]


class CADTokenizerModel(ModalTokenizer):
    config_class = CADTokenizerConfig
    modality = "cad"
    main_input_name = "cad_tokens"

    def __init__(self, config: CADTokenizerConfig):
        super().__init__(config)
        width, vocab = config.hidden_size, config.token_vocab_size
        self.token_embedding = nn.Embedding(vocab, width)
        self.value_embedding = nn.Linear(1 + 2 * ORDINAL_FREQUENCIES, width)
        self.position_embedding = nn.Embedding(config.max_sequence_length + 1, width)
        # 0: before any primitive (BOS); i + 1: primitive i (decoder inputs and code memory)
        self.primitive_embedding = nn.Embedding(config.max_primitives + 1, width)
        self.offset_embedding = nn.Embedding(MAX_OFFSET + 1, width) if config.offset_embedding else None

        def layer(kind):
            return kind(width, config.num_heads, config.intermediate_size, config.dropout, batch_first=True, norm_first=True)

        self.encoder = nn.TransformerEncoder(layer(nn.TransformerEncoderLayer), config.encoder_layers, enable_nested_tensor=False)
        self.encoder_norm = nn.LayerNorm(width)
        self.to_code = nn.Linear(width, config.codebook_dim)
        self.quantizer = CADCodebook(config.codebook_size, config.codebook_dim, threshold=config.dead_code_threshold, decay=config.usage_decay)
        self.from_code = nn.Linear(config.codebook_dim, width)
        self.next_primitive = nn.Linear(width, width)
        self.decoder = nn.TransformerDecoder(layer(nn.TransformerDecoderLayer), config.decoder_layers)
        self.decoder_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.grammar = Grammar(config.bits)
        self.post_init()

    # ----- inputs ---------------------------------------------------------------------------------
    def _check_tokens(self, cad_tokens: torch.Tensor, attention_mask: torch.Tensor | None):
        if not torch.is_tensor(cad_tokens) or cad_tokens.ndim != 2 or cad_tokens.is_floating_point():
            raise ValueError(f"cad_tokens must be an integer tensor [batch, length], got {getattr(cad_tokens, 'shape', type(cad_tokens))}")
        if attention_mask is None:
            attention_mask = cad_tokens != PAD
        attention_mask = attention_mask.bool()
        length = cad_tokens.shape[1]
        if length > self.config.max_sequence_length:
            raise ValueError(f"sequences of {length} tokens exceed max_sequence_length {self.config.max_sequence_length}")
        vocab = self.config.token_vocab_size
        real = cad_tokens[attention_mask]
        if real.numel() and (real.min() < 0 or real.max() >= vocab or (real == PAD).any() or (real == BOS).any()):
            raise ValueError(f"cad_tokens must be ids in [2, {vocab}) on real positions (PAD=0 and BOS=1 are reserved)")
        return cad_tokens.long(), attention_mask

    def _value_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Fourier features of a value token's bin (zero elsewhere): neighbouring bins start close."""
        is_value = tokens >= VALUE_BASE
        unit = (tokens - VALUE_BASE).clamp(min=0).float() / (2**self.config.bits - 1)
        angles = unit.unsqueeze(-1) * torch.pi * torch.arange(1, ORDINAL_FREQUENCIES + 1, device=tokens.device)
        features = torch.cat([torch.ones_like(unit).unsqueeze(-1), angles.sin(), angles.cos()], dim=-1)
        return features * is_value.unsqueeze(-1)

    def _embed(self, tokens: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        ordinal = self.value_embedding(self._value_features(tokens).to(self.value_embedding.weight.dtype))
        embedded = self.token_embedding(tokens) + ordinal + self.position_embedding(positions)
        if self.offset_embedding is not None:
            embedded = embedded + self.offset_embedding(offsets.clamp(max=MAX_OFFSET))
        return embedded

    def _primitive_layout(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Primitive index of each token and its offset within the primitive (`primitives.py`)."""
        config = self.config
        return primitive_ids_and_offsets(tokens, mask, config.pooling, config.extrude_pooling, config.split_circles)

    def _primitive_ids(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.LongTensor:
        return self._primitive_layout(tokens, mask)[0]

    # ----- encoder ------------------------------------------------------------------------------------
    def _encode_vectors(self, cad_tokens, attention_mask):
        ids, offsets = self._primitive_layout(cad_tokens, attention_mask)
        counts = ids.max(dim=1).values + 1
        if int(counts.max()) > self.config.max_primitives:
            raise ValueError(f"an item has {int(counts.max())} primitives; this model takes at most {self.config.max_primitives}")
        if (counts < 1).any():
            raise ValueError("every item needs at least one primitive (a curve)")
        features = self.encoder(self._embed(cad_tokens, offsets), src_key_padding_mask=~attention_mask)
        features = self.encoder_norm(features)
        slots = int(counts.max())
        index = ids.masked_fill(ids < 0, slots).unsqueeze(-1).expand_as(features)
        pooled = features.new_full((features.shape[0], slots + 1, features.shape[-1]), float("-inf"))
        pooled = pooled.scatter_reduce(1, index, features, reduce="amax", include_self=True)[:, :slots]
        codes_mask = torch.arange(slots, device=ids.device) < counts.unsqueeze(1)
        return self.to_code(pooled.masked_fill(~codes_mask.unsqueeze(-1), 0.0)), codes_mask, (ids, offsets)

    def encode(self, cad_tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> EncoderOutput:
        """`cad_tokens` `[B, L]` (EOS-terminated, PAD=0 after) -> codes `[B, 1, P]`, one per primitive."""
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        cad_tokens, attention_mask = self._check_tokens(cad_tokens, attention_mask)
        vectors, codes_mask, _ = self._encode_vectors(cad_tokens, attention_mask)
        _, codes, _ = self.quantizer(vectors[codes_mask])
        grid = torch.zeros(codes_mask.shape, dtype=torch.long, device=codes.device)
        grid[codes_mask] = codes
        same_length = bool(codes_mask.all())
        return EncoderOutput(codes=grid.unsqueeze(1), codes_mask=None if same_length else codes_mask)

    # ----- decoder ----------------------------------------------------------------------------------------
    def _memory(self, quantized: torch.Tensor) -> torch.Tensor:
        slots = torch.arange(1, quantized.shape[1] + 1, device=quantized.device)
        return self.from_code(quantized) + self.primitive_embedding(slots)

    def _decoder_logits(self, inputs, input_primitives, input_offsets, memory, memory_mask, input_mask=None):
        length = inputs.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=inputs.device).triu(1)  # True: masked
        hidden = self._embed(inputs, input_offsets) + self.primitive_embedding(input_primitives)
        # The next token belongs to the input token's primitive or to the one after it: both code
        # vectors are added to the input (cross-attention alone is slow to learn this lookup).
        slots = memory.shape[1]
        padded = torch.cat([memory.new_zeros(memory.shape[0], 1, memory.shape[2]), memory * memory_mask.unsqueeze(-1),
                            memory.new_zeros(memory.shape[0], 1, memory.shape[2])], dim=1)
        current = input_primitives.clamp(max=slots + 1)  # 0 (BOS) -> the zero slot
        following = (input_primitives + 1).clamp(max=slots + 1)
        gather = lambda index: padded.gather(1, index.unsqueeze(-1).expand(-1, -1, padded.shape[-1]))  # noqa: E731
        hidden = hidden + gather(current) + self.next_primitive(gather(following))
        hidden = self.decoder(
            hidden, memory, tgt_mask=causal, tgt_key_padding_mask=None if input_mask is None else ~input_mask,
            memory_key_padding_mask=~memory_mask, tgt_is_causal=True,
        )
        return self.head(self.decoder_norm(hidden))

    def _teacher_inputs(self, cad_tokens, layout, attention_mask):
        """BOS + tokens[:-1], and the primitive index (+1, 0 for BOS) and offset within the
        primitive of each input token."""
        ids, offsets = layout
        bos = torch.full_like(cad_tokens[:, :1], BOS)
        inputs = torch.cat([bos, cad_tokens[:, :-1]], dim=1)
        primitives = torch.cat([torch.zeros_like(ids[:, :1]), (ids[:, :-1] + 1).clamp(min=0)], dim=1)
        input_offsets = torch.cat([torch.zeros_like(offsets[:, :1]), offsets[:, :-1]], dim=1)
        input_mask = torch.cat([torch.ones_like(attention_mask[:, :1]), attention_mask[:, :-1]], dim=1)
        return inputs, primitives.clamp(max=self.config.max_primitives), input_offsets, input_mask

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, *, codes_mask: torch.Tensor | None = None, constrained: bool = True,
               max_length: int | None = None, **kwargs) -> DecoderOutput:
        """Greedy decoding; `constrained` masks the logits with the grammar automaton at every
        step so the result always parses. Returns `values` `[B, L]` token ids (PAD after EOS)
        and `values_mask`."""
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        codes = self.check_codes(codes)
        if codes.shape[2] > self.config.max_primitives:
            raise ValueError(f"{codes.shape[2]} codes exceed max_primitives {self.config.max_primitives}")
        batch = codes.shape[0]
        memory_mask = torch.ones(batch, codes.shape[2], dtype=torch.bool, device=codes.device) if codes_mask is None else codes_mask.bool()
        memory = self._memory(self.quantizer.lookup(codes[:, 0]).to(self.from_code.weight.dtype))
        max_length = min(max_length or self.config.max_sequence_length, self.config.max_sequence_length)
        tokens = torch.full((batch, max_length), PAD, dtype=torch.long, device=codes.device)
        states = [State() for _ in range(batch)]
        finished = torch.zeros(batch, dtype=torch.bool, device=codes.device)
        for step in range(max_length):
            prefix = tokens[:, :step]
            ids, offsets = self._primitive_layout(prefix, None) if step else (prefix, prefix)
            pad = prefix.new_zeros(batch, 1)  # the next token's slot: only its input (the last prefix token) is read
            inputs, primitives, input_offsets, _ = self._teacher_inputs(
                torch.cat([prefix, pad], 1), (torch.cat([ids, pad], 1), torch.cat([offsets, pad], 1)),
                torch.ones(batch, step + 1, dtype=torch.bool, device=codes.device))
            logits = self._decoder_logits(inputs, primitives, input_offsets, memory, memory_mask)[:, -1].float()
            if constrained:
                allowed = torch.stack([
                    self.grammar.mask(state, step, max_length) if state is not None and state.phase != "done"
                    else torch.zeros(self.config.token_vocab_size, dtype=torch.bool) for state in states
                ]).to(logits.device)
                logits = logits.masked_fill(~allowed, float("-inf"))
            logits[:, PAD] = float("-inf")
            logits[:, BOS] = float("-inf")
            choice = logits.argmax(-1)
            choice = torch.where(finished, torch.full_like(choice, PAD), choice)
            tokens[:, step] = choice
            for index in range(batch):
                if not finished[index] and states[index] is not None:
                    states[index] = self.grammar.step(states[index], int(choice[index]))
            finished |= choice == EOS
            if bool(finished.all()):
                tokens = tokens[:, : step + 1]
                break
        values_mask = tokens != PAD
        return DecoderOutput(values=tokens, values_mask=values_mask)

    # ----- training ---------------------------------------------------------------------------------------
    def forward(self, cad_tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> TokenizerOutput:
        cad_tokens, attention_mask = self._check_tokens(cad_tokens, attention_mask)
        vectors, codes_mask, layout = self._encode_vectors(cad_tokens, attention_mask)
        quantized_flat, codes_flat, vq_losses = self.quantizer(vectors[codes_mask])
        quantized = vectors.new_zeros(vectors.shape[:2] + (quantized_flat.shape[-1],), dtype=quantized_flat.dtype)
        quantized[codes_mask] = quantized_flat
        memory = self._memory(quantized.to(vectors.dtype))
        inputs, primitives, input_offsets, input_mask = self._teacher_inputs(cad_tokens, layout, attention_mask)
        logits = self._decoder_logits(inputs, primitives, input_offsets, memory, codes_mask, input_mask)
        real_logits, targets = logits[attention_mask], cad_tokens[attention_mask]
        losses = {
            "emd": squared_emd(real_logits, targets, ordinal_ranges(self.config.bits)),
            "cross_entropy": F.cross_entropy(real_logits.float(), targets),
            **vq_losses,
        }
        codes = torch.zeros(codes_mask.shape, dtype=torch.long, device=cad_tokens.device)
        codes[codes_mask] = codes_flat
        return TokenizerOutput(loss=sum(losses.values()), losses=losses, codes=codes.unsqueeze(1), values=logits)

    # ----- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_reconstruction(self, batch: dict[str, torch.Tensor], metrics: list[str] | None = None):
        """Encode + constrained decode, scored by `modalzoo.evaluation.cad_metrics` (parameter
        accuracy, sketch / extrusion F1, invalid ratio; with "kernel" in `metrics` also the
        build123d invalid ratio and Chamfer distance). Returns (metrics, decoded token ids)."""
        cad_metrics = importlib.import_module("modalzoo.evaluation.cad_metrics")
        encoded = self.encode(batch["cad_tokens"], batch.get("attention_mask"))
        decoded = self.decode(encoded.codes, codes_mask=encoded.codes_mask)
        scores = cad_metrics.score_token_batches(batch["cad_tokens"], decoded.values, bits=self.config.bits,
                                                 use_kernel="kernel" in (metrics or ()))
        mask = encoded.codes_mask if encoded.codes_mask is not None else torch.ones_like(encoded.codes[:, 0], dtype=torch.bool)
        scores["codes_used"] = float(encoded.codes[:, 0][mask].unique().numel())
        scores["codes_per_item"] = float(mask.sum(1).float().mean())
        return scores, decoded.values

    def num_codes(self, cad_tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.LongTensor:
        """Primitives (codes) per item without running the encoder."""
        cad_tokens, attention_mask = self._check_tokens(cad_tokens, attention_mask)
        return self._primitive_ids(cad_tokens, attention_mask).max(1).values + 1


__all__ = ["CADCodebook", "CADTokenizerModel", "squared_emd"]
