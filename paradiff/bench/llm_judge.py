"""The LLM judge of ParaBench: one rubric per metric, asked through an OpenAI-compatible API.

Each metric's rubric (in the style of the VIEScore / KRIS-Bench judges) shows the judge what it
needs — instruction, input image (editing), reasoning text, output image — and asks for a short
reasoning followed by a JSON object `{"score": s}` with s an integer 0-10, reported as 10 s
(0-100). Requests go to `POST {url}/v1/chat/completions` with images as base64 PNG data URLs,
through urllib only. 429, 5xx, timeouts, refused connections and unreadable answers are retried
with exponential backoff (`backoff * 2^attempt` seconds); every answer that parses is cached on
disk under the SHA-256 of its request, so no request is ever sent twice.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from paradiff.bench.items import METRICS, BenchItem
from paradiff.bench.runner import write_atomic
from paradiff.files import FileInputError, ImageInputError, make_dirs, open_image, read_text
from paradiff.schema import SchemaError, is_number, take

SCALE = 10  # the judge scores 0..SCALE; reports use 0-100
# Defaults: an LLM judge answers a rubric with two images in seconds to a minute; one request
# (its retries and their waits included) gives up after JUDGE_DEADLINE seconds.
JUDGE_TIMEOUT = 60.0
JUDGE_RETRIES = 3
JUDGE_DEADLINE = 300.0
MAX_REPLY_BYTES = 16 << 20  # a judge reply larger than 16 MiB is refused, not read
RETRY_STATUS = {429, 500, 502, 503, 504}

RUBRICS: dict[str, str] = {
    "text_quality": (
        "You judge the TEXT QUALITY of a model's reasoning text, written before it draws or "
        "edits an image. Judge the text alone: is it fluent, grammatical and coherent, free of "
        "repetition, garbage tokens and contradictions, and a clear plan a reader could follow? "
        "10: flawless, clear prose. 5: understandable but with clear flaws (repeats, broken "
        "sentences). 0: empty, garbled or unreadable."
    ),
    "text_alignment": (
        "You judge the TEXT ALIGNMENT of a model's reasoning text with the user's request. The "
        "reasoning should work out what the request asks for (for an edit: what changes in the "
        "input image and what stays) and plan exactly that. Judge whether it identifies every "
        "requested element and adds nothing that contradicts the request. 10: captures the "
        "request completely and correctly. 5: partly right, or with a wrong detail. 0: unrelated "
        "or contrary to the request."
    ),
    "image_quality": (
        "You judge the IMAGE QUALITY of a generated image, regardless of any request: is it "
        "sharp, natural and well composed, free of artifacts, distortions, broken objects, noise "
        "and blur? 10: clean and natural. 5: recognisable content with clear artifacts. 0: noise "
        "or unrecognisable."
    ),
    "image_alignment": (
        "You judge the IMAGE ALIGNMENT of an output image with the user's request. For an edit, "
        "compare the input and output images: is the requested change made, completely and "
        "correctly? For a generation, does the image show everything the prompt asks for "
        "(objects, counts, attributes, relations, implied knowledge)? 10: the request is fully "
        "met. 5: partly met. 0: not met at all (an unchanged input scores 0)."
    ),
    "image_consistency": (
        "You judge the IMAGE CONSISTENCY of an edit: compare the input and output images and "
        "check that everything the instruction does not ask to change is preserved (identity, "
        "layout, background, colours, style). Ignore whether the requested change itself was "
        "made. 10: everything else is untouched. 5: noticeable unrequested changes. 0: the image "
        "is replaced by something unrelated."
    ),
    "output_alignment": (
        "You judge the OUTPUT ALIGNMENT of a model's two outputs: its reasoning text and its "
        "image. Does the image show what the reasoning says it will (objects, attributes, "
        "positions, changes), and does the reasoning describe the image that was produced? "
        "Judge only their agreement with each other, not with the request. 10: they agree in "
        "every detail. 5: they agree in part. 0: they describe different things."
    ),
}
ANSWER_FORMAT = (
    "First explain your judgement in a few sentences. Then, on the last line, give only a JSON "
    'object of the form {"score": S}, where S is an integer from 0 to 10.'
)
# What each metric shows the judge, besides the instruction.
SHOWS: dict[str, tuple[str, ...]] = {
    "text_quality": ("text",),
    "text_alignment": ("input", "text"),
    "image_quality": ("output",),
    "image_alignment": ("input", "output"),
    "image_consistency": ("input", "output"),
    "output_alignment": ("text", "output"),
}


class JudgeError(RuntimeError):
    """The judge could not give a score (after the retries, or refused the request)."""


class MalformedAnswer(ValueError):
    """A judge answer without a readable score."""


def metrics_of(task: str) -> tuple[str, ...]:
    """The metrics judged for a task: image consistency is for editing only."""
    return tuple(m for m in METRICS if task == "edit" or m != "image_consistency")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    """A base64 PNG data URL of PNG file bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def build_messages(
    metric: str, task: str, instruction: str, text: str, output: bytes, input_png: bytes | None
) -> list[dict[str, Any]]:
    """The chat messages asking for one metric: the rubric, then the materials it shows (the
    images as PNG file bytes; the input only for editing)."""
    kind = "editing instruction" if task == "edit" else "generation prompt"
    content: list[dict[str, Any]] = [{"type": "text", "text": f"The {kind}: {instruction}"}]
    shows = SHOWS[metric]
    if "input" in shows and task == "edit":
        content += [
            {"type": "text", "text": "The input image:"},
            {"type": "image_url", "image_url": {"url": data_url(input_png)}},
        ]
    if "text" in shows:
        content.append(
            {"type": "text", "text": f"The model's reasoning text:\n{text or '(empty)'}"}
        )
    if "output" in shows:
        content += [
            {"type": "text", "text": "The model's output image:"},
            {"type": "image_url", "image_url": {"url": data_url(output)}},
        ]
    content.append({"type": "text", "text": ANSWER_FORMAT})
    system = f"{RUBRICS[metric]}\nMetric: {metric}"
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def parse_score(answer: str) -> float:
    """The score (0-100) of an answer: the whole answer as JSON, else its last JSON object with
    a "score", else a bare `"score": S`; S must be a number in 0..10."""
    candidates = [answer.strip(), *reversed(re.findall(r"\{[^{}]*\}", answer))]
    value = None
    for candidate in candidates:
        try:
            parsed = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and "score" in parsed:
            value = parsed["score"]
            break
    if value is None:
        match = re.findall(r'"?score"?\s*[:=]\s*(-?\d+(?:\.\d+)?)', answer, flags=re.IGNORECASE)
        if not match:
            raise MalformedAnswer("no score in the answer")
        value = float(match[-1])
    if not is_number(value):  # JSON true is no score of 1, "7" no score of 7
        raise MalformedAnswer(f"score {value!r} is not a number")
    score = float(value)
    if not 0 <= score <= SCALE:
        raise MalformedAnswer(f"score {score:g} is outside 0..{SCALE}")
    return 100.0 * score / SCALE


@dataclass
class JudgeClient:
    """An OpenAI-compatible chat endpoint scoring answers, with retries and a disk cache.

    `url` is the server root (`…/v1` is accepted too). Each attempt waits at most `timeout`
    seconds and all attempts of one request (backoff included) at most `deadline`; `on_retry`
    hears why an attempt is retried (a progress line); `sleep` is how backoff waits (tests)."""

    url: str
    model: str
    api_key: str | None = None
    cache_dir: Path | None = None
    timeout: float = JUDGE_TIMEOUT
    retries: int = JUDGE_RETRIES
    backoff: float = 2.0
    deadline: float = JUDGE_DEADLINE
    on_retry: Callable[[str], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    max_reply_bytes: int = MAX_REPLY_BYTES

    @property
    def endpoint(self) -> str:
        root = self.url.rstrip("/")
        return (root if root.endswith("/v1") else root + "/v1") + "/chat/completions"

    def check_reachable(self) -> None:
        """Fail fast (no request sent) when nothing listens at the judge's host and port."""
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JudgeError(f"judge URL {self.url!r} is not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=min(self.timeout, 10)).close()
        except OSError as err:
            raise JudgeError(f"judge at {self.url} is unreachable: {err}") from None

    def score(self, messages: list[dict[str, Any]]) -> tuple[float, str]:
        """(score 0-100, the judge's answer) for one request, from the cache when asked before."""
        body = {"model": self.model, "messages": messages, "temperature": 0}
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()
        cached = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if cached is not None and cached.is_file():
            found = self._cached(cached)
            if found is not None:
                return found
        error, attempts, made = "", self.retries + 1, 0
        give_up = self.clock() + self.deadline
        for attempt in range(attempts):
            if attempt:
                wait = self.backoff * 2 ** (attempt - 1)
                if self.clock() + wait >= give_up:
                    break
                if self.on_retry is not None:
                    self.on_retry(f"attempt {attempt + 1} of {attempts} in {wait:g} s ({error})")
                self.sleep(wait)
            left = give_up - self.clock()
            if left <= 0:
                break
            made += 1
            try:
                answer = self._post(body, min(self.timeout, left))
                score = parse_score(answer)
            except (MalformedAnswer, OSError, http.client.HTTPException) as err:
                # OSError covers timeouts, refused connections and HTTP error statuses
                if isinstance(err, urllib.error.HTTPError) and err.code not in RETRY_STATUS:
                    raise JudgeError(
                        f"judge refused the request: HTTP {err.code} {err.reason}"
                    ) from None
                error = str(getattr(err, "reason", None) or err) or type(err).__name__
                continue
            if cached is not None:
                make_dirs(cached.parent.parent, cached.parent.name)  # never through a link
                write_atomic(cached, json.dumps({"score": score, "answer": answer}) + "\n")
            return score, answer
        raise JudgeError(
            f"judge failed {made} times ({attempts} allowed, {self.deadline:g} s per request), "
            f"last: {error}"
        )

    @staticmethod
    def _cached(path: Path) -> tuple[float, str] | None:
        """A cached (score, answer), or None when the file is not one (asked again)."""
        try:
            row = json.loads(read_text(path, inside=path.parent, limit=1 << 22))
            score = take(row, "score", "number", str(path))
            answer = take(row, "answer", "str", str(path))
        except (FileInputError, SchemaError, ValueError, AttributeError):
            return None
        return float(score), answer

    def _post(self, body: dict[str, Any], timeout: float) -> str:
        """The answer text of one chat completion (MalformedAnswer when the reply is not one).

        `timeout` bounds the whole exchange — connecting, sending, every byte of the reply —
        however slowly the server sends (a watchdog closes the connection when it runs out);
        a reply beyond `max_reply_bytes` is refused unread."""
        parts = urlsplit(self.endpoint)
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = kind(parts.hostname, parts.port, timeout=timeout)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request("POST", path, json.dumps(body).encode("utf-8"), headers)
            response = connection.getresponse()
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_reply_bytes:
                raise MalformedAnswer(f"the reply has {declared} bytes, over the cap")
            chunks, size = [], 0
            while chunk := response.read1(1 << 16):
                size += len(chunk)
                if size > self.max_reply_bytes:
                    raise MalformedAnswer(f"the reply is over {self.max_reply_bytes} bytes")
                chunks.append(chunk)
                if expired.is_set():
                    break
            if response.status >= 400:
                raise urllib.error.HTTPError(
                    self.endpoint, response.status, response.reason, response.headers, None
                )
        except (OSError, http.client.HTTPException) as err:
            if expired.is_set():
                raise TimeoutError(f"no complete answer within {timeout:g} s") from None
            raise err
        finally:
            watchdog.cancel()
            connection.close()
        if expired.is_set():
            raise TimeoutError(f"no complete answer within {timeout:g} s")
        try:
            return json.loads(b"".join(chunks))["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise MalformedAnswer("the reply is not a chat completion") from None


def judge_scorer(client: JudgeClient) -> Callable[[BenchItem, dict[str, Any], Path], dict]:
    """A run scorer (see `paradiff.bench.runner`) asking `client` for every metric of a task;
    the record gets the metrics (None where not judged) and the judge's answers."""

    def score(item: BenchItem, record: dict[str, Any], image_path: Path) -> dict[str, Any]:
        # the output as a decoded image (a regular file, its header checked), sent re-encoded:
        # never a file's bytes as they are
        try:
            output = png_bytes(open_image(image_path, name=f"the output image of {item.id}"))
        except ImageInputError as err:
            raise JudgeError(str(err)) from None
        input_png = png_bytes(item.image()) if item.task == "edit" else None
        metrics: dict[str, Any] = {metric: None for metric in METRICS}
        answers = {}
        for metric in metrics_of(item.task):
            messages = build_messages(
                metric, item.task, item.instruction, record["text"], output, input_png
            )
            metrics[metric], answers[metric] = client.score(messages)
        return {**metrics, "judge_answers": answers}

    return score
