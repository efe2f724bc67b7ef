"""`paradiff app`: the live demo in the browser (gradio; `pip install 'paradiff[app]'`).

Two tabs, Edit and Generate, share one output panel. While the sampler runs in a worker thread
its partial answers (`ParallelPipeline.run(on_partial=...)`) go through a queue to the event's
generator, which streams the partial image (masked tokens grey) and the partially revealed
reasoning every few steps; the last update carries the final image, the reasoning, the
trajectory GIF and the settings and timings. Bad input is answered with a message in the page.
The server makes no outside calls: analytics are off and every asset is served locally.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import math
import queue
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from paradiff.checkpoint import bundled_model_dir
from paradiff.command_support import one_line
from paradiff.demo import load_demo_pipeline
from paradiff.files import MAX_IMAGE_SIDE
from paradiff.pipeline import ParallelPipeline, PartialAnswer, Request
from paradiff.sampling import SamplerConfig
from paradiff.sampling.config import OPTIONAL_SETTINGS, SAMPLER_FLAGS, SETTING_CHOICES
from paradiff.shapes.render import render_scene
from paradiff.shapes.tasks import make_sample
from paradiff.trajectory import save_gif

# (shapes-world category, seed) of the clickable examples of each tab
EDIT_EXAMPLES = (("recolour", 3), ("add", 1), ("remove", 2), ("move", 4))
GENERATE_EXAMPLES = (("counting", 7), ("spatial", 1), ("negation", 2))
SETTING_FIELDS = [(field, kind, text) for field, kind, text in SAMPLER_FLAGS.values()]
MAX_STEPS = 1000  # per modality: longer runs would hold a shared server for minutes
MAX_BEST_OF = 8  # candidates per request, for the same reason
LIVE_UPDATES = 12  # partial results streamed per run (at most)
QUEUE_SIZE = 32  # waiting requests beyond the concurrency limit
MAX_UPLOAD = "8mb"
CSS = (  # small shapes-world images drawn large and crisp
    "#output-image img, .pixelated img "
    "{ image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"
)
Outputs = tuple[str | None, str, str, str | None, dict[str, Any] | None]  # image as a file


def image_upload(**options: Any) -> gr.Image:
    """An image input whose upload is decoded into memory before the handler runs; an
    unreadable file gets a message. (A wrapper, not a subclass: gradio writes a .pyi file
    beside the module of every component subclass.)"""
    component = gr.Image(type="pil", image_mode=None, format="png", **options)
    decode = component.preprocess

    def preprocess(payload):
        name = getattr(payload, "orig_name", None) or "the upload"
        try:
            image = decode(payload)
            if image is None:
                return None
            if max(image.width, image.height) > MAX_IMAGE_SIDE:
                raise refuse(f"{name} is {image.width}x{image.height} pixels, too large")
            image.load()  # a damaged file fails here, not in the sampler
        except gr.Error:  # a ValueError too
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise refuse(f"cannot read {name} as an image ({type(err).__name__})") from None
        return image

    component.preprocess = preprocess
    return component


def refuse(message: str) -> gr.Error:
    """The page's message about bad input (not logged as a server error)."""
    return gr.Error(message, print_exception=False)


class SamplerCancelled(Exception):
    """Raised inside the sampler when the page that asked for the run went away."""


def describe_model(model: str | None) -> str:
    """How the page names the model it runs."""
    if model is not None:
        return f"`{model}`"
    try:
        bundled_model_dir()
    except FileNotFoundError:
        return "an untrained random shapes model (the bundled model is not installed yet)"
    return "the bundled shapes-world model"


def shapes_examples(task: str) -> list[list[Any]]:
    """Example rows of a tab: [input image, instruction] for Edit, [prompt] for Generate."""
    if task == "edit":
        samples = [make_sample(category, seed) for category, seed in EDIT_EXAMPLES]
        return [[render_scene(s.scene_in), s.instruction] for s in samples]
    return [[make_sample(category, seed).instruction] for category, seed in GENERATE_EXAMPLES]


class DemoApp:
    """The app's handlers (plain generators, testable without a browser) and its page."""

    def __init__(self, pipe: ParallelPipeline, model_description: str = "the loaded model") -> None:
        self.pipe = pipe
        self.model_description = model_description

    # -- handlers -----------------------------------------------------------------------------
    def edit(
        self,
        image: Image.Image | None,
        instruction: str,
        *settings: Any,
        progress=gr.Progress(),  # noqa: B008 (gradio finds its tracker by this default)
    ) -> Iterator[Outputs]:
        """Stream an edit of `image`; `settings` are the advanced controls' values."""
        if image is None:
            raise refuse("Edit needs an input image: upload one or click an example.")
        yield from self._stream("edit", Request(instruction, image), settings, progress)

    def generate(
        self,
        prompt: str,
        *settings: Any,
        progress=gr.Progress(),  # noqa: B008
    ) -> Iterator[Outputs]:
        """Stream a generation for `prompt`; `settings` are the advanced controls' values."""
        yield from self._stream("generate", Request(prompt), settings, progress)

    def sampler_overrides(self, values: Sequence[Any]) -> dict[str, Any]:
        """The advanced controls' values as SamplerConfig fields, checked (gr.Error if not)."""
        if len(values) != len(SETTING_FIELDS):
            raise refuse(f"expected {len(SETTING_FIELDS)} settings, got {len(values)}")
        overrides = {}
        for (field, kind, _), value in zip(SETTING_FIELDS, values, strict=True):
            if value is None or value == "":
                if field not in OPTIONAL_SETTINGS:
                    raise refuse(f"the setting {field} is empty")
                overrides[field] = None
                continue
            overrides[field] = setting_value(field, kind, value)
        try:
            config = self.pipe.sampler_config(**overrides)
        except ValueError as err:
            raise refuse(f"invalid setting: {one_line(err)}") from None
        self._check_limits(config)
        return overrides

    def _check_limits(self, config: SamplerConfig) -> None:
        for field in ("text_steps", "image_steps"):
            if getattr(config, field) > MAX_STEPS:
                raise refuse(f"{field} is at most {MAX_STEPS} in the app")
        if config.best_of > MAX_BEST_OF:
            raise refuse(f"best_of is at most {MAX_BEST_OF} in the app")
        longest = self.pipe.model.config.max_sequence_length
        if config.text_gen_length > longest:
            raise refuse(
                f"text_gen_length {config.text_gen_length} exceeds the model's maximum "
                f"sequence length {longest}"
            )

    def _stream(
        self, task: str, request: Request, settings: Sequence[Any], progress
    ) -> Iterator[Outputs]:
        if not (request.instruction or "").strip():
            what = "instruction" if task == "edit" else "prompt"
            raise refuse(f"The {what} is empty: type one or click an example.")
        overrides = self.sampler_overrides(settings)
        events: queue.Queue = queue.Queue()
        cancelled = threading.Event()

        def on_partial(answers: list[PartialAnswer]) -> None:
            if cancelled.is_set():
                raise SamplerCancelled
            events.put(answers[0])

        def work() -> None:
            try:
                events.put(self.pipe.run(task, [request], on_partial=on_partial, **overrides)[0])
            except Exception as err:  # handed to the page's generator below
                events.put(err)

        threading.Thread(target=work, name=f"paradiff-{task}", daemon=True).start()
        shown = 0
        # Images leave as PNG files of this run's own folder: gradio copies a file into its
        # cache under a temporary name and renames it, but it rewrites a PIL image's cached
        # file in place, so two runs showing equal images could serve each other an empty file.
        with tempfile.TemporaryDirectory(prefix="paradiff-app-") as tmp:
            folder = Path(tmp)
            try:
                while True:
                    item = newest(events)
                    if isinstance(item, ValueError | OSError):  # input errors raised by the library
                        raise refuse(one_line(item))
                    if isinstance(item, Exception):
                        raise item
                    if not isinstance(item, PartialAnswer):
                        break
                    done = item.step + 1
                    if done - shown < max(1, item.n_steps // LIVE_UPDATES) and done < item.n_steps:
                        continue
                    shown = done
                    progress((done, item.n_steps), desc="decoding", unit="steps")
                    status = f"Decoding: step {done} / {item.n_steps}"
                    yield (
                        png_file(item.image(), folder / f"step{done}.png"),
                        item.text(),
                        status,
                        None,
                        None,
                    )
                result = item
                gif = folder / "trajectory.gif"  # gradio copies it into its cache on yield
                save_gif(result.frames(), gif)
                image = png_file(result.image, folder / "image.png")
                yield image, result.text, finished_status(result), str(gif), run_info(result)
            finally:
                cancelled.set()  # stops the sampler if the page left before the end

    # -- page ---------------------------------------------------------------------------------
    def build(self, concurrency: int = 2) -> gr.Blocks:
        """The page, its events queued with at most `concurrency` runs at a time."""
        defaults = self.pipe.sampler_defaults.to_dict()
        with gr.Blocks(title="paradiff", analytics_enabled=False) as page:
            gr.Markdown(
                "# paradiff: thinking-aware editing and generation\n"
                "One masked-diffusion model writes its reasoning and its image in parallel; "
                f"watch both emerge. Model: {self.model_description}."
            )
            with gr.Row():
                with gr.Column():
                    with gr.Tabs():
                        with gr.Tab("Edit", id="edit"):
                            image = image_upload(
                                label="Input image",
                                sources=["upload", "clipboard"],
                                height=256,
                                elem_classes="pixelated",
                            )
                            instruction = gr.Textbox(label="Instruction", lines=2)
                            edit_button = gr.Button(
                                "Edit", variant="primary", elem_id="edit-button"
                            )
                            gr.Examples(
                                shapes_examples("edit"), [image, instruction], label="Examples"
                            )
                        with gr.Tab("Generate", id="generate"):
                            prompt = gr.Textbox(label="Prompt", lines=2)
                            generate_button = gr.Button(
                                "Generate", variant="primary", elem_id="generate-button"
                            )
                            gr.Examples(shapes_examples("generate"), [prompt], label="Examples")
                    with gr.Accordion("Advanced settings", open=False):
                        controls = [
                            setting_control(field, kind, text, defaults[field])
                            for field, kind, text in SETTING_FIELDS
                        ]
                with gr.Column():
                    status = gr.Markdown("Pick an example or write an instruction, then run it.")
                    result = gr.Image(
                        label="Image", format="png", height=256, elem_id="output-image"
                    )
                    reasoning = gr.Textbox(label="Reasoning", lines=5, elem_id="reasoning")
                    with gr.Row():
                        trajectory = gr.File(label="Trajectory GIF")
                        info = gr.JSON(label="Settings and timings", max_height=240)
            outputs = [result, reasoning, status, trajectory, info]
            for button, handler, inputs, name in (
                (edit_button, self.edit, [image, instruction], "edit"),
                (generate_button, self.generate, [prompt], "generate"),
            ):
                button.click(
                    handler,
                    inputs + controls,
                    outputs,
                    api_name=name,
                    concurrency_id="sampler",
                    concurrency_limit=concurrency,
                )
        return page.queue(max_size=QUEUE_SIZE)


def setting_control(field: str, kind: type, text: str, value: Any) -> gr.components.Component:
    """The advanced control of one SamplerConfig field, labelled with the field's name."""
    if field in OPTIONAL_SETTINGS:
        text = f"{text}; empty {OPTIONAL_SETTINGS[field]}"
    if field in SETTING_CHOICES:
        return gr.Dropdown(list(SETTING_CHOICES[field]), value=value, label=field, info=text)
    return gr.Number(value=value, label=field, info=text, precision=0 if kind is int else None)


def setting_value(field: str, kind: type, value: Any) -> Any:
    """One control's value as its SamplerConfig type (gr.Error if it is not one)."""
    if kind is str:
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (kind is int and not number.is_integer()):
        what = "whole number" if kind is int else "finite number"
        raise refuse(f"the setting {field} must be a {what}, got {value!r}")
    return kind(number)


def png_file(image: Image.Image, path: Path) -> str:
    """`image` written as a PNG at `path`; the path, as the page's image components take it."""
    image.save(path, format="png")
    return str(path)


def newest(events: queue.Queue) -> Any:
    """Wait for an event, then skip to the newest one queued (the display keeps up)."""
    item = events.get()
    while True:
        try:
            item = events.get_nowait()
        except queue.Empty:
            return item


def finished_status(result) -> str:
    t = result.timings
    return (
        f"Done: {t['steps']} steps in {t['sample_s']:.2f} s (seed {result.settings['seed']}). "
        "Download the trajectory GIF below."
    )


def run_info(result) -> dict[str, Any]:
    return {
        "task": result.task,
        "instruction": result.instruction,
        "settings": result.settings,
        "timings": result.timings,
    }


def serve(page: gr.Blocks, host: str, port: int | None, share: bool = False) -> list[str]:
    """Start the server in the background (`page.close()` stops it); returns its addresses:
    the local one, then the public share link when `share`."""
    _, local_url, share_url = page.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=True,
        max_file_size=MAX_UPLOAD,
        footer_links=["api"],
        css=CSS,
        quiet=True,
    )
    return [local_url] + ([share_url] if share_url else [])


def create_page(
    model: str | None,
    device: str | None,
    concurrency: int = 2,
    quantize: str | None = None,
    offload: bool = False,
) -> gr.Blocks:
    """The page of `model` (None: the bundled model, else a random shapes model), its weights
    quantized (`quantize` int8 / int4) and offloaded as asked."""
    pipe = load_demo_pipeline(model, device, quantize=quantize, offload=offload)
    return DemoApp(pipe, describe_model(model)).build(concurrency)


def launch_app(
    model: str | None,
    device: str | None,
    host: str,
    port: int,
    share: bool,
    concurrency: int,
    quantize: str | None = None,
    offload: bool = False,
) -> int:
    """The body of `paradiff app`: load the model and serve the page until interrupted."""
    page = create_page(model, device, concurrency, quantize=quantize, offload=offload)
    addresses = serve(page, host, port, share)
    print(f"paradiff app: serving {' and '.join(addresses)} (Ctrl-C stops)", flush=True)
    page.block_thread()
    return 0
