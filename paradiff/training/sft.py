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
from paradiff.training.masking import NoiseSettings, masked_diffusion_loss, noise_batch
from paradiff.training.recipe import (
    RecipeError,
    check_eval_settings,
    check_optimizer_settings,
    evaluation_function,
    number_in,
    whole_number,
)
from paradiff.training.runs import (
    FINAL_DIR,
    RunFolder,
    check_output_settings,
    example_generator,
    warmup_cosine_schedule,
)
from paradiff.training.trackers import Tracker

DEFAULTS: dict[str, Any] = {
    "model": {
        "init": None,  # checkpoint dir / hub id / bundled name to start from
        "activation_checkpointing": False,
    },
    "data": {
        "pretokenized": None,  # folder written by `paradiff pretokenize`
        "text_length": None,  # default: the checkpoint's sampler text_gen_length
        "cond_dropout": 0.1,  # share of examples trained without their condition (CFG)
        "reasoning": True,  # false: the answer's text is all fill (a model that does not think)
    },
    "train": {
        "steps": 1000,
        "batch_size": 32,  # global batch (all processes, all micro-batches)
        "micro_batch_size": None,  # per process and forward; default: the whole share
        "lr": 3e-4,
        "min_lr_ratio": 0.1,
        "warmup_steps": 100,
        "weight_decay": 0.01,
        "betas": [0.9, 0.95],
        "grad_clip": 1.0,
        "loss_weighting": "paper",  # paper (text 1/t, image 1) or uniform
        "changed_image_weight": 1.0,  # weight of the output codes an edit changes (1 = paper)
        "drawn_image_weight": 1.0,  # weight of a generation's non-background codes (1 = paper)
        "image_from_text_share": 0.0,  # rows with the reasoning clean, the image masked (0 = paper)
        "seed": 0,
        "precision": "auto",  # auto (bf16 where the device supports it), fp32, bf16
        "threads": None,  # CPU threads (torch.set_num_threads)
    },
    "eval": {
        # "module:function" called as function(pipeline, limit=limit) -> dict, logged as
        # {"step", "eval"} every `every` steps and at the end (e.g. paradiff.shapes.probe's
        # training_evaluation: the location probe and a quick ShapeBench)
        "call": None,
        "every": 0,
        "limit": 60,
    },
    "output": {
        "dir": "runs/sft",
        "save_every": 500,
        "log_every": 10,
        "keep": 2,  # checkpoints kept besides the final one
        "log_with": None,  # tensorboard: the log's numbers to TensorBoard too
    },
}


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


def noise_settings(train: dict[str, Any]) -> NoiseSettings:
    """The recipe's `train.` noise keys as the objective's settings (RecipeError if out of range)."""
    numbers = {}
    for name in ("changed_image_weight", "drawn_image_weight", "image_from_text_share"):
        try:
            numbers[name] = float(train[name])
        except (TypeError, ValueError):
            raise RecipeError(f"train.{name} must be a number, got {train[name]!r}") from None
    try:
        return NoiseSettings(train["loss_weighting"], **numbers)
    except ValueError as err:
        raise RecipeError(f"train.{err}") from None


def check_config(config: dict[str, Any]) -> None:
    train, data = config["train"], config["data"]
    if not config["model"]["init"]:
        raise RecipeError("model.init is not set (a checkpoint to start from)")
    if not data["pretokenized"]:
        raise RecipeError("data.pretokenized is not set (run `paradiff pretokenize` first)")
    noise_settings(train)
    check_optimizer_settings(train)
    whole_number("train", "batch_size", train["batch_size"], 1)
    if train["micro_batch_size"] is not None:
        whole_number("train", "micro_batch_size", train["micro_batch_size"], 1)
    if train["precision"] not in PRECISIONS:
        raise RecipeError(
            f"train.precision must be one of {PRECISIONS}, got {train['precision']!r}"
        )
    if not isinstance(data["reasoning"], bool):
        raise RecipeError(f"data.reasoning must be true or false, got {data['reasoning']!r}")
    if not number_in("data", "cond_dropout", data["cond_dropout"], 0, 1) < 1:
        raise RecipeError(f"data.cond_dropout must be in [0, 1), got {data['cond_dropout']!r}")
    check_output_settings(config["output"])
    check_eval_settings(config["eval"])


PRECISIONS = ("auto", "fp32", "bf16")


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
        config: dict[str, Any],
        resume: bool = False,
        progress: bool = True,
        overwrite: bool = False,
    ):
        """`resume` continues the run in `output.dir`, `overwrite` replaces it (see
        `paradiff.training.runs`)."""
        from accelerate import Accelerator

        check_config(config)
        self.config = config
        self.noise = noise_settings(config["train"])
        train = config["train"]
        if train["threads"]:
            torch.set_num_threads(int(train["threads"]))
        # cpu=True where there is no GPU: otherwise processes started by `accelerate launch
        # --multi_gpu` (torchrun) would each train alone instead of joining one gloo group
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision(train["precision"])
        )
        self.folder = RunFolder(config["output"]["dir"])
        self.out = self.folder.root
        self.progress = progress and self.accelerator.is_main_process
        start_from = self.folder.start(resume, overwrite, self.accelerator.is_main_process)
        resumed = self.folder.load_state(start_from) if start_from else None  # damaged: now
        self.tracker = Tracker(
            config["output"] if self.accelerator.is_main_process else {}, "sft", config
        )
        self.pipe = ParallelPipeline.from_pretrained(
            str(start_from or config["model"]["init"]), dtype="float32", device="cpu"
        )
        self.pipe.model.gradient_checkpointing = bool(config["model"]["activation_checkpointing"])
        self.text_length = int(
            config["data"]["text_length"] or self.pipe.sampler_defaults.text_gen_length
        )
        self.dataset = PretokenizedDataset(config["data"]["pretokenized"], self.text_length)
        self.batches_per_epoch = len(epoch_batches(self.dataset, train["batch_size"], 0, 0))
        if self.batches_per_epoch == 0:
            raise RecipeError(
                f"the dataset ({len(self.dataset)} examples) has fewer examples per output size "
                f"than one batch of {train['batch_size']}"
            )
        self.unconditional = {
            task: self.pipe.layout.prompt_ids(task, None, self.pipe.text_tokenizer)
            for task in ("edit", "generate")
        }
        self.objective = Objective(self.pipe).train()
        self.optimizer = adamw(self.pipe.model, train["lr"], train["betas"], train["weight_decay"])
        self.scheduler = warmup_cosine_schedule(self.optimizer, train)
        self.step = 0
        self.rng: dict[str, Any] | None = None  # the checkpoint's generators, restored by run()
        if resumed is not None:
            self.load_state(resumed)
        self.objective, self.optimizer = self.accelerator.prepare(self.objective, self.optimizer)

    # -- data ---------------------------------------------------------------------------------
    def global_batch(self, step: int) -> list[int]:
        epoch, index = divmod(step, self.batches_per_epoch)
        train = self.config["train"]
        return epoch_batches(self.dataset, train["batch_size"], train["seed"], epoch)[index]

    def micro_batches(self, step: int) -> tuple[list[tuple[Batch, list]], int]:
        """This process's micro-batches of step `step` (each with its row generators) and the
        number of answer tokens of the whole global batch."""
        train, layout = self.config["train"], self.pipe.layout
        indices = self.global_batch(step)
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        if len(indices) % world:
            raise RecipeError(f"batch size {len(indices)} does not split over {world} processes")
        share = len(indices) // world
        micro = int(train["micro_batch_size"] or share)
        mine = range(rank * share, (rank + 1) * share)
        answer_end = self.pipe.answer_end_ids
        rows = []
        for position in mine:
            gen = example_generator(int(train["seed"]), step, position)
            example = self.dataset[indices[position]]
            if not self.config["data"]["reasoning"]:
                example = dataclasses.replace(example, text=example.text[:0])
            dropped = torch.rand(1, generator=gen).item() < float(
                self.config["data"]["cond_dropout"]
            )
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
        train = self.config["train"]
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
        if train["grad_clip"]:
            self.accelerator.clip_grad_norm_(self.objective.parameters(), float(train["grad_clip"]))
        lr = self.scheduler.get_last_lr()[0]  # the rate of this step (the scheduler moves on)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": loss_sum, "stats": stats, "tokens": answer_tokens, "lr": lr}

    def run(self) -> Path:
        train, output = self.config["train"], self.config["output"]
        total = int(train["steps"])
        if self.rng is not None:
            restore_rng(self.rng)
        elif self.step == 0:
            seed_generators(int(train["seed"]))
        bar = tqdm(total=total, initial=self.step, desc="sft", disable=not self.progress)
        started, tokens = time.perf_counter(), 0
        while self.step < total:
            result = self.train_step()
            tokens += result["tokens"]
            bar.update(1)
            if self.step % int(output["log_every"]) == 0 or self.step == total:
                self.log(result, tokens / (time.perf_counter() - started), bar)
            every = int(self.config["eval"]["every"])
            if every and self.step % every == 0 and self.step < total:
                self.evaluate()
            if self.step % int(output["save_every"]) == 0 and self.step < total:
                self.save_checkpoint()
        bar.close()
        self.evaluate()
        self.tracker.finish()
        self.save_checkpoint()
        return self.save_final()

    def evaluate(self) -> None:
        """The recipe's `eval.call` on the model as it is now, appended to the log."""
        spec = self.config["eval"]
        if not spec["call"] or not self.accelerator.is_main_process:
            return
        result = evaluation_function(spec["call"])(self.pipe, limit=int(spec["limit"]))
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
            "config": self.config,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        load_optimizer_state(self.optimizer, self.scheduler, state, self.pipe.model)
        self.rng = state.get("rng")
        self.step = int(state["step"])

    def save_checkpoint(self) -> None:
        """checkpoint-NNNNNN/ (pipeline + training state) written atomically, then `latest`."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            keep = self.config["output"]["keep"]
            self.folder.write_checkpoint(self.pipe, self.step, self.training_state(), keep)
        self.accelerator.wait_for_everyone()

    def save_final(self) -> Path:
        if self.accelerator.is_main_process:
            self.pipe.save_pretrained(self.out / FINAL_DIR)
        self.accelerator.wait_for_everyone()
        return self.out / FINAL_DIR
