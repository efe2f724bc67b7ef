"""`paradiff train sft`: supervised fine-tuning with the masked-diffusion objective.

One recipe file (YAML) holds the run; `key=value` overrides change it (its settings:
`paradiff.training.sft_settings`; the loop it shares with ParaRL: `paradiff.training.loop`).
The same recipe runs on one CPU, one GPU or several processes (`accelerate launch`): every
example's condition dropout and noise come from a generator seeded by (seed, step, position in
the global batch), each process takes its share of the global batch, and the loss is normalised
by the global number of answer tokens, so the update does not depend on the number of processes
or micro-batches. Checkpoints (`checkpoint-NNNNNN/`) are loadable pipelines plus
`training_state.pt`; `--resume` continues from the latest one and reproduces an uninterrupted
run exactly.
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

from paradiff.layout import Batch
from paradiff.pipeline import ParallelPipeline
from paradiff.training.data import PretokenizedDataset, epoch_batches, training_sequence
from paradiff.training.loop import TrainingLoop
from paradiff.training.masking import masked_diffusion_loss, noise_batch
from paradiff.training.recipe import RecipeError
from paradiff.training.runs import example_generator
from paradiff.training.sft_settings import SFTSettings

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


class SFTRun(TrainingLoop):
    """One SFT run: data, model, and the shared loop (optimizer, schedule, checkpoints, logs)."""

    NAME = "sft"

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
        self.set_threads()
        # cpu=True where there is no GPU: otherwise processes started by `accelerate launch
        # --multi_gpu` (torchrun) would each train alone instead of joining one gloo group
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision(train.precision)
        )
        self.progress = progress and self.is_main
        start_from = self.start_folder(resume, overwrite)
        try:
            self.load(start_from)
        except BaseException:
            self.folder.abandon()  # a bad init or dataset leaves the folder as it was
            raise

    def load(self, start_from: Path | None) -> None:
        """The model (the recipe's init, or the checkpoint resumed), the data and the optimizer."""
        settings, train = self.settings, self.settings.train
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
        self.start_optimizer(self.pipe.model)
        self.objective, self.optimizer = self.accelerator.prepare(self.objective, self.optimizer)

    # -- processes ------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def wait_for_everyone(self) -> None:
        self.accelerator.wait_for_everyone()

    def end_processes(self) -> None:
        self.accelerator.end_training()  # trackers (none) finished, the process group destroyed

    def clip_gradients(self, max_norm: float) -> None:
        self.accelerator.clip_grad_norm_(self.objective.parameters(), max_norm)

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
        self.optimizer_step()
        lr = self.end_step()
        self.tokens += answer_tokens
        return {"loss": loss_sum, "stats": stats, "lr": lr}

    def before_training(self) -> None:
        self.tokens = 0  # answer tokens trained on since this run started (tokens_per_s)

    def log_line(self, result: dict[str, Any]) -> dict[str, Any] | None:
        """The global batch's loss and cross-entropies (summed over the processes)."""
        loss = torch.tensor([result["loss"]], dtype=torch.float64)
        stats = self.accelerator.reduce(result["stats"].to(self.accelerator.device), "sum").cpu()
        loss = float(self.accelerator.reduce(loss.to(self.accelerator.device), "sum"))
        if not self.is_main:
            return None
        text_ce, text_n, image_ce, image_n = stats.tolist()
        tokens_per_s = self.tokens / (time.perf_counter() - self.started)
        return {
            "step": self.step,
            "loss": round(loss, 5),
            "text_ce": round(text_ce / max(1, text_n), 5),
            "image_ce": round(image_ce / max(1, image_n), 5),
            "lr": result["lr"],
            "tokens_per_s": round(tokens_per_s * self.accelerator.num_processes, 1),
        }

    def postfix(self, line: dict[str, Any]) -> dict[str, Any]:
        return {"loss": line["loss"], "text": line["text_ce"], "image": line["image_ce"]}
