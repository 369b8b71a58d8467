"""Trains the shipped cad-tokenizer-small on one CPU thread within a wall-clock budget, through
the shared trainer (training/recipes/cad_tokenizer_small.yaml), and copies the final folder to
modalzoo/pretrained/cad_tokenizer_small.

    python training/scripts/train_cad_tokenizer.py --minutes 30
    python benchmarks/cad_tokenizer_heldout.py modalzoo/pretrained/cad_tokenizer_small   # the metrics

After 100 steps, and every 250 after, the script measures the mean step time and shortens the
run (and its cosine schedule) so that training ends within `--minutes`; the recipe's `steps` is
the upper bound. With `--recipe NAME --no-ship` it budgets any recipe the same way (the shipped
vat-small was trained with `--recipe vat_small --no-ship --minutes 29`).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "modalzoo" / "pretrained" / "cad_tokenizer_small"
SHIPPED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget for the training steps")
    parser.add_argument("--recipe", default="cad_tokenizer_small")
    parser.add_argument("--no-ship", action="store_true", help="leave modalzoo/pretrained untouched")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the machine is shared)")
    parser.add_argument("overrides", nargs="*", help="recipe key=value overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from modalzoo.training import Trainer, load_recipe
    from modalzoo.training.reporting import save_final
    from modalzoo.training.schedules import lr_factor

    config = load_recipe(args.recipe, args.overrides)
    trainer = Trainer(config, resume=False)
    budget = args.minutes * 60
    started = time.perf_counter()
    history = []
    while trainer.step < config.steps:
        logs = trainer.train_step()
        history.append({"step": trainer.step, **logs})
        elapsed = time.perf_counter() - started
        if trainer.step == 100 or (trainer.step > 100 and trainer.step % 250 == 0):
            # the machine is shared: re-plan from the mean step time so far (the end only moves earlier)
            planned = max(trainer.step + 1, min(config.steps, int(budget / (elapsed / trainer.step))))
            base_lr, schedule = config.optim.lr, config.schedule
            trainer.scheduler.lr_lambdas[0] = lambda step, total=planned: lr_factor(
                step, name=schedule.name, base_lr=base_lr, warmup_steps=schedule.warmup_steps, total_steps=total,
                end_lr=schedule.end_lr,
            )
            config.steps = planned
            print(f"{elapsed / trainer.step:.3f} s/step: training for {planned} steps", flush=True)
        if trainer.step % config.log_every == 0:
            trainer._log({f"train/{k}": v for k, v in logs.items()} | {"train/elapsed_s": elapsed})
            print(trainer.step, f"{elapsed:.0f}s", {k: round(float(v), 4) for k, v in logs.items()}, flush=True)
        if elapsed > budget:
            print(f"budget reached at step {trainer.step}", flush=True)
            break
    train_seconds = time.perf_counter() - started
    metrics = trainer.run_evaluation()
    trainer.save_checkpoint()
    threads = "one CPU thread" if args.threads == 1 else f"{args.threads} CPU threads"
    config.description += f" ({trainer.step} steps in {train_seconds / 60:.1f} min on {threads})"
    final = save_final(trainer, history, metrics)
    print(f"trained {trainer.step} steps in {train_seconds / 60:.1f} min; evaluation: {metrics}; final folder {final}", flush=True)
    if not args.no_ship:
        SHIPPED.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED_FILES:
            shutil.copy2(final / name, SHIPPED / name)
        print(f"copied to {SHIPPED}", flush=True)


if __name__ == "__main__":
    main()
