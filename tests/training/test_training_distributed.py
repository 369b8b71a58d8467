"""Two CPU processes (gloo, launched with torchrun as `accelerate launch` does) train the same
weights as one process with twice the batch: gradients are averaged by DDP, EMA codebook
statistics are all-reduced, the discriminator and its LeCam statistics see the global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch
from accelerate.utils import set_seed

from modalzoo import create_model
from modalzoo.training import load_recipe, train
from modalzoo.training.checkpoint import latest_checkpoint, load_checkpoint

OVERRIDES = [
    "steps=6",
    "save_every=0",
    "eval_every=0",
    "data.eval_items=2",
    "num_samples=0",
    "log_with=[csv]",
    "discriminator.start_step=3",
    "ema_decay=0.9",
    "cpu=true",
]


def _free_port() -> int:
    # A static rendezvous on loopback: `--standalone` resolves the host name and has hung here.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_match_one_process_with_twice_the_batch(tmp_path):
    distributed_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "modalzoo.cli", "train", "reference_image_tiny", *OVERRIDES,
        "data.batch_size=4", f"output_dir={distributed_dir}",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, env=environment)
    assert completed.returncode == 0, completed.stderr[-3000:]

    train(load_recipe("reference_image_tiny", [*OVERRIDES, "data.batch_size=8", f"output_dir={single_dir}"]), resume=False)

    distributed = load_checkpoint(latest_checkpoint(distributed_dir))
    single = load_checkpoint(latest_checkpoint(single_dir))
    assert distributed["step"] == single["step"] == 6
    assert len(distributed["rng"]) == 2 and len(single["rng"]) == 1
    for part in ("model", "discriminator"):
        for name, value in single[part].items():
            other = distributed[part][name]
            if value.is_floating_point():
                torch.testing.assert_close(other, value, atol=2e-5, rtol=1e-4, msg=f"{part}.{name}")
            else:
                assert torch.equal(other, value), f"{part}.{name}"
    # the EMA codebook moved from its init, so the comparison covers synchronised statistics
    set_seed(0)
    initial = create_model("reference-image-tiny").state_dict()
    embed = next(k for k in single["model"] if k.endswith("_codebook.embed"))
    assert (single["model"][embed] - initial[embed]).abs().max() > 1e-3


def test_distributed_ema_update_matches_the_codebooks_own(tmp_path):
    """With the statistics all-reduced over a group of one, the replacement EMA update of
    modalzoo's EnCodec-layout codebook is exactly the codebook's own update."""
    from modalzoo.quantizers.euclidean_codebook import EuclideanCodebook
    from modalzoo.training.codebooks import _distributed_ema_update_

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        own, replaced = EuclideanCodebook(dim=8, codebook_size=16), EuclideanCodebook(dim=8, codebook_size=16)
        replaced.load_state_dict(own.state_dict())
        flat = torch.randn(64, 8)
        codes = own._nearest(flat)
        own._ema_update_(flat, codes)
        _distributed_ema_update_(replaced, flat, codes)
        for name, value in own.state_dict().items():
            assert torch.equal(value, replaced.state_dict()[name]), name
    finally:
        torch.distributed.destroy_process_group()
