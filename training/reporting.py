"""What a run leaves behind: the CSV metrics log, evaluation metrics, sample reconstructions,
and the final Hub-ready folder (weights, processor, recipe, model card), optionally pushed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import soundfile
import torch
import yaml
from PIL import Image


class MetricsLog:
    """`metrics.csv` in the run folder: one row per (step, metric, value). A resumed run drops
    the rows a killed run wrote after its last checkpoint, so the log reads as one run."""

    def __init__(self, output_dir: str, *, enabled: bool):
        self.path = Path(output_dir) / "metrics.csv"
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.exists():
            return
        with open(self.path, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= step]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "metric", "value"])
            writer.writeheader()
            writer.writerows(rows)

    def write(self, step: int, record: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "metric", "value"])
            for name, value in record.items():
                writer.writerow([step, name, f"{float(value):.8g}"])


def read_metrics(output_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """`metrics.csv` as {metric: [(step, value), ...]}."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(Path(output_dir) / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            series.setdefault(row["metric"], []).append((int(row["step"]), float(row["value"])))
    return series


# ----- evaluation -----------------------------------------------------------------------------------------
DEFAULT_EVAL_METRICS = {
    "image": ("psnr", "ssim"),
    "audio": ("si_sdr", "mel_distance", "stft_distance"),
    "speech": ("si_sdr", "mel_distance", "stft_distance"),
}


@torch.no_grad()
def evaluate(model, batch: dict[str, torch.Tensor], processor, metrics: list[str] | None = None) -> tuple[dict[str, float], torch.Tensor]:
    """Encode + decode the evaluation batch (the inference path, not `forward`) and measure the
    reconstruction with `modalzoo.evaluation` (the same metrics as `modalzoo eval`), plus the
    mean squared error in the model's space and codebook usage. Returns (metrics, reconstructions)."""
    from modalzoo.evaluation import AudioMetrics, CodebookUsage, ImageMetrics

    if model.modality not in ("image", "audio", "speech"):
        # Structured outputs (meshes, CAD sequences): the family measures its own reconstruction.
        if not hasattr(model, "evaluate_reconstruction"):
            raise ValueError(f"evaluating {model.modality!r} training needs {type(model).__name__}.evaluate_reconstruction()")
        return model.evaluate_reconstruction(batch, metrics)
    encoded = model.encode(**batch)
    decoded = model.decode(encoded.codes, codes_mask=encoded.codes_mask)
    reference = batch[model.main_input_name].float()
    reconstruction = decoded.values.float()[..., : reference.shape[-1]]
    results = {"mse": (reconstruction - reference).pow(2).mean().item()}
    requested = tuple(metrics or DEFAULT_EVAL_METRICS.get(model.modality, ()))
    if model.modality == "image":
        low, high = getattr(processor, "value_range", (0.0, 1.0))
        meter = ImageMetrics(requested, device=reference.device)
        meter.update(((reference - low) / (high - low)).clamp(0, 1), ((reconstruction - low) / (high - low)).clamp(0, 1))
    else:
        meter = AudioMetrics(processor.sampling_rate, requested)
        for original, decoded_item in zip(reference[:, 0].cpu(), reconstruction[:, 0].cpu()):
            meter.update(original, decoded_item)
    results.update(meter.compute())
    if encoded.codes is not None:
        usage = CodebookUsage(model.codebook_sizes)
        usage.update(encoded.codes, encoded.codes_mask)
        results.update(usage.compute())
    return results, reconstruction


def save_samples(trainer, batch: dict[str, torch.Tensor], reconstructions: torch.Tensor) -> Path:
    """Originals next to reconstructions: PNGs for images, WAV pairs for audio; other modalities
    through their processor's `save_training_samples(reference, reconstructions, folder)`."""
    folder = Path(trainer.config.output_dir) / "samples" / f"step-{trainer.step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    count = min(trainer.config.num_samples, reconstructions.shape[0])
    reference = batch[trainer.model.main_input_name][:count]
    processor = trainer.processor
    if trainer.modality not in ("image", "audio", "speech"):
        processor.save_training_samples(reference, reconstructions[:count], folder)
    elif trainer.modality == "image":
        for index, (original, decoded) in enumerate(
            zip(processor.postprocess(reference), processor.postprocess(reconstructions[:count]))
        ):
            pair = Image.new("RGB", (original.width * 2, original.height))
            pair.paste(original, (0, 0))
            pair.paste(decoded, (original.width, 0))
            pair.save(folder / f"{index}.png")
    else:
        rate = processor.sampling_rate
        for index, (original, decoded) in enumerate(
            zip(processor.postprocess(reference), processor.postprocess(reconstructions[:count]))
        ):
            soundfile.write(folder / f"{index}-original.wav", original, rate)
            soundfile.write(folder / f"{index}-reconstruction.wav", decoded.clip(-1, 1), rate)
    return folder


# ----- the final folder -----------------------------------------------------------------------------------
def training_section(trainer, history: list[dict]) -> str:
    """The card's account of the run: data, optimisation, loss curve end points."""
    config = trainer.config
    first = history[0] if history else {}
    last = history[-1] if history else {}
    terms = [k for k in last if k not in ("step", "lr", "grad_norm", "adaptive_weight", "logits_real", "logits_fake")]
    lines = [
        "",
        "## Training",
        "",
        config.description or f"Trained with `modalzoo train` from `{config.model.name}`.",
        "",
        f"- steps: {trainer.step}, items per step: {trainer.items_per_step()} "
        f"({config.data.batch_size} per process x {trainer.accelerator.num_processes} processes x {config.grad_accum} accumulation)",
        f"- data: `{config.data.source}`",
        f"- optimiser: AdamW lr {config.optim.lr:g}, betas {tuple(config.optim.betas)}, weight decay {config.optim.weight_decay:g}; "
        f"{config.schedule.name} schedule, {config.schedule.warmup_steps} warm-up steps",
        f"- loss weights: {json.dumps(trainer.loss_weights)}",
        f"- precision: {config.amp}; EMA decay: {config.ema_decay}; gradient clip: {config.clip}",
        f"- weights: {'EMA' if trainer.ema is not None else 'last step'}; the full recipe is `training_recipe.yaml`",
        "",
        "| loss term | first step | last step |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {f'{first[k]:.4g}' if k in first else '-'} | {last[k]:.4g} |" for k in terms]
    return "\n".join(lines) + "\n"


def save_final(trainer, history: list[dict], metrics: dict | None, *, push_to_hub: str | None = None) -> Path:
    """`output_dir/final`: weights (EMA when kept), processor, the family's model card (with the
    final evaluation) plus a training section, and the recipe; pushed when asked."""
    from modalzoo.hub import render_model_card, save_for_hub
    from modalzoo.registry import VARIANTS

    config = trainer.config
    folder = Path(config.output_dir) / "final"
    model = trainer.eval_model
    evaluation = None
    if metrics:
        evaluation = {"dataset": config.data.eval_source or config.data.source, "split": config.data.eval_split or config.data.split,
                      "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)}}  # fmt: skip
    # trained from a saved model: that is the base; from a variant's random init: none
    base_model = None if config.model.name in VARIANTS else config.model.name
    save_for_hub(model, folder, processor=trainer.processor, card=False)
    card = render_model_card(model, push_to_hub, metrics=evaluation, base_model=base_model, tags=["modalzoo-train"])
    (folder / "README.md").write_text(str(card).rstrip("\n") + "\n" + training_section(trainer, history))
    with open(folder / "training_recipe.yaml", "w") as handle:
        yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
    if push_to_hub:
        push_folder(folder, push_to_hub)
    return folder


def push_folder(folder: Path, repo_id: str) -> str:
    """Uploads the final folder as it is (card with the training section, recipe) in one commit."""
    from huggingface_hub import HfApi

    from modalzoo.hub import hub_step

    api = HfApi()
    with hub_step("pushing to", repo_id, "create repo"):
        api.create_repo(repo_id, exist_ok=True)
    with hub_step("pushing to", repo_id, "upload"):
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="modalzoo train: final model")
    return repo_id
