"""The training loop every model shares: accelerate (one GPU, many GPUs, CPU), gradient accumulation, mixed
precision, warm-up + cosine learning rate, checkpoints every N steps with exact resume, a wall-clock
budget, a tqdm progress bar and a JSON Lines loss log.

A model takes part by offering `training_step(batch) -> {"loss": tensor, other scalars...}` and
`save_pretrained(dir)`. Every batch also carries `batch["step"]` (the optimiser step about to be taken), so
schedules inside a model (GAN start, curricula) survive a resume.

GAN training: pass `discriminator=module`. The model's `training_step` then returns the generated audio under
"audio", and after each generator step the trainer calls `model.discriminator_step(batch, audio)` ->
{"loss", ...} and steps a second optimiser; the discriminator and its optimiser go into every checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from flexitts.errors import CheckpointError, ConfigError
from flexitts.fileio import write_json_atomic
from flexitts.training.sampler import BucketBatchSampler
from flexitts.training.state_io import load_state, save_state

CHECKPOINTS = "checkpoints"
FINAL_MODEL = "model"
LOG_NAME = "train_log.jsonl"


@dataclass
class TrainingConfig:
    """Optimisation and bookkeeping settings shared by every model's training."""

    max_steps: int = 10_000
    max_units: int = 16000 * 60  # batch budget in the data set's length unit (e.g. samples): padded size
    max_items: int | None = None
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 500
    grad_accum: int = 1
    grad_clip: float = 1.0
    mixed_precision: str = "no"  # no | fp16 | bf16 | auto (bf16 where the GPU has it)
    checkpoint_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    seed: int = 0
    time_budget_minutes: float | None = None  # stop (with a checkpoint) when this much wall time has passed
    threads: int | None = None  # CPU threads for torch (None: torch's default)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.mixed_precision not in ("no", "fp16", "bf16", "auto"):
            raise ConfigError(f"mixed_precision must be no, fp16, bf16 or auto, not '{self.mixed_precision}'")
        if self.max_steps < 1 or self.grad_accum < 1 or self.checkpoint_every < 1 or self.keep_last < 1:
            raise ConfigError("max_steps, grad_accum, checkpoint_every and keep_last must be at least 1")


@dataclass
class TrainResult:
    """What a call of `Trainer.fit` did."""

    step: int
    model_dir: Path
    last_losses: dict[str, float] = field(default_factory=dict)
    stopped_by_budget: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


class _StepModule(nn.Module):
    """Routes `forward` to `training_step` so that DDP's gradient hooks see the call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model.training_step(batch)  # type: ignore[operator]


def lr_lambda(config: TrainingConfig) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to `min_lr_ratio` at `max_steps`."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / max(1, config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy_keys": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def seed_everything(seed: int) -> None:
    """Seed torch, Python and NumPy: call before building a model so that its initial weights repeat."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder under `out_dir/checkpoints`, if any."""
    folder = Path(out_dir) / CHECKPOINTS
    done = sorted(p for p in folder.glob("step-*") if (p / "trainer.json").is_file()) if folder.is_dir() else []
    return done[-1] if done else None


class Trainer:
    """Runs `model.training_step` over batches from `dataset` (indexable) grouped by `lengths`.

    Args:
        model: module with `training_step(batch)` and `save_pretrained(dir)`.
        dataset: `dataset[i]` gives one item; `collate(list_of_items)` makes a batch of tensors.
        lengths: per-item size in the unit of `config.max_units`.
        out_dir: checkpoints, the loss log and the final model (`out_dir/model`) go here.
        evaluate: optional `evaluate(model) -> {metric: value}` run every `eval_every` steps and at the end.
        parameters: optional parameter groups for the optimiser (default: all trainable parameters).
        discriminator: optional GAN discriminator trained by `model.discriminator_step` (see the module doc).
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Sequence[Any],
        collate: Callable[[list[Any]], dict[str, Any]],
        lengths: Sequence[int],
        config: TrainingConfig,
        out_dir: str | os.PathLike,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        parameters: Sequence[Any] | None = None,
        discriminator: nn.Module | None = None,
    ):
        self.model, self.dataset, self.collate, self.lengths = model, dataset, collate, lengths
        self.config, self.out_dir, self.evaluate = config, Path(out_dir), evaluate
        self.parameters = parameters
        self.discriminator = discriminator
        self.disc_optimizer: Any = None

    # -- checkpoints -------------------------------------------------------------------------------------
    def _save_checkpoint(self, accelerator: Any, step: int, optimizer: Any, scheduler: Any, sampler: BucketBatchSampler) -> None:
        if not accelerator.is_main_process:
            return
        root = self.out_dir / CHECKPOINTS
        final = root / f"step-{step:08d}"
        tmp = root / f".tmp-step-{step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.unwrap_model(self.model).save_pretrained(tmp)
        save_state(optimizer.state_dict(), tmp, "optimizer")
        if self.discriminator is not None:
            from flexitts.checkpoints import save_safetensors

            save_safetensors(accelerator.unwrap_model(self.discriminator).state_dict(), tmp / "discriminator.safetensors")
            save_state(self.disc_optimizer.state_dict(), tmp, "disc_optimizer")
        save_state({"scheduler": scheduler.state_dict(), "rng": _rng_state()}, tmp, "extra")
        write_json_atomic(tmp / "trainer.json", {"step": step, "sampler": sampler.state_dict(), "config": asdict(self.config)})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # the folder appears complete or not at all
        for old in sorted(root.glob("step-*"))[: -self.config.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def _restore(self, folder: Path, optimizer: Any, scheduler: Any, sampler: BucketBatchSampler) -> int:
        from flexitts.checkpoints import load_safetensors

        trainer_state = json.loads((folder / "trainer.json").read_text(encoding="utf-8"))
        model = self.model
        state = load_safetensors(folder / "model.safetensors")
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(f"cannot resume from {folder}: the model does not match ({str(error).splitlines()[0]})") from None
        optimizer.load_state_dict(load_state(folder, "optimizer"))
        if self.discriminator is not None:
            disc_file = folder / "discriminator.safetensors"
            if not disc_file.is_file():
                raise CheckpointError(f"cannot resume from {folder}: it holds no discriminator (trained without GAN)")
            self.discriminator.load_state_dict(load_safetensors(disc_file))
            self.disc_optimizer.load_state_dict(load_state(folder, "disc_optimizer"))
        extra = load_state(folder, "extra")
        scheduler.load_state_dict(extra["scheduler"])
        sampler.load_state_dict(trainer_state["sampler"])
        _set_rng_state(extra["rng"])
        return int(trainer_state["step"])

    def _trim_log(self, step: int) -> None:
        """Drop log lines past `step` (written after the checkpoint we resume from)."""
        log = self.out_dir / LOG_NAME
        if log.is_file():
            kept = [line for line in log.read_text(encoding="utf-8").splitlines() if line and json.loads(line).get("step", 0) <= step]
            log.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    # -- the loop ----------------------------------------------------------------------------------------
    def fit(self, resume: bool = False, progress: bool = True, init_state: dict[str, torch.Tensor] | None = None) -> TrainResult:
        """Train until `max_steps` or the time budget; returns where it stopped. `resume` continues the newest
        checkpoint in `out_dir` exactly; `init_state` (weights to fine-tune from) is ignored when resuming."""
        from accelerate import Accelerator
        from tqdm.auto import tqdm

        cfg = self.config
        started = time.monotonic()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        precision = cfg.mixed_precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
        accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=precision, cpu=not torch.cuda.is_available())
        self.out_dir.mkdir(parents=True, exist_ok=True)

        checkpoint = latest_checkpoint(self.out_dir) if resume else None
        if resume and checkpoint is None:
            raise CheckpointError(f"--resume given but '{self.out_dir}' holds no checkpoint: drop --resume to start afresh")
        if checkpoint is None:
            seed_everything(cfg.seed)
            if init_state is not None:
                self.model.load_state_dict(init_state)

        params = self.parameters if self.parameters is not None else [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=cfg.betas, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
        if self.discriminator is not None:
            self.disc_optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=cfg.learning_rate, betas=cfg.betas,
                                                    weight_decay=cfg.weight_decay)
        sampler = BucketBatchSampler(
            self.lengths, cfg.max_units, seed=cfg.seed, max_items=cfg.max_items,
            rank=accelerator.process_index, world_size=accelerator.num_processes,
        )
        step = 0
        if checkpoint is not None:
            step = self._restore(checkpoint, optimizer, scheduler, sampler)
            self._trim_log(step)
        elif accelerator.is_main_process:
            (self.out_dir / LOG_NAME).unlink(missing_ok=True)

        wrapped = _StepModule(self.model)
        wrapped, optimizer = accelerator.prepare(wrapped, optimizer)
        disc = None
        if self.discriminator is not None:
            disc, self.disc_optimizer = accelerator.prepare(self.discriminator, self.disc_optimizer)
        batches = iter(sampler)
        log_file = (self.out_dir / LOG_NAME).open("a", encoding="utf-8") if accelerator.is_main_process else None
        bar = tqdm(total=cfg.max_steps, initial=step, disable=not (progress and accelerator.is_local_main_process), desc="train", dynamic_ncols=True)
        running: dict[str, float] = {}
        running_steps = 0  # optimizer steps summed in `running` since the last log line
        last: dict[str, float] = {}
        metrics: dict[str, float] = {}
        stopped_by_budget = False
        wrapped.train()
        try:
            while step < cfg.max_steps:
                for _ in range(cfg.grad_accum):
                    batch = self._to_device(self.collate([self.dataset[i] for i in next(batches)]), accelerator.device)
                    batch["step"] = step
                    with accelerator.accumulate(wrapped):
                        with accelerator.autocast():
                            out = wrapped(batch)
                        accelerator.backward(out["loss"])
                        if accelerator.sync_gradients and cfg.grad_clip > 0:
                            accelerator.clip_grad_norm_(params, cfg.grad_clip)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    audio = out.pop("audio", None)
                    if disc is not None and audio is not None:
                        out.update(self._discriminator_step(accelerator, disc, batch, audio))
                    for key, value in out.items():
                        running[key] = running.get(key, 0.0) + float(value.detach()) / cfg.grad_accum
                scheduler.step()
                step += 1
                running_steps += 1
                bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    last = {k: v / running_steps for k, v in running.items()}
                    running, running_steps = {}, 0
                    bar.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k != "loss"} | {"loss": f"{last.get('loss', 0):.3f}"})
                    if log_file is not None:
                        row = {"step": step, "lr": scheduler.get_last_lr()[0], "time": round(time.monotonic() - started, 1)} | last
                        log_file.write(json.dumps(row) + "\n")
                        log_file.flush()
                if self.evaluate is not None and cfg.eval_every and step % cfg.eval_every == 0:
                    metrics = self._run_eval(accelerator, wrapped, step, log_file)
                over_budget = cfg.time_budget_minutes is not None and time.monotonic() - started > cfg.time_budget_minutes * 60
                if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or over_budget:
                    self._save_checkpoint(accelerator, step, optimizer, scheduler, sampler)
                if over_budget:
                    stopped_by_budget = True
                    break
        finally:
            bar.close()
            if log_file is not None:
                log_file.close()
        if self.evaluate is not None and not (cfg.eval_every and step % cfg.eval_every == 0):
            metrics = self._run_eval(accelerator, wrapped, step, None)
        model_dir = self.out_dir / FINAL_MODEL
        if accelerator.is_main_process:
            accelerator.unwrap_model(self.model).save_pretrained(model_dir)
        accelerator.wait_for_everyone()
        return TrainResult(step=step, model_dir=model_dir, last_losses=last, stopped_by_budget=stopped_by_budget, metrics=metrics)

    def _discriminator_step(self, accelerator: Any, disc: nn.Module, batch: dict[str, Any], audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step of the discriminator on real vs generated (detached) audio."""
        with accelerator.accumulate(disc):
            with accelerator.autocast():
                d_out = accelerator.unwrap_model(self.model).discriminator_step(batch, audio.detach())
            accelerator.backward(d_out["loss"])
            if accelerator.sync_gradients and self.config.grad_clip > 0:
                accelerator.clip_grad_norm_(disc.parameters(), self.config.grad_clip)
            self.disc_optimizer.step()
            self.disc_optimizer.zero_grad(set_to_none=True)
        return {k: v for k, v in d_out.items() if k != "loss"}

    def _run_eval(self, accelerator: Any, wrapped: nn.Module, step: int, log_file: Any) -> dict[str, float]:
        wrapped.eval()
        with torch.no_grad():
            metrics = self.evaluate(accelerator.unwrap_model(self.model))  # type: ignore[misc]
        wrapped.train()
        if accelerator.is_main_process:
            path = self.out_dir / "eval_log.jsonl"
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": step} | metrics) + "\n")
        return metrics

    @staticmethod
    def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
