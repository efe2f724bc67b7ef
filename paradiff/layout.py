"""Token spaces and sequence templates: the only place that knows where things sit in a sequence.

Family A (MMaDA-Parallel-A, aMUSEd VQ) editing sequence, prompt = `<system>SYS</system><user>X</user>`:

    prompt[:-1] <image> (W codes <row-break>) x H </image> prompt[-1:]
    <answer> <image> (W out-codes <row-break>) x H </image> text x N </answer>

Generation drops the input image. Family S (the shapes world) uses the same template with its own
small vocabulary. Family M (MMaDA-Parallel-M, MAGVIT-v2) writes
`<|interleave|> <|soi|> codes <|eoi|> <bos> X <eos>` then `<|soi|> out-codes <|eoi|> <bos> text x N`.
Image code c is token id `image_offset + c` in every family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

EDIT_SYSTEM_PROMPT = (
    "Generate an image applying the following editing instruction based on the original image."
)
GENERATE_SYSTEM_PROMPT = "Generate an image according to the text prompt."
TASKS = ("edit", "generate")
# The A template's markers around the system prompt and the instruction:
# <system>{system}</system><user>{instruction}</user>
PROMPT_MARKERS = ("<system>", "</system><user>", "</user>")


class LayoutError(ValueError):
    """A sequence that cannot be built (sizes, vocabulary, missing special ids)."""


@dataclass(frozen=True)
class TokenSpace:
    """The special ids and the image-code range of one model family.

    Text ids are the ids below `image_offset` other than `mask_id`; image code c is
    `image_offset + c` for c in [0, codebook_size). These facts are this class's alone: the
    sampler, the SFT loss and the ParaRL replay take their candidate sets from `text_vocab`,
    `image_vocab` and `forbid_mask`.
    """

    family: str
    mask_id: int
    image_offset: int
    codebook_size: int
    image_start_id: int
    image_end_id: int
    pad_id: int
    text_fill_id: int  # fills the text answer after the reasoning ends (training targets)
    row_break_id: int | None = None
    answer_start_id: int | None = None
    uncondition_id: int | None = None
    interleave_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    edit_system_prompt: str = EDIT_SYSTEM_PROMPT
    generate_system_prompt: str = GENERATE_SYSTEM_PROMPT

    @property
    def vocab_size(self) -> int:
        """Rows the model's embedding needs at least."""
        return self.image_offset + self.codebook_size

    @property
    def text_vocab(self) -> tuple[int, int]:
        """[start, stop) of the head columns a text position is scored over: [0, image_offset).
        The mask id may lie inside; `forbid_mask` takes it out."""
        return (0, self.image_offset)

    @property
    def image_vocab(self) -> tuple[int, int]:
        """[start, stop) of the head columns an image position is scored over: the codebook."""
        return (self.image_offset, self.image_offset + self.codebook_size)

    def forbid_mask(self, text_logits: torch.Tensor) -> torch.Tensor:
        """Text logits (..., image_offset) over `text_vocab` with the mask id's set to -inf, in
        place: a masked position is never predicted to be the mask."""
        if self.mask_id < self.image_offset:
            text_logits[..., self.mask_id] = float("-inf")
        return text_logits

    @property
    def template(self) -> str:
        """'A' for the `<system>…<answer>` template (families A and S), 'M' for MMaDA's."""
        return "M" if self.family == "M" else "A"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TokenSpace:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise LayoutError(f"unknown token-space key {unknown[0]!r}")
        return cls(**raw)


FAMILY_A = TokenSpace(
    family="A",
    mask_id=126336,
    image_offset=126356,
    codebook_size=8192,
    image_start_id=126349,
    image_end_id=126350,
    pad_id=126339,
    text_fill_id=126081,  # <|endoftext|>
    row_break_id=126084,
    answer_start_id=126354,
    uncondition_id=126351,
)


def family_m(image_offset: int = 126464, codebook_size: int = 8192) -> TokenSpace:
    """MMaDA-Parallel-M: image id = code + len(text tokenizer) (`image_offset`)."""
    return TokenSpace(
        family="M",
        mask_id=126336,
        image_offset=image_offset,
        codebook_size=codebook_size,
        image_start_id=126084,  # <|soi|>
        image_end_id=126085,  # <|eoi|>
        pad_id=126081,
        text_fill_id=126081,
        interleave_id=126095,
        bos_id=126080,
        eos_id=126081,
    )


TOKEN_SPACE_KEY = "paradiff_token_space"


def token_space_from_config(config: Any) -> TokenSpace:
    """The token space a ModelConfig describes: stored explicitly, else by `model_type`.

    A config.json may carry the space under `paradiff_token_space` (family S does); `llada` is
    family A; `mmada` is family M with image offset `llm_vocab_size + num_new_special_tokens`.
    """
    extra = config.extra
    if TOKEN_SPACE_KEY in extra:
        space = TokenSpace.from_dict(extra[TOKEN_SPACE_KEY])
    elif config.model_type == "llada":
        space = FAMILY_A
    elif config.model_type == "mmada":
        offset = int(extra.get("llm_vocab_size", 126464)) + int(
            extra.get("num_new_special_tokens", 0)
        )
        space = family_m(offset, int(extra.get("codebook_size", 8192)))
    else:
        raise LayoutError(f"cannot tell the model family of model_type {config.model_type!r}")
    vocab = config.embedding_size
    if vocab < space.vocab_size:
        raise LayoutError(
            f"model vocabulary {vocab} is smaller than family {space.family} "
            f"needs ({space.vocab_size} = image offset {space.image_offset} + "
            f"{space.codebook_size} codes)"
        )
    ids = {k: v for k, v in space.to_dict().items() if k.endswith("_id") and v is not None}
    outside = [f"{name} {value}" for name, value in ids.items() if not 0 <= value < vocab]
    if outside or space.codebook_size < 1 or space.image_offset < 0:
        what = outside[0] if outside else f"codebook_size {space.codebook_size}"
        raise LayoutError(f"token space {what} does not fit the model vocabulary of {vocab}")
    return space


def image_code_mask(ids: torch.Tensor, space: TokenSpace) -> torch.Tensor:
    """ids (B, L) -> bool (B, L): True at the code (and mask) positions of every `<image> …
    </image>` span; its markers and row-breaks, text and padding are False."""
    start, end = ids == space.image_start_id, ids == space.image_end_id
    inside = (start.long().cumsum(-1) > end.long().cumsum(-1)) & ~start
    if space.row_break_id is not None:
        inside &= ids != space.row_break_id
    return inside


def image_grid_positions(
    ids: torch.Tensor, space: TokenSpace
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, column) of every image token inside an `<image> … </image>` span, from the ids alone.

    ids (B, L) -> row, col (B, L) long and inside (B, L) bool (True at code and mask positions of
    an image span; markers, row-breaks, text and padding are outside). Rows are counted by the
    row-breaks since the span's `<image>`, columns by the tokens since the last row-break, so left
    padding and any prompt length give the same grid positions. Needs a family with row-breaks.
    """
    if space.row_break_id is None:
        raise LayoutError(f"family {space.family} has no row-breaks to count image rows by")
    start = ids == space.image_start_id
    brk = ids == space.row_break_id
    inside = image_code_mask(ids, space)
    index = torch.arange(ids.shape[-1], device=ids.device).expand_as(ids)  # (B, L)
    breaks = brk.long().cumsum(-1)  # row-breaks up to here
    breaks_at_start = torch.where(start, breaks, 0).cummax(-1).values  # ... up to the last <image>
    row_start = torch.where(start | brk, index, -1).cummax(-1).values  # last <image> or row-break
    return breaks - breaks_at_start, index - row_start - 1, inside


@dataclass
class Sequence1D:
    """One built sequence and its spans (1-D position tensors into `ids`).

    `output_image` lists the output-image positions in raster order, row-breaks excluded;
    `text` the reasoning positions; `grid` the output (h, w).
    """

    ids: torch.Tensor  # (L,)
    prompt: torch.Tensor
    input_image: torch.Tensor
    output_image: torch.Tensor  # (h * w,)
    text: torch.Tensor  # (N,)
    grid: tuple[int, int]

    @property
    def answer_start(self) -> int:
        return int(min(self.output_image[0], self.text[0]))


@dataclass
class Batch:
    """Left-padded sequences whose answer parts share positions across rows.

    `output_image` (h*w,) and `text` (N,) index every row; `attention_mask` is 0 on padding.
    The last `n_uncond` rows are the unconditional twins of the first `n_uncond` (classifier-free
    guidance): 0 when the batch carries none, else the number of conditional rows.
    """

    ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    output_image: torch.Tensor  # (h * w,)
    text: torch.Tensor  # (N,)
    grid: tuple[int, int]
    n_uncond: int = 0

    @property
    def n_cond(self) -> int:
        """The conditional rows: the first rows, whose answers are sampled."""
        return self.ids.shape[0] - self.n_uncond

    def with_unconditional(self, n_uncond: int) -> Batch:
        """This batch with its last `n_uncond` rows marked as the twins of the first."""
        rows = self.ids.shape[0]
        if n_uncond not in (0, rows - n_uncond):
            raise LayoutError(f"{n_uncond} unconditional rows in a batch of {rows}")
        return dataclasses.replace(self, n_uncond=n_uncond)

    @property
    def answer_start(self) -> int:
        """The first answer column: the answer (output image and text) runs from here to the end."""
        return int(min(self.output_image[0], self.text[0]))

    def to(self, device: torch.device | str) -> Batch:
        return dataclasses.replace(
            self,
            ids=self.ids.to(device),
            attention_mask=self.attention_mask.to(device),
            output_image=self.output_image.to(device),
            text=self.text.to(device),
        )


class Layout:
    """Builds the sequences of one token space and reports their spans."""

    def __init__(self, space: TokenSpace) -> None:
        self.space = space

    # -- prompts -------------------------------------------------------------------------------
    def system_prompt(self, task: str) -> str:
        if task not in TASKS:
            raise LayoutError(f"unknown task {task!r} (expected one of {TASKS})")
        return (
            self.space.edit_system_prompt if task == "edit" else self.space.generate_system_prompt
        )

    def prompt_text(self, task: str, instruction: str) -> str:
        """The prompt string of the A template; for M the bare instruction."""
        if self.space.template == "M":
            return instruction
        start, middle, end = PROMPT_MARKERS
        return f"{start}{self.system_prompt(task)}{middle}{instruction}{end}"

    def prompt_ids(
        self, task: str, instruction: str | None, tokenizer: Any, system_prompt: str | None = None
    ) -> list[int]:
        """The tokenized prompt of `instruction` (None: the unconditional prompt of CFG's rows)
        with `tokenizer` (a TextTokenizer); `system_prompt` replaces the task's (training records).

        The template's markers become their ids; the instruction and the system prompt are
        encoded as plain text (`encode_plain`), so a typed `</user>`, `<answer>` or `<mask>`
        stays text. Without such strings the ids equal `tokenizer.encode(prompt_text(…))`: the
        tokenizer splits at its added strings before encoding the text between them."""
        if instruction is None:
            return tokenizer.encode(self.prompt_text(task, self.unconditional_instruction()))
        if self.space.template == "M":
            return tokenizer.encode_plain(instruction)
        system = self.system_prompt(task) if system_prompt is None else system_prompt
        start, middle, end = (tokenizer.encode(marker) for marker in PROMPT_MARKERS)
        plain = tokenizer.encode_plain
        return [*start, *plain(system), *middle, *plain(instruction), *end]

    def unconditional_instruction(self) -> str:
        """What replaces the instruction in CFG's unconditional rows (as in training)."""
        return "<uncondition>" if self.space.template == "A" else ""

    # -- sequences -----------------------------------------------------------------------------
    def image_rows(self, codes: torch.Tensor, masked_allowed: bool = False) -> list[int]:
        """Code grid (h, w) -> token ids, row-breaks after each row where the family has them.

        With `masked_allowed`, code -1 stands for a masked position."""
        if codes.dim() != 2:
            raise LayoutError(f"expected a (h, w) code grid, got shape {tuple(codes.shape)}")
        lowest = -1 if masked_allowed else 0
        if codes.numel() and (codes.min() < lowest or codes.max() >= self.space.codebook_size):
            raise LayoutError(f"image codes outside [0, {self.space.codebook_size})")
        codes = codes.long()
        ids = torch.where(codes < 0, self.space.mask_id, codes + self.space.image_offset)
        if self.space.row_break_id is not None:
            breaks = torch.full((ids.shape[0], 1), self.space.row_break_id, dtype=torch.long)
            ids = torch.cat([ids, breaks], dim=1)
        return ids.flatten().tolist()

    def _mask_rows(self, h: int, w: int) -> list[int]:
        if h < 1 or w < 1:
            raise LayoutError(f"output grid must be at least 1x1, got {h}x{w}")
        row = [self.space.mask_id] * w
        if self.space.row_break_id is not None:
            row = row + [self.space.row_break_id]
        return row * h

    def build(
        self,
        prompt_ids: Sequence[int],
        grid: tuple[int, int],
        text_length: int,
        input_codes: torch.Tensor | None = None,
        answer_end_ids: Sequence[int] = (),
        output_codes: torch.Tensor | None = None,
        text_ids: Sequence[int] | None = None,
    ) -> Sequence1D:
        """Build one sequence: prompt (+ input image), masked output image, masked text.

        `prompt_ids` is the tokenized `prompt_text` (for template A it must end with the token
        closing the user turn). With `output_codes` / `text_ids` the answer is filled in instead
        of masked (training targets); `text_ids` must then have exactly `text_length` ids.
        """
        s = self.space
        prompt_ids = list(prompt_ids)
        if not prompt_ids and s.template == "A":
            raise LayoutError("empty prompt")
        if text_length < 1:
            raise LayoutError(f"text length must be at least 1, got {text_length}")
        h, w = grid
        if output_codes is None:
            out_image = self._mask_rows(h, w)
        elif tuple(output_codes.shape) != (h, w):
            raise LayoutError(f"output codes {tuple(output_codes.shape)} do not match grid {grid}")
        else:
            out_image = self.image_rows(output_codes, masked_allowed=True)
        text = [s.mask_id] * text_length if text_ids is None else list(text_ids)
        if len(text) != text_length:
            raise LayoutError(f"text ids have length {len(text)}, expected {text_length}")
        in_image = [] if input_codes is None else self.image_rows(input_codes)

        ids: list[int] = []

        def put(tokens: Sequence[int]) -> torch.Tensor:
            """Append tokens; return their positions."""
            start = len(ids)
            ids.extend(tokens)
            return torch.arange(start, len(ids))

        if s.template == "A":
            prompt = [put(prompt_ids[:-1])]
            if in_image:
                put([s.image_start_id])
                in_positions = put(in_image)
                put([s.image_end_id])
            prompt.append(put(prompt_ids[-1:]))
            put([s.answer_start_id, s.image_start_id])
            out_positions = put(out_image)
            put([s.image_end_id])
        else:
            put([s.interleave_id])
            if in_image:
                put([s.image_start_id])
                in_positions = put(in_image)
                put([s.image_end_id])
            put([s.bos_id])
            prompt = [put(prompt_ids)]
            put([s.eos_id, s.image_start_id])
            out_positions = put(out_image)
            put([s.image_end_id, s.bos_id])
        text_positions = put(text)
        put(answer_end_ids)

        ids_tensor = torch.tensor(ids, dtype=torch.long)

        def codes_only(positions: torch.Tensor) -> torch.Tensor:
            return positions[ids_tensor[positions] != s.row_break_id]

        return Sequence1D(
            ids=ids_tensor,
            prompt=torch.cat(prompt),
            input_image=codes_only(in_positions) if in_image else torch.empty(0, dtype=torch.long),
            output_image=codes_only(out_positions),
            text=text_positions,
            grid=(h, w),
        )

    def collate(
        self, sequences: Sequence[Sequence1D], unconditional: Sequence[Sequence1D] = ()
    ) -> Batch:
        """Left-pad sequences to one length; their answer parts must have the same shape.

        `unconditional`, when given, holds one unconditional twin per sequence (for guidance),
        appended after them and marked in the batch's `n_uncond`."""
        if unconditional:
            batch = self.collate([*sequences, *unconditional])
            return batch.with_unconditional(len(unconditional))
        if not sequences:
            raise LayoutError("cannot collate an empty list of sequences")
        length = max(len(seq.ids) for seq in sequences)
        ids = torch.full((len(sequences), length), self.space.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        first = sequences[0]
        shift0 = length - len(first.ids)
        for row, seq in enumerate(sequences):
            shift = length - len(seq.ids)
            if (
                seq.grid != first.grid
                or len(seq.text) != len(first.text)
                or len(seq.ids) - seq.answer_start != len(first.ids) - first.answer_start
            ):
                raise LayoutError(
                    "sequences in one batch must share the output grid and text length"
                )
            ids[row, shift:] = seq.ids
            mask[row, shift:] = 1
        return Batch(
            ids=ids,
            attention_mask=mask,
            output_image=first.output_image + shift0,
            text=first.text + shift0,
            grid=first.grid,
        )
