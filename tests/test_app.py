"""The demo app: handlers (no browser), 4 simultaneous API clients, and a real headless browser.

The browser test needs Debian's Chromium and the playwright package; it saves its screenshot in
its temporary folder and, when PARADIFF_APP_SCREENSHOT names a file, there too (docs/app.png).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

gr = pytest.importorskip("gradio", reason="the app needs gradio: pip install -e '.[app]'")

from PIL import Image  # noqa: E402

from paradiff.app import (  # noqa: E402
    MAX_BEST_OF,
    MAX_STEPS,
    SETTING_FIELDS,
    DemoApp,
    create_page,
    image_upload,
    serve,
    shapes_examples,
)
from paradiff.cli import build_parser, main  # noqa: E402
from paradiff.demo import load_demo_pipeline  # noqa: E402
from paradiff.sampling.config import SPEED_PRESETS  # noqa: E402
from paradiff.shapes.family import new_shapes_pipeline  # noqa: E402
from paradiff.trajectory import MASK_CHAR  # noqa: E402

FAST_R = SPEED_PRESETS["fast"]["cache_refresh"]

# gradio's queue calls pandas APIs that pandas 3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")
CHROMIUM = Path(os.environ.get("PARADIFF_CHROMIUM", "/usr/bin/chromium"))
PROMPT = "Draw two stars and a red circle."
INSTRUCTION = "Make the blue shape black."
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-shapes")
    pipe = new_shapes_pipeline(seed=0, d_model=32, n_heads=2, n_layers=1, mlp_hidden_size=64)
    return pipe.save_pretrained(directory / "model")


@pytest.fixture(scope="module")
def app(tiny_model_dir) -> DemoApp:
    return DemoApp(load_demo_pipeline(str(tiny_model_dir), "cpu"))


def settings(app: DemoApp, **changes) -> list:
    """The advanced controls' values: the model's defaults with `changes`."""
    values = {**app.pipe.sampler_defaults.to_dict(), **changes}
    return [values[field] for field, _, _ in SETTING_FIELDS]


def input_image() -> Image.Image:
    return shapes_examples("edit")[0][0]


# -- bad input ---------------------------------------------------------------------------------
def test_edit_without_an_image_says_so(app):
    with pytest.raises(gr.Error, match="Edit needs an input image"):
        list(app.edit(None, INSTRUCTION, *settings(app)))


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_instruction_and_prompt_are_refused(app, text):
    with pytest.raises(gr.Error, match="instruction is empty"):
        list(app.edit(input_image(), text, *settings(app)))
    with pytest.raises(gr.Error, match="prompt is empty"):
        list(app.generate(text, *settings(app)))


def test_prompt_over_the_model_length_is_refused(app):
    with pytest.raises(gr.Error, match="more than the model's maximum"):
        list(app.generate("Draw " + "two stars and " * 300 + "a circle.", *settings(app)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"text_steps": 0}, "text_steps must be at least 1"),
        ({"cfg_image": -1.0}, "cfg_image must be a finite non-negative number"),
        ({"remasking": "sideways"}, "remasking must be one of"),
        ({"text_block_length": 5}, "does not divide"),
        ({"image_steps": MAX_STEPS + 1}, f"image_steps is at most {MAX_STEPS}"),
        (
            {"best_of": MAX_BEST_OF + 1, "image_temperature": 1.0},
            f"best_of is at most {MAX_BEST_OF}",
        ),
        ({"best_of": 0}, "best_of must be at least 1"),
        ({"text_gen_length": 16_000, "text_steps": 1000}, "the model's maximum sequence length"),
        ({"text_steps": 2.5}, "text_steps must be a whole number"),
        ({"text_steps": None}, "the setting text_steps is empty"),
        ({"image_temperature": "warm"}, "image_temperature must be a finite number"),
        ({"cfg_text": float("inf")}, "cfg_text must be a finite number"),
        ({"text_threshold": 1.5}, "text_threshold must be in"),
        ({"cache_refresh": -2}, "cache_refresh must be at least 1"),
        ({"cfg_image": None}, "the setting cfg_image is empty"),
    ],
)
def test_out_of_range_settings_are_refused(app, changes, message):
    with pytest.raises(gr.Error, match=message):
        list(app.generate(PROMPT, *settings(app, **changes)))


def test_unreadable_upload_is_refused_and_a_good_one_is_read_into_memory(tmp_path):
    from gradio.data_classes import ImageData

    upload = image_upload(render=False)
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    with pytest.raises(gr.Error, match="cannot read damaged.png as an image"):
        upload.preprocess(ImageData(path=str(damaged), orig_name="damaged.png"))
    good = tmp_path / "good.png"
    input_image().save(good)
    image = upload.preprocess(ImageData(path=str(good), orig_name="good.png"))
    good.unlink()  # the pixels are already in memory
    assert image.tobytes() == input_image().tobytes()
    huge = tmp_path / "huge.png"
    Image.new("RGB", (5000, 4000)).save(huge)
    with pytest.raises(gr.Error, match="huge.png is 5000x4000 pixels, too large"):
        upload.preprocess(ImageData(path=str(huge), orig_name="huge.png"))


# -- streaming -----------------------------------------------------------------------------------
class PausedSteps:
    """The pipeline with a pause after every sampler step, so the stream keeps up with it."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def run(self, *args, on_partial, **options):
        def paused(answers):
            time.sleep(0.02)
            on_partial(answers)

        return self.pipe.run(*args, on_partial=paused, **options)


def read_images(run):
    """The updates of a run with each image file opened while it exists (its files live
    until the generator moves on); the GIF's bytes beside each (None without one)."""
    for image, *rest, gif, info in run:
        if image is not None:
            assert Path(image).parent.name.startswith("paradiff-app-")
            with Image.open(image) as opened:
                image = opened.convert("RGB")
        yield (image, *rest, gif, info), gif and Path(gif).read_bytes()


def test_generate_streams_partial_results_then_the_final_ones(app):
    run = DemoApp(PausedSteps(app.pipe)).generate(PROMPT, *settings(app))
    updates, gifs = zip(*read_images(run), strict=True)
    gif_bytes = gifs[-1]
    *partials, final = updates
    defaults = app.pipe.sampler_defaults
    n_steps = max(defaults.text_steps, defaults.image_steps)  # one parallel timeline
    assert len(partials) >= 6  # about one per n_steps // LIVE_UPDATES steps
    assert all(p[3] is None and p[4] is None for p in partials)
    assert MASK_CHAR in partials[0][1]  # reasoning still partly masked
    steps = [int(p[2].split("step ")[1].split(" /")[0]) for p in partials]
    assert steps == sorted(set(steps)) and steps[-1] <= n_steps
    assert all(isinstance(p[0], Image.Image) for p in partials)

    image, reasoning, status, gif, info = final
    expected = app.pipe.generate(PROMPT)
    assert image.tobytes() == expected.image.tobytes()
    assert reasoning == expected.text and MASK_CHAR not in reasoning
    assert status.startswith("Done:") and gif_bytes[:6] in (b"GIF87a", b"GIF89a")
    assert info["instruction"] == PROMPT and info["timings"]["steps"] == n_steps
    assert not Path(gif).exists()  # the request's scratch folder is gone


def test_edit_streams_to_an_image_of_the_input_size(app):
    run = app.edit(input_image(), INSTRUCTION, *settings(app, seed=None))
    *partials, final = [update for update, _ in read_images(run)]
    assert partials and final[0].size == app.pipe.image_size
    assert final[4]["task"] == "edit" and isinstance(final[4]["settings"]["seed"], int)


@pytest.mark.parametrize(
    "fast, ran",
    [
        ({"cache_refresh": 3, "text_threshold": 0.5}, {}),
        ({"speed": "fast"}, {"cache_refresh": FAST_R, "image_recompute": "active"}),  # left empty
        ({"speed": "fast", "image_recompute": "all"}, {"cache_refresh": FAST_R}),  # set: it runs
        ({"speed": "fast", "cache_refresh": 0}, {"image_recompute": "all"}),
    ],
)
def test_the_fast_settings_reach_the_sampler(app, fast, ran):
    *_, final = list(app.generate(PROMPT, *settings(app, **fast)))
    expected = {**fast, **ran, "speed": "exact"}  # the settings that ran, the preset applied
    assert {k: final[4]["settings"][k] for k in expected} == expected


def test_leaving_the_page_stops_the_sampler(app):
    # the longest run the model holds: every text token its own step, then the image
    long = {"text_gen_length": 320, "text_block_length": 320, "text_steps": 320}
    run = app.generate(PROMPT, *settings(app, mode="sequential", image_steps=64, **long))
    next(run)
    run.close()
    deadline = time.monotonic() + 5
    while any(t.name == "paradiff-generate" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the sampler kept running"
        time.sleep(0.05)


def test_examples_come_from_the_shapes_world():
    edits, prompts = shapes_examples("edit"), shapes_examples("generate")
    assert all(isinstance(image, Image.Image) and text for image, text in edits)
    assert all(len(row) == 1 and row[0].strip() for row in prompts)


# -- command line --------------------------------------------------------------------------------
def test_app_command_defaults_and_bad_port(capsys):
    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.share, args.model) == ("127.0.0.1", 7860, "off", None)
    assert main(["app", "--port", "0"]) == 2
    assert "--port must be in 1..65535" in capsys.readouterr().err


# -- served ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def outside_connections(monkeypatch) -> list:
    """Connections this process opens to hosts other than this machine (none expected)."""
    opened, connect = [], socket.socket.connect

    def watched(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            opened.append(address)
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", watched)
    return opened


@contextmanager
def served(page: gr.Blocks):
    (url,) = serve(page, "127.0.0.1", free_port())
    try:
        yield url
    finally:
        page.close()


def test_four_simultaneous_requests_all_finish(app, tmp_path, outside_connections):
    from gradio_client import Client, handle_file

    example = tmp_path / "example.png"
    input_image().save(example)
    requests = [
        ("/generate", [PROMPT], 1),
        ("/generate", ["Draw three squares."], 2),
        ("/edit", [handle_file(str(example)), INSTRUCTION], 3),
        ("/edit", [handle_file(str(example)), "Remove the blue shape."], 4),
    ]

    def ask(url, request):
        endpoint, inputs, seed = request
        client = Client(url, verbose=False, download_files=str(tmp_path / f"seed{seed}"))
        return client.predict(*inputs, *settings(app, seed=seed), api_name=endpoint)

    with served(app.build(concurrency=2)) as url, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda r: ask(url, r), requests))
    for (endpoint, inputs, seed), (image, reasoning, status, gif, info) in zip(
        requests, answers, strict=True
    ):
        assert Image.open(image).size == app.pipe.image_size
        assert reasoning.strip() and status.startswith("Done:")
        assert Path(gif).read_bytes()[:3] == b"GIF"
        assert info["instruction"] == inputs[-1] and info["settings"]["seed"] == seed
        assert info["task"] == endpoint.strip("/")
        if endpoint == "/generate":
            alone = app.pipe.generate(inputs[0], seed=seed)
        else:
            alone = app.pipe.edit(input_image(), inputs[1], seed=seed)
        assert reasoning == alone.text  # no cross-talk between simultaneous runs
        assert Image.open(image).convert("RGB").tobytes() == alone.image.tobytes()
    assert not outside_connections


# -- a real browser ----------------------------------------------------------------------------
def browser_or_skip():
    """Playwright's sync API, or skip saying how to enable the test."""
    how = "apt-get install chromium; pip install playwright (or pip install -e '.[browser]')"
    # CI (.ci/run) requires the browser: there a missing one fails instead of skipping
    missing = pytest.fail if os.environ.get("PARADIFF_REQUIRE_BROWSER") else pytest.skip
    if not CHROMIUM.is_file():
        missing(f"no Chromium at {CHROMIUM}: {how}")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        missing(f"no playwright package: {how}")
    return sync_playwright, expect


@pytest.mark.browser
def test_browser_runs_an_example_and_shows_errors(tmp_path, outside_connections):
    sync_playwright, expect = browser_or_skip()
    page_app = create_page(None, "cpu")  # what `paradiff app` serves
    outside = []
    with served(page_app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: outside.append(r.url) if not is_local(r.url) else None)
        page.set_default_timeout(30_000)
        page.goto(url)

        # bad input: Edit with an instruction but no image
        page.get_by_label("Instruction").fill(INSTRUCTION)
        page.locator("#edit-button").click()
        page.get_by_text("Edit needs an input image").first.wait_for()
        damaged = tmp_path / "damaged.png"
        damaged.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
        page.locator("input[type=file]").first.set_input_files(str(damaged))
        page.locator("#edit-button").click()
        page.get_by_text("cannot read damaged.png as an image").first.wait_for()

        page.reload()
        page.get_by_text(INSTRUCTION).first.click()  # the first Edit example
        expect(page.get_by_label("Instruction")).to_have_value(INSTRUCTION)
        page.locator("#edit-button").click()
        page.get_by_text("Done:").wait_for()
        shown = page.locator("#output-image img")
        shown.wait_for()
        assert shown.evaluate("img => img.complete && img.naturalWidth") > 0
        reasoning = page.locator("#reasoning textarea").input_value()
        assert reasoning.strip() and MASK_CHAR not in reasoning
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        browser.close()
    assert not outside, f"the page asked outside hosts: {outside[:3]}"
    assert not outside_connections, f"the server called outside: {outside_connections[:3]}"
    if os.environ.get("PARADIFF_APP_SCREENSHOT"):
        shutil.copyfile(tmp_path / "app.png", os.environ["PARADIFF_APP_SCREENSHOT"])


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob") or parsed.hostname in LOOPBACK
