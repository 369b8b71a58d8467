"""The one training loop every family uses.

Per step: `grad_accum` micro-batches through the generator (the tokenizer's `forward`, whose
named loss terms are weighted by the recipe), plus, once the adversarial warm-up is over, the
generator's adversarial term against a frozen discriminator; one optimiser step (unscale, clip,
step, schedule, EMA). Then the discriminator's step on the same micro-batches: real items
against the detached reconstructions. Mixed precision is `torch.autocast` with bf16, or fp16
with one `torch.amp.GradScaler` per optimiser; quantizers always run in fp32.

Processes are coordinated by `accelerate` (DDP, or FSDP on GPUs): it initialises the process
group, wraps the models and places tensors; autocast, scalers, schedules, checkpoints and the
data order are handled here so that they are identical on CPU and GPU, for one process and for
many, and so that a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt
from .codebooks import LearnedCodeRestarts, restart_dead_codes, run_quantizers_in_fp32, synchronise_codebooks
from .config import TrainConfig
from .data import DataPosition, TrainBatches, build_transform, evaluation_batch, load_source
from .discriminators import create_discriminator
from .ema import ModelEMA
from .losses import LeCamEMA, adaptive_weight, discriminator_loss, feature_matching_loss, generator_loss
from .reporting import MetricsLog, evaluate, save_final, save_samples
from .schedules import build_scheduler

ENGINE_TERMS = ("adversarial", "feature_matching", "perceptual")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def build_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    handlers = [DistributedDataParallelKwargs(find_unused_parameters=config.distributed.find_unused_parameters)]
    options = {}
    if config.distributed.strategy == "fsdp":
        # The wrapping is one line (accelerate's FullyShardedDataParallelPlugin); what is missing
        # is sharded state in checkpoints (model, optimiser) and in the EMA copy, so FSDP is
        # refused rather than run without bit-exact resume.
        raise NotImplementedError(
            "recipe: distributed.strategy=fsdp is not supported yet (checkpoints and EMA assume "
            "unsharded weights); use ddp, which fits every current family on one GPU per process"
        )
    log_with = [name for name in config.log_with if name != "csv" and _tracker_available(name)]
    return Accelerator(
        cpu=config.cpu,
        mixed_precision="no",  # autocast and scalers are ours: see the module docstring
        kwargs_handlers=handlers,
        log_with=log_with or None,
        project_dir=config.output_dir,
        **options,
    )


def _tracker_available(name: str) -> bool:
    from accelerate.utils import is_tensorboard_available

    return is_tensorboard_available() if name == "tensorboard" else True


def load_model(config: TrainConfig):
    """A registered variant at random init, or a saved folder / Hub repo; with its processor."""
    from modalzoo.registry import VARIANTS, create_model, create_processor

    name = config.model.name
    if name in VARIANTS:
        model = create_model(name, **config.model.overrides)
        return model, create_processor(model.config)
    if config.model.overrides:
        raise ValueError("recipe: model.overrides apply to registered variants only, not to saved models")
    from transformers import AutoModel

    from modalzoo.cli import load_processor

    model = AutoModel.from_pretrained(name)
    return model, load_processor(name, model)


def freeze_parameters(model: nn.Module, prefixes: list[str]) -> int:
    """Turns off gradients of parameters whose names start with one of `prefixes`."""
    frozen = 0
    for prefix in prefixes:
        matched = [p for name, p in model.named_parameters() if name == prefix or name.startswith(prefix + ".")]
        if not matched:
            raise ValueError(f"recipe: model.freeze prefix {prefix!r} matches no parameter of {type(model).__name__}")
        for parameter in matched:
            parameter.requires_grad_(False)
        frozen += len(matched)
    return frozen


class Trainer:
    """`Trainer(config).train()`; `resume=True` continues from the latest checkpoint in
    `output_dir` (if any), a path resumes from that checkpoint, False starts afresh."""

    def __init__(self, config: TrainConfig, *, resume: bool | str = True, push_to_hub: str | None = None):
        from accelerate.utils import set_seed

        self.config = config
        self.push_to_hub = push_to_hub
        self.accelerator = accel = build_accelerator(config)
        self.device = accel.device
        self.device_type = self.device.type
        self.amp_dtype = AMP_DTYPES.get(config.amp)
        # Every rank builds the same initial weights (DDP also broadcasts rank 0's).
        set_seed(config.seed)

        # The process group exists now, so codebooks built here see it.
        model, self.processor = load_model(config)
        self.modality = model.modality
        model.train()
        freeze_parameters(model, config.model.freeze)
        self.codebook_sync = synchronise_codebooks(model)
        model.to(self.device)
        self.ema = ModelEMA(model, decay=config.ema_decay, start_step=config.ema_start) if config.ema_decay else None
        self.fp32_quantizers = run_quantizers_in_fp32(model, self.device_type)
        self.code_restarts = None
        if config.codebook_restarts:
            # after the EMA copy (which must not restart) and around the fp32 wrapper
            self.code_restarts = LearnedCodeRestarts(model, threshold=config.codebook_restart_threshold)
            if not restart_dead_codes(model) and not len(self.code_restarts):
                raise ValueError(f"recipe: codebook_restarts is set but {type(model).__name__} has no codebook it applies to")
        self.model = model
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = _adamw(trainable, config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.schedule, config.steps)
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=config.amp == "fp16")

        self.discriminator = None
        disc_config = config.discriminator
        if disc_config is not None:
            kwargs = dict(disc_config.kwargs)
            if self.modality == "image":
                kwargs.setdefault("in_channels", 3)
            self.discriminator = create_discriminator(disc_config.name, **kwargs).to(self.device).train()
            self.disc_optimizer = _adamw(self.discriminator.parameters(), disc_config.optim or config.optim)
            self.disc_scheduler = build_scheduler(self.disc_optimizer, disc_config.schedule or config.schedule, config.steps)
            self.disc_scaler = torch.amp.GradScaler(self.device_type, enabled=config.amp == "fp16")
            self.lecam = LeCamEMA(disc_config.lecam_decay).to(self.device)
            self.last_layer = self._find_last_layer(model) if disc_config.adaptive_weight else None

        self.perceptual = None
        if config.perceptual is not None:
            if self.modality != "image":
                raise ValueError(f"recipe: the perceptual term is for images, this model's modality is {self.modality!r}")
            from .perceptual import ConvNeXtPerceptualLoss

            self.perceptual = ConvNeXtPerceptualLoss(weights=config.perceptual.weights, pretrained=config.perceptual.pretrained)
            self.perceptual.to(self.device)

        # Wrapping last: DDP / FSDP see the final modules.
        self.train_model = accel.prepare_model(model)
        self.train_discriminator = accel.prepare_model(self.discriminator) if self.discriminator is not None else None
        self.forward_model = torch.compile(self.train_model) if config.compile else self.train_model

        self.step = 0
        self.position = DataPosition()
        self.loss_weights: dict[str, float] | None = None
        self.metrics = MetricsLog(config.output_dir, enabled=accel.is_main_process and "csv" in config.log_with)
        self._resume(resume)
        self._build_data()

    # ----- setup -------------------------------------------------------------------------------------
    def _find_last_layer(self, model: nn.Module) -> nn.Parameter:
        name = self.config.discriminator.last_layer
        if name is None:
            if not hasattr(model, "get_last_layer"):
                raise ValueError(
                    "recipe: discriminator.adaptive_weight needs discriminator.last_layer (a parameter name) "
                    f"or a get_last_layer() method on {type(model).__name__}"
                )
            return model.get_last_layer()
        parameters = dict(model.named_parameters())
        if name not in parameters:
            raise ValueError(f"recipe: discriminator.last_layer {name!r} is not a parameter of the model")
        return parameters[name]

    def _build_data(self) -> None:
        config, accel = self.config, self.accelerator
        data = config.data
        train_set = load_source(data, self.modality, source=data.source, split=data.split, seed=config.seed)
        self.batches = TrainBatches(
            train_set,
            build_transform(data, self.processor, self.modality, config.seed, train=True),
            batch_size=data.batch_size,
            rank=accel.process_index,
            world_size=accel.num_processes,
            seed=config.seed,
            num_workers=data.num_workers,
            position=self.position,
            group_by_length=data.group_by_length,
        )
        eval_set = train_set
        if data.eval_source or data.eval_split:
            eval_set = load_source(
                data, self.modality, source=data.eval_source or data.source, split=data.eval_split or data.split, seed=config.seed
            )
        eval_transform = build_transform(data, self.processor, self.modality, config.seed, train=False)
        self.eval_batch = evaluation_batch(eval_set, eval_transform, data.eval_items) if data.eval_items else None
        self.segment_samples = eval_transform.segment_samples

    def _resume(self, resume: bool | str) -> None:
        if resume is False:
            return
        path = ckpt.latest_checkpoint(self.config.output_dir) if resume is True else Path(resume)
        if path is None:
            return
        state = ckpt.load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if "ema" not in state:
                raise ValueError(f"{path} holds no EMA weights but the recipe sets ema_decay")
            self.ema.load_state_dict(state["ema"])
        if self.discriminator is not None:
            if "discriminator" not in state:
                raise ValueError(f"{path} holds no discriminator but the recipe has one")
            self.discriminator.load_state_dict(state["discriminator"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
            self.disc_scheduler.load_state_dict(state["disc_scheduler"])
            self.disc_scaler.load_state_dict(state["disc_scaler"])
            self.lecam.load_state_dict(state["lecam"])
        if self.code_restarts is not None:
            self.code_restarts.load_state_dict(state["code_restarts"])
        self.step = state["step"]
        self.position.epoch, self.position.batches = state["data_position"]["epoch"], state["data_position"]["batches"]
        self.loss_weights = state.get("loss_weights")
        rng = state["rng"]
        if len(rng) == self.accelerator.num_processes:
            ckpt.set_rng_state(rng[self.accelerator.process_index])
        else:
            self.accelerator.print(
                f"resume: the checkpoint was written by {len(rng)} processes, this run has "
                f"{self.accelerator.num_processes}; random states are re-seeded, the data order is kept"
            )
        self.metrics.truncate_after(self.step)
        self.accelerator.print(f"resumed from {path} at step {self.step}")

    # ----- checkpoints ----------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        from accelerate.utils import gather_object

        rng_states = gather_object([ckpt.rng_state()])
        if not self.accelerator.is_main_process:
            self.accelerator.wait_for_everyone()
            return None
        state = {
            "format": 1,
            "step": self.step,
            "data_position": self.position.state_dict(),
            "recipe": self.config.to_dict(),
            "loss_weights": self.loss_weights,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_states,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.code_restarts is not None:
            state["code_restarts"] = self.code_restarts.state_dict()
        if self.discriminator is not None:
            state.update(
                discriminator=self.discriminator.state_dict(),
                disc_optimizer=self.disc_optimizer.state_dict(),
                disc_scheduler=self.disc_scheduler.state_dict(),
                disc_scaler=self.disc_scaler.state_dict(),
                lecam=self.lecam.state_dict(),
            )
        path = ckpt.save_checkpoint(state, self.config.output_dir, self.step, keep=self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return path

    # ----- losses ------------------------------------------------------------------------------------------
    def _weights_for(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.loss_weights is None or set(self.loss_weights) - set(ENGINE_TERMS) != set(terms):
            unknown = sorted(set(self.config.loss_weights) - set(terms) - set(ENGINE_TERMS))
            if unknown:
                raise ValueError(
                    f"recipe: loss_weights names unknown term(s) {unknown}; this model's forward returns "
                    f"{sorted(terms)} and a discriminator adds {list(ENGINE_TERMS)}"
                )
            idle = sorted(set(self.config.loss_weights) & {"adversarial", "feature_matching"}) if self.discriminator is None else []
            if self.perceptual is None and "perceptual" in self.config.loss_weights:
                idle.append("perceptual")
            if idle:
                self.accelerator.print(f"loss weights {idle} are ignored: the recipe has no discriminator")
            weights = {name: float(self.config.loss_weights.get(name, 1.0)) for name in terms}
            if self.perceptual is not None:
                weights["perceptual"] = float(self.config.loss_weights.get("perceptual", 1.0))
            if self.discriminator is not None:
                weights["adversarial"] = float(self.config.loss_weights.get("adversarial", 1.0))
                weights["feature_matching"] = float(self.config.loss_weights.get("feature_matching", 0.0))
            self.loss_weights = weights
            self.accelerator.print("loss weights: " + ", ".join(f"{k}={v:g}" for k, v in weights.items()))
        return self.loss_weights

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.amp_dtype)

    def _generator_micro_step(self, batch: dict, adversarial: bool, last: bool, logs: dict) -> torch.Tensor:
        accel, config = self.accelerator, self.config
        sync = contextlib.nullcontext() if last else accel.no_sync(self.train_model)
        with sync:
            with self._autocast():
                output = self.forward_model(**batch)
                if not output.losses:
                    raise ValueError(f"{type(self.model).__name__}.forward returned no named loss terms")
                weights = self._weights_for(output.losses)
                total = sum(weights[name] * term.float() for name, term in output.losses.items())
                for name, term in output.losses.items():
                    logs[name] = logs.get(name, 0.0) + term.detach().float() / config.grad_accum
                if self.perceptual is not None:
                    perceptual = self.perceptual(*self._unit_range(output.values, batch[self.model.main_input_name]))
                    total = total + weights["perceptual"] * perceptual
                    logs["perceptual"] = logs.get("perceptual", 0.0) + perceptual.detach() / config.grad_accum
                if adversarial:
                    disc = self.discriminator
                    disc.requires_grad_(False)
                    fake_logits, fake_features = disc(output.values)
                    adv = generator_loss(config.discriminator.loss, fake_logits)
                    weight = weights["adversarial"]
                    if self.last_layer is not None:
                        weight = weight * adaptive_weight(
                            total, adv, self.last_layer, maximum=config.discriminator.adaptive_weight_max
                        )
                        logs["adaptive_weight"] = logs.get("adaptive_weight", 0.0) + weight / config.grad_accum
                    total = total + weight * adv
                    logs["adversarial"] = logs.get("adversarial", 0.0) + adv.detach() / config.grad_accum
                    if weights["feature_matching"]:
                        with torch.no_grad():
                            _, real_features = disc(batch[self.model.main_input_name])
                        matching = feature_matching_loss(real_features, fake_features)
                        total = total + weights["feature_matching"] * matching
                        logs["feature_matching"] = logs.get("feature_matching", 0.0) + matching.detach() / config.grad_accum
                    disc.requires_grad_(True)
            logs["loss"] = logs.get("loss", 0.0) + total.detach() / config.grad_accum
            self.scaler.scale(total / config.grad_accum).backward()
        return output.values.detach()

    def _unit_range(self, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        low, high = getattr(self.processor, "value_range", (0.0, 1.0))
        return tuple((image - low) / (high - low) for image in images)

    def _discriminator_micro_step(self, real: torch.Tensor, fake: torch.Tensor, last: bool, logs: dict) -> None:
        accel, config = self.accelerator, self.config
        sync = contextlib.nullcontext() if last else accel.no_sync(self.train_discriminator)
        with sync:
            with self._autocast():
                real_logits, _ = self.train_discriminator(real)
                fake_logits, _ = self.train_discriminator(fake)
                loss = discriminator_loss(config.discriminator.loss, real_logits, fake_logits)
                if config.discriminator.lecam_weight:
                    self.lecam.update(real_logits, fake_logits)
                    loss = loss + config.discriminator.lecam_weight * self.lecam.penalty(real_logits, fake_logits)
            logs["discriminator"] = logs.get("discriminator", 0.0) + loss.detach() / config.grad_accum
            logs["logits_real"] = logs.get("logits_real", 0.0) + torch.stack([r.detach().float().mean() for r in real_logits]).mean() / config.grad_accum
            logs["logits_fake"] = logs.get("logits_fake", 0.0) + torch.stack([f.detach().float().mean() for f in fake_logits]).mean() / config.grad_accum
            self.disc_scaler.scale(loss / config.grad_accum).backward()

    def _optimizer_step(self, parameters, optimizer, scaler, scheduler) -> torch.Tensor | None:
        grad_norm = None
        if self.config.clip:
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        return grad_norm

    # ----- the loop --------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        config = self.config
        logs: dict = {}
        adversarial = self.discriminator is not None and self.step >= config.discriminator.start_step
        micro_batches = [
            {k: v.to(self.device, non_blocking=True) for k, v in next(self.batches).items()} for _ in range(config.grad_accum)
        ]
        fakes = []
        for index, batch in enumerate(micro_batches):
            fakes.append(self._generator_micro_step(batch, adversarial, index == config.grad_accum - 1, logs))
        grad_norm = self._optimizer_step(self.model.parameters(), self.optimizer, self.scaler, self.scheduler)
        if grad_norm is not None:
            logs["grad_norm"] = grad_norm
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        if adversarial:
            for index, (batch, fake) in enumerate(zip(micro_batches, fakes)):
                real = batch[self.model.main_input_name]
                self._discriminator_micro_step(real, fake, index == config.grad_accum - 1, logs)
            self._optimizer_step(self.discriminator.parameters(), self.disc_optimizer, self.disc_scaler, self.disc_scheduler)
        self.step += 1
        logs["lr"] = self.scheduler.get_last_lr()[0]
        # the logged losses are means over all processes' items
        names = sorted(logs)
        values = torch.stack([torch.as_tensor(logs[n], dtype=torch.float32, device=self.device).reshape(()) for n in names])
        values = self.accelerator.reduce(values, reduction="mean").tolist()
        return dict(zip(names, values))

    def items_per_step(self) -> int:
        return self.config.data.batch_size * self.config.grad_accum * self.accelerator.num_processes

    def train(self) -> dict:
        from tqdm.auto import tqdm

        config, accel = self.config, self.accelerator
        if accel.is_main_process:
            Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        accel.init_trackers("modalzoo", config={k: str(v) for k, v in config.to_dict().items()})
        progress = tqdm(total=config.steps, initial=self.step, disable=not accel.is_local_main_process, dynamic_ncols=True)
        history: list[dict] = []
        started, started_step = time.perf_counter(), self.step
        while self.step < config.steps:
            logs = self.train_step()
            history.append({"step": self.step, **logs})
            elapsed = max(1e-9, time.perf_counter() - started)
            throughput = (self.step - started_step) * self.items_per_step() / elapsed
            if accel.is_local_main_process:
                shown = {k: f"{v:.4g}" for k, v in logs.items() if k not in ("lr", "grad_norm")}
                shown["items/s"] = f"{throughput:.1f}"
                if self.modality != "image" and self.segment_samples:
                    shown["audio s/s"] = f"{throughput * self.segment_samples / self.processor.sampling_rate:.1f}"
                progress.set_postfix(shown, refresh=False)
                progress.update(1)
            if self.step % config.log_every == 0 or self.step == config.steps:
                record = {f"train/{k}": v for k, v in logs.items()}
                record["train/items_per_second"] = throughput
                self._log(record)
            if config.eval_every and self.step % config.eval_every == 0 and self.step < config.steps:
                self.run_evaluation()
            if config.save_every and self.step % config.save_every == 0 and self.step < config.steps:
                self.save_checkpoint()
        progress.close()
        last_eval = self.run_evaluation()
        self.save_checkpoint()
        final_dir = save_final(self, history, last_eval, push_to_hub=self.push_to_hub) if accel.is_main_process else None
        accel.wait_for_everyone()
        accel.end_training()
        return {"history": history, "eval": last_eval, "final_dir": final_dir}

    def _log(self, record: dict) -> None:
        self.accelerator.log(record, step=self.step)
        self.metrics.write(self.step, record)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def run_evaluation(self) -> dict | None:
        if self.eval_batch is None:
            return None
        model = self.eval_model
        was_training = model.training
        model.eval()
        batch = {k: v.to(self.device) for k, v in self.eval_batch.items()}
        with torch.no_grad():
            metrics, reconstructions = evaluate(model, batch, self.processor, self.config.eval_metrics)
        model.train(was_training)
        record = {f"eval/{k}": v for k, v in metrics.items()}
        self._log(record)
        if self.accelerator.is_main_process and self.config.num_samples:
            save_samples(self, batch, reconstructions)
        return metrics


def _adamw(parameters, optim) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        parameters, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay, eps=optim.eps
    )


def train(config: TrainConfig, *, resume: bool | str = True, push_to_hub: str | None = None) -> dict:
    """Runs a recipe to its last step (resuming from the latest checkpoint in its output_dir)."""
    trainer = Trainer(config, resume=resume, push_to_hub=push_to_hub)
    return trainer.train()

