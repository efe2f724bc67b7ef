"""`paradiff train sft`: supervised fine-tuning with the masked-diffusion objective.

One recipe file (YAML) holds the run; `key=value` overrides change it. The same recipe runs on
one CPU, one GPU or several processes (`accelerate launch`): every example's condition dropout
and noise come from a generator seeded by (seed, step, position in the global batch), each
process takes its share of the global batch, and the loss is normalised by the global number of
answer tokens, so the update does not depend on the number of processes or micro-batches.
Checkpoints (`checkpoint-NNNNNN/`) are loadable pipelines plus `training_state.pt`; `--resume`
continues from the latest one and reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from paradiff.layout import Batch
from paradiff.pipeline import ParallelPipeline
from paradiff.training.data import PretokenizedDataset, epoch_batches, training_sequence
from paradiff.training.loop import (
    adamw,
    load_optimizer_state,
    restore_rng,
    rng_state,
    seed_generators,
)
from paradiff.training.masking import masked_diffusion_loss, noise_batch
from paradiff.training.recipe import RecipeError
from paradiff.training.runs import (
    FINAL_DIR,
    RunFolder,
    example_generator,
    warmup_cosine_schedule,
)
from paradiff.training.sft_settings import SFTSettings
from paradiff.training.trackers import Tracker

DEFAULTS = SFTSettings.defaults()  # the recipe's keys and defaults (`load_recipe`)


class Objective(nn.Module):
    """The model plus its loss, so distributed wrappers see one forward per micro-batch."""

    def __init__(self, pipe: ParallelPipeline) -> None:
        super().__init__()
        self.model = pipe.model
        self.space = pipe.space

    def forward(self, ids, attention_mask, targets, masked, weight, is_text):
        from paradiff.training.masking import NoisedBatch

        noised = NoisedBatch(ids, attention_mask, targets, masked, weight, is_text, 0)
        parts = masked_diffusion_loss(self.model, noised, self.space)
        stats = torch.tensor(
            [parts.text_ce, parts.text_count, parts.image_ce, parts.image_count],
            dtype=torch.float64,
        )
        return parts.weighted, stats


def mixed_precision(choice: str) -> str:
    if choice == "fp32":
        return "no"
    if choice == "bf16":
        return "bf16"
    cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16" if cuda_bf16 else "no"


class SFTRun:
    """One SFT run: data, model, optimizer, schedule, checkpoints, logs."""

    def __init__(
        self,
        config: SFTSettings | Mapping[str, Any],
        resume: bool = False,
        progress: bool = True,
        overwrite: bool = False,
    ):
        """`config`: the settings, or a merged recipe (`load_recipe`) to check first; `resume`
        continues the run in `output.dir`, `overwrite` replaces it (see
        `paradiff.training.runs`)."""
        from accelerate import Accelerator

        self.settings = settings = SFTSettings.of(config)
        train = settings.train
        self.noise = train.noise
        if train.threads:
            torch.set_num_threads(train.threads)
        # cpu=True where there is no GPU: otherwise processes started by `accelerate launch
        # --multi_gpu` (torchrun) would each train alone instead of joining one gloo group
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision(train.precision)
        )
        self.folder = RunFolder(settings.output.dir)
        self.out = self.folder.root
        self.progress = progress and self.accelerator.is_main_process
        start_from = self.folder.start(resume, overwrite, self.accelerator.is_main_process)
        resumed = self.folder.load_state(start_from) if start_from else None  # damaged: now
        log_with = settings.output.log_with if self.accelerator.is_main_process else None
        self.tracker = Tracker(log_with, self.out, "sft", settings.to_config())
        self.pipe = ParallelPipeline.from_pretrained(
            str(start_from or settings.model.init), dtype="float32", device="cpu"
        )
        self.pipe.model.gradient_checkpointing = settings.model.activation_checkpointing
        self.text_length = settings.data.text_length or self.pipe.sampler_defaults.text_gen_length
        self.dataset = PretokenizedDataset(settings.data.pretokenized, self.text_length)
        self.batches_per_epoch = len(epoch_batches(self.dataset, train.batch_size, 0, 0))
        if self.batches_per_epoch == 0:
            raise RecipeError(
                f"the dataset ({len(self.dataset)} examples) has fewer examples per output size "
                f"than one batch of {train.batch_size}"
            )
        self.unconditional = {
            task: self.pipe.layout.prompt_ids(task, None, self.pipe.text_tokenizer)
            for task in ("edit", "generate")
        }
        self.objective = Objective(self.pipe).train()
        self.optimizer = adamw(self.pipe.model, train.lr, train.betas, train.weight_decay)
        self.scheduler = warmup_cosine_schedule(self.optimizer, train)
        self.step = 0
        self.rng: dict[str, Any] | None = None  # the checkpoint's generators, restored by run()
        if resumed is not None:
            self.load_state(resumed)
        self.objective, self.optimizer = self.accelerator.prepare(self.objective, self.optimizer)

    # -- data ---------------------------------------------------------------------------------
    def global_batch(self, step: int) -> list[int]:
        epoch, index = divmod(step, self.batches_per_epoch)
        train = self.settings.train
        return epoch_batches(self.dataset, train.batch_size, train.seed, epoch)[index]

    def micro_batches(self, step: int) -> tuple[list[tuple[Batch, list]], int]:
        """This process's micro-batches of step `step` (each with its row generators) and the
        number of answer tokens of the whole global batch."""
        train, data, layout = self.settings.train, self.settings.data, self.pipe.layout
        indices = self.global_batch(step)
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        if len(indices) % world:
            raise RecipeError(f"batch size {len(indices)} does not split over {world} processes")
        share = len(indices) // world
        micro = train.micro_batch_size or share
        mine = range(rank * share, (rank + 1) * share)
        answer_end = self.pipe.answer_end_ids
        rows = []
        for position in mine:
            gen = example_generator(train.seed, step, position)
            example = self.dataset[indices[position]]
            if not data.reasoning:
                example = dataclasses.replace(example, text=example.text[:0])
            dropped = torch.rand(1, generator=gen).item() < data.cond_dropout
            prompt = self.unconditional[example.task] if dropped else None
            rows.append(
                (training_sequence(layout, example, self.text_length, answer_end, prompt), gen)
            )
        chunks = [rows[i : i + micro] for i in range(0, len(rows), micro)]
        batches = [(layout.collate([s for s, _ in c]), [g for _, g in c]) for c in chunks]
        h, w = self.dataset[indices[0]].output_codes.shape
        return batches, len(indices) * (h * w + self.text_length)

    # -- training -----------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimizer step over the global batch; returns this process's loss statistics."""
        train = self.settings.train
        batches, answer_tokens = self.micro_batches(self.step)
        world = self.accelerator.num_processes
        stats = torch.zeros(4, dtype=torch.float64)
        loss_sum = 0.0
        device = self.accelerator.device
        for i, (batch, gens) in enumerate(batches):
            noised = noise_batch(batch, self.pipe.space, gens, self.noise).to(device)
            last = i == len(batches) - 1
            sync = nullcontext() if last else self.accelerator.no_sync(self.objective)
            with sync:
                weighted, parts = self.objective(
                    noised.ids,
                    noised.attention_mask,
                    noised.targets,
                    noised.masked,
                    noised.weight,
                    noised.is_text,
                )
                # DDP averages gradients over processes: scale so the sum is over the global batch
                loss = weighted * world / answer_tokens
                self.accelerator.backward(loss)
            stats += parts.cpu()
            loss_sum += float(weighted.detach()) / answer_tokens
        if train.grad_clip:
            self.accelerator.clip_grad_norm_(self.objective.parameters(), train.grad_clip)
        lr = self.scheduler.get_last_lr()[0]  # the rate of this step (the scheduler moves on)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": loss_sum, "stats": stats, "tokens": answer_tokens, "lr": lr}

    def run(self) -> Path:
        train, output = self.settings.train, self.settings.output
        total = train.steps
        if self.rng is not None:
            restore_rng(self.rng)
        elif self.step == 0:
            seed_generators(train.seed)
        bar = tqdm(total=total, initial=self.step, desc="sft", disable=not self.progress)
        started, tokens = time.perf_counter(), 0
        while self.step < total:
            result = self.train_step()
            tokens += result["tokens"]
            bar.update(1)
            if self.step % output.log_every == 0 or self.step == total:
                self.log(result, tokens / (time.perf_counter() - started), bar)
            every = self.settings.eval.every
            if every and self.step % every == 0 and self.step < total:
                self.evaluate()
            if self.step % output.save_every == 0 and self.step < total:
                self.save_checkpoint()
        bar.close()
        self.evaluate()
        self.tracker.finish()
        self.save_checkpoint()
        return self.save_final()

    def evaluate(self) -> None:
        """The recipe's `eval.call` on the model as it is now, appended to the log."""
        spec = self.settings.eval
        if not spec.call or not self.accelerator.is_main_process:
            return
        result = spec.function(self.pipe, limit=spec.limit)
        echo = None if self.progress else lambda text: print(text, flush=True)
        self.folder.log({"step": self.step, "eval": result}, echo)

    def log(self, result: dict[str, Any], tokens_per_s: float, bar) -> None:
        loss = torch.tensor([result["loss"]], dtype=torch.float64)
        stats = self.accelerator.reduce(result["stats"].to(self.accelerator.device), "sum").cpu()
        loss = float(self.accelerator.reduce(loss.to(self.accelerator.device), "sum"))
        if not self.accelerator.is_main_process:
            return
        text_ce, text_n, image_ce, image_n = stats.tolist()
        line = {
            "step": self.step,
            "loss": round(loss, 5),
            "text_ce": round(text_ce / max(1, text_n), 5),
            "image_ce": round(image_ce / max(1, image_n), 5),
            "lr": result["lr"],
            "tokens_per_s": round(tokens_per_s * self.accelerator.num_processes, 1),
        }
        self.folder.log(line, None if self.progress else lambda text: print(text, flush=True))
        self.tracker.log(line, self.step)
        bar.set_postfix(loss=line["loss"], text=line["text_ce"], image=line["image_ce"])

    # -- checkpoints --------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "config": self.settings.to_config(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        load_optimizer_state(self.optimizer, self.scheduler, state, self.pipe.model)
        self.rng = state.get("rng")
        self.step = int(state["step"])

    def save_checkpoint(self) -> None:
        """checkpoint-NNNNNN/ (pipeline + training state) written atomically, then `latest`."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            keep = self.settings.output.keep
            self.folder.write_checkpoint(self.pipe, self.step, self.training_state(), keep)
        self.accelerator.wait_for_everyone()

    def save_final(self) -> Path:
        if self.accelerator.is_main_process:
            self.pipe.save_pretrained(self.out / FINAL_DIR)
        self.accelerator.wait_for_everyone()
        return self.out / FINAL_DIR
