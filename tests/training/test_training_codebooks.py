"""Dead-code restarts (`codebook_restarts`): EnCodec-layout EMA codebooks, whose original restart
is undone by the EMA update of the same step, and gradient-learned code tables, which have none;
and the recipe-level effect on wavtokenizer-tiny (no collapse to one code)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modalzoo.quantizers.embedding_vector_quantizer import EmbeddingVectorQuantizer
from modalzoo.quantizers.euclidean_codebook import EuclideanCodebook
from modalzoo.training import Trainer, load_recipe
from modalzoo.training.codebooks import LearnedCodeRestarts, restart_dead_codes


def _rows_in(rows: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """For each row of `rows`, whether it equals some row of `pool`."""
    return (rows[:, None, :] == pool[None]).all(-1).any(-1)


def _dead_codebook() -> EuclideanCodebook:
    torch.manual_seed(0)
    codebook = EuclideanCodebook(dim=4, codebook_size=8, kmeans_init=False, threshold_ema_dead_code=2.0)
    codebook.cluster_size.fill_(1.0)  # every code below the threshold: all are dead
    return codebook.train()


def test_original_restart_is_undone_by_the_ema_update():
    codebook = _dead_codebook()
    batch = torch.randn(1, 64, 4) + 5.0  # far from every code
    codebook(batch)
    # the original writes batch vectors into `embed`, then overwrites them with embed_avg / size
    assert not _rows_in(codebook.embed, batch[0]).any()
    # only the one code the whole batch chose moved (by EMA) towards it; the dead stay where they were
    assert int((codebook.embed.norm(dim=1) > 3.0).sum()) <= 1


def test_effective_restart_moves_dead_codes_onto_the_batch():
    codebook = _dead_codebook()
    assert restart_dead_codes(codebook) == 1
    batch = torch.randn(1, 64, 4) + 5.0
    codebook(batch)
    # restarted to batch vectors, then one EMA step: the codes sit in the batch's cloud
    assert (codebook.embed - 5.0).abs().mean(1).max() < 2.0
    assert (codebook.cluster_size >= 0.99 * 2.0).all()
    codebook.eval()
    before = codebook.embed.clone()
    codebook(batch)
    assert torch.equal(codebook.embed, before)  # inference never restarts


def test_learned_code_restarts_seed_from_data_and_round_trip():
    torch.manual_seed(0)
    quantizer = EmbeddingVectorQuantizer(dim=4, codebook_size=16, use_l2_norm=True).train()
    restarts = LearnedCodeRestarts(quantizer, threshold=0.5)
    assert len(restarts) == 1
    z = torch.randn(2, 8, 4)
    quantizer(z)
    # all codes start unused, so the first step seeds the whole table from normalised tokens
    assert restarts.restarted == 16
    assert _rows_in(quantizer.codebook.weight.detach(), F.normalize(z.reshape(-1, 4), dim=-1)).all()
    state = restarts.state_dict()
    other = LearnedCodeRestarts(EmbeddingVectorQuantizer(dim=4, codebook_size=16, use_l2_norm=True), threshold=0.5)
    other.load_state_dict(state)
    assert torch.equal(other.usage[""], restarts.usage[""]) and other.restarted == 16
    weight = quantizer.codebook.weight.detach().clone()
    quantizer.eval()(torch.randn(2, 8, 4) * 100)
    assert torch.equal(quantizer.codebook.weight, weight)


def test_codebook_restarts_need_a_codebook(tmp_path):
    with pytest.raises(ValueError, match="codebook_restarts"):
        Trainer(load_recipe("reference_image_tiny", ["codebook_restarts=true", "log_with=[csv]", f"output_dir={tmp_path}"]), resume=False)


def test_code_restarts_are_checkpointed(tmp_path):
    overrides = ["codebook_restarts=true", "log_with=[csv]", "num_samples=0", "eval_every=0", "data.eval_items=0",
                 "data.batch_size=2", "discriminator=null", f"output_dir={tmp_path}"]  # fmt: skip
    trainer = Trainer(load_recipe("titok_tiny", overrides), resume=False)
    for _ in range(2):
        trainer.train_step()
    trainer.save_checkpoint()
    resumed = Trainer(load_recipe("titok_tiny", overrides), resume=True)
    assert resumed.step == 2 and resumed.code_restarts.restarted == trainer.code_restarts.restarted > 0
    for name, usage in trainer.code_restarts.usage.items():
        assert torch.equal(resumed.code_restarts.usage[name], usage)


def test_wavtokenizer_tiny_mel_falls_without_collapsing_to_one_code(tmp_path):
    """The recipe's fix: on its fixed evaluation batch the mel loss falls and several codes are in
    use after 30 steps (without codebook_restarts: one code for every frame)."""
    trainer = Trainer(
        load_recipe("wavtokenizer_tiny", ["log_with=[csv]", "num_samples=0", "eval_every=0", "save_every=0",
                                          "data.eval_items=4", f"output_dir={tmp_path}"]),  # fmt: skip
        resume=False,
    )
    model = trainer.model

    def measure():
        model.eval()
        with torch.no_grad():
            mel = float(model(**trainer.eval_batch).losses["mel"])
            codes = model.encode(**trainer.eval_batch).codes
        model.train()
        return mel, codes.unique().numel()

    mel_before, _ = measure()
    for _ in range(30):
        trainer.train_step()
    mel_after, codes_used = measure()
    assert mel_after < mel_before - 1.0, (mel_before, mel_after)  # measured: 11.45 -> 9.8
    assert codes_used >= 4, codes_used  # measured: 12 of 32 (1 without restarts)
