"""ParallelPipeline: instruction (+ image) in, reasoning text + image (+ trajectory) out.

`ParallelPipeline.from_pretrained(dir_or_hub_id)` loads the model, its text tokenizer, its image
tokenizer (aMUSEd VQ, MAGVIT-v2 or the shapes codebook, found in the checkpoint directory) and
the sampler defaults saved beside `config.json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from paradiff import __version__
from paradiff.checkpoint import load_tokenizers, resolve_checkpoint_dir, save_model
from paradiff.image_tokenizers.base import (
    ImageTokenizer,
    check_size,
    encode_image,
    load_image,
    resize_center_crop,
    to_pil,
    tokenizer_device,
)
from paradiff.image_tokenizers.loading import save_image_tokenizer
from paradiff.layout import Layout, LayoutError, Sequence1D, TokenSpace, token_space_from_config
from paradiff.model import MaskPredictor
from paradiff.model_config import parse_dtype
from paradiff.sampling import ParallelSampler, SamplerConfig
from paradiff.sampling.settings import read_sampler_settings, write_sampler_settings
from paradiff.text_tokenizer import TextTokenizer
from paradiff.trajectory import grey_out, partial_text, save_gif, side_by_side, with_caption

DEFAULT_IMAGE_SIZE = (512, 512)  # (width, height) of generated images when nothing else says


class PipelineInputError(ValueError):
    """A request the pipeline cannot run (empty instruction, prompt too long, bad paint mask)."""


@dataclass
class Request:
    """One sample to draw: the instruction, the input image (editing) and its seed."""

    instruction: str
    image: str | os.PathLike | Image.Image | None = None
    paint_mask: np.ndarray | Image.Image | None = None
    seed: int | None = None


@dataclass
class SampleResult:
    """The reasoning text, the image, and the trajectory that produced them.

    trajectory (T + 1, A): the answer part after every step; `frames()` renders it.
    """

    task: str
    instruction: str
    text: str
    image: Image.Image
    trajectory: torch.Tensor
    settings: dict[str, Any]
    timings: dict[str, float]
    render_frame: Callable[[torch.Tensor], Image.Image] = field(repr=False)
    reveal_text: Callable[[torch.Tensor], str] = field(repr=False)

    def frames(self) -> list[Image.Image]:
        """One picture per state: the partial image (grey = masked) beside the partial text, over
        a "step s/T" caption (which keeps the frames distinct: a GIF merges identical ones)."""
        n = len(self.trajectory) - 1
        return [
            with_caption(self.render_frame(state), f"step {s}/{n}")
            for s, state in enumerate(self.trajectory)
        ]

    def partial_texts(self) -> list[str]:
        return [self.reveal_text(state) for state in self.trajectory]

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write image.png, reasoning.txt, meta.json and trajectory.gif into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.image.save(out / "image.png")
        (out / "reasoning.txt").write_text(self.text + "\n", encoding="utf-8")
        meta = {
            "task": self.task,
            "instruction": self.instruction,
            "settings": self.settings,
            "timings": self.timings,
            "paradiff_version": __version__,
        }
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        save_gif(self.frames(), out / "trajectory.gif")
        return out


@dataclass
class PartialAnswer:
    """One request's answer part-way through sampling, rendered on demand.

    ids (L,): a snapshot of the whole sequence after `step` (0-based) of `n_steps` steps.
    """

    step: int
    n_steps: int
    ids: torch.Tensor
    render_image: Callable[[torch.Tensor], Image.Image] = field(repr=False)
    reveal_text: Callable[[torch.Tensor], str] = field(repr=False)

    def image(self) -> Image.Image:
        """The partial image, masked tokens grey."""
        return self.render_image(self.ids)

    def text(self) -> str:
        """The partial reasoning, masked tokens as ▒."""
        return self.reveal_text(self.ids)


class ParallelPipeline:
    """Thinking-aware editing and generation with one MaskPredictor."""

    def __init__(
        self,
        model: MaskPredictor,
        text_tokenizer: TextTokenizer,
        image_tokenizer: ImageTokenizer,
        sampler_defaults: SamplerConfig | None = None,
        image_size: tuple[int, int] | None = None,
        fixed_size: bool = False,
    ) -> None:
        """`image_size` (width, height) is the generation default; with `fixed_size` input
        images are resized to it too (a model trained on one size, like the shapes world's)."""
        self.model = model
        self.text_tokenizer = text_tokenizer
        self.image_tokenizer = image_tokenizer
        self.space = token_space_from_config(model.config)
        self.layout = Layout(self.space)
        self.sampler_defaults = sampler_defaults or SamplerConfig()
        self.image_size = tuple(image_size or DEFAULT_IMAGE_SIZE)
        self.fixed_size = fixed_size
        if self.space.template == "A":
            self.answer_end_ids = text_tokenizer.encode("</answer>")
        else:
            self.answer_end_ids = []
        self.stop_ids = {self.space.text_fill_id, *self.answer_end_ids[:1]}

    # -- loading and saving -------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        quantize: str | None = None,
        offload: bool = False,
    ) -> ParallelPipeline:
        """Load a checkpoint directory or hub id; None is the bundled shapes-world model.

        `quantize` ('int8' or 'int4'): weight-only quantization with torchao, the weights
        streamed in tensor by tensor so that host memory stays near the quantized size
        (`paradiff.quantization`). `offload`: the transformer blocks' weights stay on the CPU
        and each block's move to the (CUDA) device only while it runs (accelerate)."""
        from paradiff.quantization import check_offload, check_quantization, offload_blocks

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if offload:
            check_offload(device, quantize)
        check_quantization(quantize, device, parse_dtype(dtype))
        directory = resolve_checkpoint_dir(path_or_hub_id)
        load_device = "cpu" if offload else device
        model = MaskPredictor.from_pretrained(
            str(directory), dtype=dtype, device=load_device, quantize=quantize
        )
        if quantize is None:  # the streamed loader checks each tensor as it reads it
            check_finite(model, directory)
        if offload:
            offload_blocks(model, model.transformer.blocks, device)
        space = token_space_from_config(model.config)
        text_tokenizer, image_tokenizer = load_tokenizers(directory, space, device)
        return cls(model, text_tokenizer, image_tokenizer, **read_sampler_settings(directory))

    def save_pretrained(
        self,
        directory: str | os.PathLike,
        write_extra_files: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write model, tokenizers and sampler settings atomically (loadable by from_pretrained);
        `write_extra_files(tmp_dir)` adds files (e.g. training state) inside the same commit."""

        def write_extra(tmp: Path) -> None:
            self.text_tokenizer.save(tmp)
            save_image_tokenizer(self.image_tokenizer, tmp)
            write_sampler_settings(tmp, self.sampler_defaults, self.image_size, self.fixed_size)
            if write_extra_files is not None:
                write_extra_files(tmp)

        return save_model(self.model, directory, write_extra=write_extra)

    # -- sampling -----------------------------------------------------------------------------
    def edit(
        self,
        image: str | os.PathLike | Image.Image,
        instruction: str,
        paint_mask: np.ndarray | Image.Image | None = None,
        on_step: Callable[[int, int, torch.Tensor], None] | None = None,
        **overrides: Any,
    ) -> SampleResult:
        """Edit `image` following `instruction`; `paint_mask` (True = repaint) keeps the rest."""
        request = Request(instruction, image, paint_mask, overrides.pop("seed", None))
        return self.run("edit", [request], on_step=on_step, **overrides)[0]

    def generate(
        self,
        prompt: str,
        on_step: Callable[[int, int, torch.Tensor], None] | None = None,
        **overrides: Any,
    ) -> SampleResult:
        """Generate an image (and its reasoning) for `prompt`."""
        request = Request(prompt, seed=overrides.pop("seed", None))
        return self.run("generate", [request], on_step=on_step, **overrides)[0]

    def sampler_config(self, **overrides: Any) -> SamplerConfig:
        """The settings a run with `overrides` (SamplerConfig fields) runs: the pipeline's
        defaults with the overrides applied, then the speed preset (`SamplerConfig.resolved`:
        the fast settings set, by the defaults or the overrides, keep their values)."""
        return self.sampler_defaults.replace(**overrides).resolved()

    def run(
        self,
        task: str,
        requests: Sequence[Request],
        height: int | None = None,
        width: int | None = None,
        on_step: Callable[[int, int, torch.Tensor], None] | None = None,
        on_partial: Callable[[list[PartialAnswer]], None] | None = None,
        **overrides: Any,
    ) -> list[SampleResult]:
        """Sample a batch of requests of one task and one output size in one sampler run.

        `overrides` are SamplerConfig fields; a request without a seed takes the config's seed.
        `on_partial(answers)` gets one PartialAnswer per request after every step (live views).
        """
        config = self.sampler_config(**overrides)
        started = time.perf_counter()
        conditional, unconditional = [], []
        for request in requests:
            cond, uncond = self.build_sequences(task, request, config, height, width)
            conditional.append(cond)
            unconditional.append(uncond)
        guided = config.cfg_image > 0 or config.cfg_text > 0  # twins only for guidance
        batch = self.layout.collate(conditional, unconditional if guided else ())
        seeds = [config.seed if r.seed is None else r.seed for r in requests]
        seeds = [s if s is not None else int(torch.seed() % 2**31) for s in seeds]
        encoded = time.perf_counter()
        sampler = ParallelSampler(self.model, self.space, config)
        if on_partial is not None:
            on_step = self._partial_answers(batch, on_step, on_partial)
        out = sampler(batch, seeds=seeds, on_step=on_step)
        sampled = time.perf_counter()
        device = tokenizer_device(self.image_tokenizer)
        images = to_pil(self.image_tokenizer.decode(out.image_codes.to(device)).float().cpu())
        done = time.perf_counter()
        timings = {
            "prepare_s": encoded - started,
            "sample_s": sampled - encoded,
            "decode_s": done - sampled,
            "steps": len(out.plan),
            "forward_rows": out.forward_rows,
        }
        _, render_frame, reveal_text = self._renderers(batch, out.answer_start)
        return [
            SampleResult(
                task=task,
                instruction=request.instruction,
                text=self.decode_reasoning(out.text_tokens[i]),
                image=images[i],
                trajectory=out.trajectory[:, i],
                settings={**config.to_dict(), "seed": seeds[i], "grid": list(batch.grid)},
                timings=timings,
                render_frame=render_frame,
                reveal_text=reveal_text,
            )
            for i, request in enumerate(requests)
        ]

    def decode_reasoning(self, text_ids: torch.Tensor) -> str:
        """The reasoning text: ids up to the first end marker, special tokens dropped."""
        ids = [int(t) for t in text_ids if int(t) < self.text_tokenizer.vocab_size]
        for i, token in enumerate(ids):
            if token in self.stop_ids:
                ids = ids[:i]
                break
        return self.text_tokenizer.decode(ids, skip_special_tokens=True).strip()

    def build_sequences(
        self,
        task: str,
        request: Request,
        config: SamplerConfig | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> tuple[Sequence1D, Sequence1D]:
        """The conditional sequence of one request and its unconditional twin (CFG's rows),
        answers masked; `config` (default: the pipeline's) gives the text length."""
        config = config or self.sampler_defaults
        if not request.instruction or not request.instruction.strip():
            raise PipelineInputError("the instruction is empty")
        down = self.image_tokenizer.downsample
        size = (width, height) if width or height else None
        if size is not None and self.fixed_size and size != self.image_size:
            w, h = self.image_size
            raise PipelineInputError(f"this model draws {w}x{h} images only (its fixed size)")
        if size is not None and not (width and height):
            raise PipelineInputError("give both the height and the width, or neither")
        input_codes = output_codes = None
        if task == "edit":
            if request.image is None:
                raise PipelineInputError("editing needs an input image")
            if size is None and self.fixed_size:
                size = self.image_size
            image = load_image(request.image)  # read once: its size places the paint mask
            input_codes, pixel_size = encode_image(self.image_tokenizer, image, size)
            grid = tuple(input_codes.shape)
            if request.paint_mask is not None:
                mask = fit_paint_mask(request.paint_mask, image.size, pixel_size)
                keep = ~paint_grid(mask, pixel_size, down)
                output_codes = torch.where(keep, input_codes, torch.full_like(input_codes, -1))
        elif task == "generate":
            w, h = size or self.image_size
            check_size(w, h, down)
            grid = (h // down, w // down)
        else:
            raise LayoutError(f"unknown task {task!r}")
        self._check_bounds(grid, config)
        prompt_ids = self.layout.prompt_ids
        cond = self.layout.build(
            prompt_ids(task, request.instruction.strip(), self.text_tokenizer),
            grid,
            config.text_gen_length,
            input_codes=input_codes,
            answer_end_ids=self.answer_end_ids,
            output_codes=output_codes,
        )
        uncond = self.layout.build(
            prompt_ids(task, None, self.text_tokenizer),
            grid,
            config.text_gen_length,
            answer_end_ids=self.answer_end_ids,
            output_codes=output_codes,
        )
        limit = self.model.config.max_sequence_length
        if len(cond.ids) > limit:
            raise PipelineInputError(
                f"the sequence has {len(cond.ids)} tokens, more than the model's maximum {limit} "
                "(shorten the instruction, the text length or the image)"
            )
        return cond, uncond

    def check_settings(self, task: str, config: SamplerConfig, size: tuple[int, int] | None):
        """Refuse settings no request of `task` at `size` (width, height; None: the model's)
        can run, before any is sampled: the text steps against the tokens to reveal, and where
        the image's token grid is known without the input image (generation, or a fixed-size
        model) the image steps and the sequence length too (PipelineInputError)."""
        if task == "edit" and not self.fixed_size:
            self._check_text_bounds(config)  # the grid comes from the input image
            return
        w, h = size or self.image_size
        down = self.image_tokenizer.downsample
        self._check_bounds((h // down, w // down), config)

    # -- helpers ------------------------------------------------------------------------------
    def _check_bounds(self, grid: tuple[int, int], config: SamplerConfig) -> None:
        """Refuse, before anything is allocated, an answer the model cannot hold (image tokens
        plus text tokens beyond its sequence length) or more steps than tokens to reveal."""
        tokens, limit = grid[0] * grid[1], self.model.config.max_sequence_length
        if tokens + config.text_gen_length > limit:
            raise PipelineInputError(
                f"a {grid[1]}x{grid[0]} token image and {config.text_gen_length} text tokens do "
                f"not fit the model's maximum sequence length {limit}"
            )
        if config.image_steps > tokens:  # steps that reveal nothing
            raise PipelineInputError(
                f"image_steps {config.image_steps} exceeds the {tokens} image tokens to reveal"
            )
        self._check_text_bounds(config)

    @staticmethod
    def _check_text_bounds(config: SamplerConfig) -> None:
        if config.text_steps > config.text_gen_length:
            raise PipelineInputError(
                f"text_steps {config.text_steps} exceeds the {config.text_gen_length} text "
                "tokens to reveal (text_gen_length)"
            )

    def _partial_answers(self, batch, on_step, on_partial) -> Callable:
        """An on_step callback that also hands `on_partial` a PartialAnswer per request."""
        render_image, _, reveal_text = self._renderers(batch, 0)  # whole rows, as on_step sees

        def step_callback(step: int, n_steps: int, ids: torch.Tensor) -> None:
            if on_step is not None:
                on_step(step, n_steps, ids)
            rows = ids.detach().cpu().clone()  # the sampler keeps writing into `ids`
            on_partial([PartialAnswer(step, n_steps, r, render_image, reveal_text) for r in rows])

        return step_callback

    def _renderers(self, batch, start: int):
        """(partial image, frame, partial text) renderers of states that begin at column `start`
        (the answer part of a trajectory, or 0 for whole rows)."""
        space = self.space
        image_at = batch.output_image.cpu() - start
        text_at = batch.text.cpu() - start
        h, w = batch.grid

        vocab = self.text_tokenizer.vocab_size

        def decode(ids: list[int]) -> str:
            return self.text_tokenizer.decode(ids, skip_special_tokens=True)

        def reveal_text(state: torch.Tensor) -> str:
            ids = [t for t in state[text_at].tolist() if t < vocab or t == space.mask_id]
            return partial_text(ids, space.mask_id, decode, self.stop_ids)

        def render_image(state: torch.Tensor) -> Image.Image:
            tokens = state[image_at].long().view(1, h, w)
            return to_pil(decode_partial_image(self.image_tokenizer, space, tokens))[0]

        def render_frame(state: torch.Tensor) -> Image.Image:
            return side_by_side(render_image(state), reveal_text(state))

        return render_image, render_frame, reveal_text


def check_finite(model: MaskPredictor, directory: Path) -> None:
    """Refuse weights holding NaN or inf: one sum per tensor (a NaN or inf anywhere makes it
    non-finite), instead of sampling garbage."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor.sum(dtype=torch.float32)):
            if not torch.isfinite(tensor).all():  # not a sum that overflowed
                raise ValueError(f"{directory}: weight {name} holds NaN or inf values")


def check_paint_mask_size(mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """A paint mask is the input image's size, (W, H) both (PipelineInputError)."""
    if tuple(mask_size) != tuple(image_size):
        (w, h), (W, H) = mask_size, image_size
        raise PipelineInputError(f"paint mask is {w}x{h} but the input image is {W}x{H}")


def fit_paint_mask(paint_mask, image_size: tuple[int, int], pixel_size: tuple[int, int]):
    """A paint mask (PIL or array, True/non-zero = repaint) the size of the input image
    `image_size` (W, H), brought to the size (H, W) the image was encoded at the way the image
    was (scaled to cover, centre cropped; a pixel touched by the mask stays repainted)."""
    if not isinstance(paint_mask, Image.Image):
        paint_mask = Image.fromarray(np.asarray(paint_mask, dtype=bool).astype(np.uint8) * 255)
    mask = paint_mask.convert("L")
    check_paint_mask_size(mask.size, image_size)
    if mask.size != (pixel_size[1], pixel_size[0]):
        mask = resize_center_crop(mask, pixel_size[1], pixel_size[0])
    return np.asarray(mask) > 0


def paint_grid(paint_mask, pixel_size: tuple[int, int], patch: int) -> torch.Tensor:
    """Pixel mask (True/non-zero = repaint) -> token grid (h, w): a token is repainted when any
    pixel of its patch is."""
    if isinstance(paint_mask, Image.Image):
        paint_mask = np.asarray(paint_mask.convert("L"))
    mask = torch.from_numpy(np.array(paint_mask, dtype=bool))  # a copy: inputs may be read-only
    if tuple(mask.shape) != tuple(pixel_size):
        raise PipelineInputError(
            f"paint mask is {tuple(mask.shape)} but the image is {tuple(pixel_size)} (H, W)"
        )
    H, W = pixel_size
    return mask.view(H // patch, patch, W // patch, patch).any(dim=3).any(dim=1)


def decode_partial_image(
    tokenizer: ImageTokenizer, space: TokenSpace, tokens: torch.Tensor
) -> torch.Tensor:
    """Partly revealed output images (B, h, w) of token ids -> pixels (B, 3, H, W) on the CPU,
    the patches of still-masked tokens grey."""
    masked = tokens == space.mask_id
    codes = torch.where(masked, 0, tokens - space.image_offset)
    pixels = tokenizer.decode(codes.to(tokenizer_device(tokenizer))).float().cpu()
    return grey_out(pixels, masked.cpu(), tokenizer.downsample)
