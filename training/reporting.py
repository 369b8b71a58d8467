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
def _family_metrics(modality: str, reference: torch.Tensor, reconstruction: torch.Tensor, sampling_rate: int | None):
    """The family's metrics from `modalzoo.evaluation` when it provides them, else None."""
    try:
        from modalzoo import evaluation
    except ImportError:
        return None
    compute = getattr(evaluation, "reconstruction_metrics", None)
    if compute is None:
        return None
    try:
        return dict(compute(modality, reference, reconstruction, sampling_rate=sampling_rate))
    except (ImportError, NotImplementedError):
        return None


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB per item, `[B, T]` inputs."""
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / reference.pow(2).sum(-1, keepdim=True).clamp_min(1e-8)
    target = scale * reference
    return 10 * torch.log10(target.pow(2).sum(-1).clamp_min(1e-8) / (estimate - target).pow(2).sum(-1).clamp_min(1e-8))


@torch.no_grad()
def evaluate(model, batch: dict[str, torch.Tensor], processor) -> tuple[dict[str, float], torch.Tensor]:
    """Encode + decode the evaluation batch (the inference path, not `forward`) and measure
    the reconstruction. Returns (metrics, reconstructions)."""
    encoded = model.encode(**batch)
    decoded = model.decode(encoded.codes, codes_mask=encoded.codes_mask)
    reference = batch[model.main_input_name].float()
    reconstruction = decoded.values.float()[..., : reference.shape[-1]]
    metrics: dict[str, float] = {}
    if model.modality == "image":
        low, high = getattr(processor, "value_range", (0.0, 1.0))
        unit_ref = (reference - low) / (high - low)
        unit_rec = ((reconstruction - low) / (high - low)).clamp(0, 1)
        mse = (unit_rec - unit_ref).pow(2).flatten(1).mean(1)
        metrics["mse"] = mse.mean().item()
        metrics["psnr"] = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean().item()
    else:
        metrics["mse"] = (reconstruction - reference).pow(2).mean().item()
        metrics["si_sdr"] = si_sdr(reference[:, 0], reconstruction[:, 0]).mean().item()
    family = _family_metrics(
        model.modality, reference.cpu(), reconstruction.cpu(), getattr(processor, "sampling_rate", None)
    )
    if family:
        metrics.update({k: float(v) for k, v in family.items()})
    codes = encoded.codes
    usage = [codes[:, q].unique().numel() / size for q, size in enumerate(model.codebook_sizes[: codes.shape[1]])]
    metrics["codebook_usage"] = sum(usage) / len(usage)
    return metrics, reconstruction


def save_samples(trainer, batch: dict[str, torch.Tensor], reconstructions: torch.Tensor) -> Path:
    """Originals next to reconstructions: PNGs for images, WAV pairs for audio."""
    folder = Path(trainer.config.output_dir) / "samples" / f"step-{trainer.step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    count = min(trainer.config.num_samples, reconstructions.shape[0])
    reference = batch[trainer.model.main_input_name][:count]
    processor = trainer.processor
    if trainer.modality == "image":
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
def model_card(trainer, history: list[dict], metrics: dict | None) -> str:
    config = trainer.config
    model = trainer.eval_model
    first = history[0] if history else {}
    last = history[-1] if history else {}
    terms = [k for k in last if k not in ("step", "lr", "grad_norm", "adaptive_weight", "logits_real", "logits_fake")]
    lines = [
        "---",
        "library_name: modalzoo",
        "tags: [modalzoo, tokenizer, " + model.modality + "]",
        "---",
        "",
        f"# {config.model.name} trained with modalzoo",
        "",
        config.description or f"A {model.config.model_type} tokenizer trained with `modalzoo train`.",
        "",
        "## Usage",
        "",
        "```python",
        "import modalzoo  # registers the family",
        "from transformers import AutoModel",
        "model = AutoModel.from_pretrained(\"PATH_OR_REPO\")",
        "codes = model.encode(**processor(item, return_tensors=\"pt\")).codes",
        "```",
        "",
        "## Training",
        "",
        f"- steps: {trainer.step}, items per step: {trainer.items_per_step()} "
        f"({config.data.batch_size} per process x {trainer.accelerator.num_processes} processes x {config.grad_accum} accumulation)",
        f"- data: `{config.data.source}`",
        f"- optimiser: AdamW lr {config.optim.lr:g}, betas {tuple(config.optim.betas)}, weight decay {config.optim.weight_decay:g}; "
        f"schedule {config.schedule.name} with {config.schedule.warmup_steps} warm-up steps",
        f"- loss weights: {json.dumps(trainer.loss_weights)}",
        f"- precision: {config.amp}; EMA decay: {config.ema_decay}; gradient clip: {config.clip}",
        f"- weights saved: {'EMA' if trainer.ema is not None else 'raw'}",
        "",
        "| loss term | first step | last step |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {first.get(k, float('nan')):.4g} | {last[k]:.4g} |" for k in terms]
    if metrics:
        lines += ["", "## Evaluation (held-out items, encode + decode)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in metrics.items() if math.isfinite(v)]
    lines += ["", "The full recipe is in `training_recipe.yaml`.", ""]
    return "\n".join(lines)


def save_final(trainer, history: list[dict], metrics: dict | None, *, push_to_hub: str | None = None) -> Path:
    folder = Path(trainer.config.output_dir) / "final"
    model = trainer.eval_model
    model.save_pretrained(folder)
    trainer.processor.save_pretrained(folder)
    with open(folder / "training_recipe.yaml", "w") as handle:
        yaml.safe_dump(trainer.config.to_dict(), handle, sort_keys=False)
    (folder / "README.md").write_text(model_card(trainer, history, metrics))
    if push_to_hub:
        push_folder(folder, push_to_hub)
    return folder


def push_folder(folder: Path, repo_id: str) -> str:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="modalzoo train: final model")
    return repo_id
