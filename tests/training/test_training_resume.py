"""A run killed with SIGKILL mid-way resumes from its last checkpoint and ends bit-identical to a
run that was never interrupted (CPU): model, EMA, discriminator and optimiser states."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from modalzoo.training import load_recipe, train
from modalzoo.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from modalzoo.training.reporting import read_metrics

STEPS = 10
# The schedule's horizon is fixed, so the killed run (told to go on for ever) and the two
# 10-step runs follow the same learning rates.
OVERRIDES = [
    f"schedule.total_steps={STEPS}",
    "save_every=3",
    "eval_every=0",
    "log_every=1",
    "data.eval_items=2",
    "num_samples=0",
    "log_with=[csv]",
    "discriminator.start_step=2",
    "ema_decay=0.9",
    "data.batch_size=4",
]


def _assert_identical(left, right, where=""):
    if torch.is_tensor(left):
        assert torch.equal(left, right), where
    elif isinstance(left, dict):
        assert left.keys() == right.keys(), where
        for key in left:
            _assert_identical(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right)):
            _assert_identical(a, b, f"{where}[{index}]")
    else:
        assert left == right, where


def test_sigkilled_run_resumes_bit_exactly(tmp_path):
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    command = [
        sys.executable, "-m", "modalzoo.cli", "train", "reference_image_tiny", *OVERRIDES,
        "steps=100000", f"output_dir={killed_dir}",
    ]  # fmt: skip
    # the in-process runs below use this process's thread count (other test modules set 1);
    # bit-exactness needs the killed run to use the same kernels
    environment = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(killed_dir):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    resumed_from = load_checkpoint(latest_checkpoint(killed_dir))["step"]
    assert 0 < resumed_from < STEPS

    train(load_recipe("reference_image_tiny", [*OVERRIDES, f"steps={STEPS}", f"output_dir={killed_dir}"]), resume=True)
    train(load_recipe("reference_image_tiny", [*OVERRIDES, f"steps={STEPS}", f"output_dir={straight_dir}"]), resume=False)

    resumed = load_checkpoint(latest_checkpoint(killed_dir))
    straight = load_checkpoint(latest_checkpoint(straight_dir))
    assert resumed["step"] == straight["step"] == STEPS
    for part in ("model", "ema", "discriminator", "optimizer", "disc_optimizer", "scheduler", "lecam", "rng", "data_position"):
        _assert_identical(resumed[part], straight[part], part)

    # the metrics log reads as one run: each step's training loss once, equal to the straight run's
    resumed_losses = read_metrics(killed_dir)["train/loss"]
    assert [step for step, _ in resumed_losses] == list(range(1, STEPS + 1))
    assert resumed_losses == read_metrics(straight_dir)["train/loss"]
