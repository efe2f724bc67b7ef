"""The ParaBench LLM judge client against a scripted server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import socket

import pytest
from PIL import Image

from paradiff.bench.items import METRICS, BenchItem
from paradiff.bench.llm_judge import (
    JudgeClient,
    JudgeError,
    MalformedAnswer,
    build_messages,
    judge_scorer,
    parse_score,
    png_bytes,
)
from tests.bench_judge_server import JudgeServer

PNG = png_bytes(Image.new("RGB", (8, 8), (200, 30, 30)))


def client(server: JudgeServer, tmp_path=None, **options) -> tuple[JudgeClient, list[float]]:
    waits: list[float] = []
    options = {"backoff": 0.5, "timeout": 5.0, "sleep": waits.append, **options}
    cache = None if tmp_path is None else tmp_path / "cache"
    return JudgeClient(server.url, "judge-x", cache_dir=cache, **options), waits


def messages(metric: str = "image_quality", task: str = "generation"):
    input_png = PNG if task == "edit" else None
    return build_messages(metric, task, "draw a red square", "A red square.", PNG, input_png)


def images_of(request_messages) -> list[bytes]:
    urls = [
        part["image_url"]["url"]
        for part in request_messages[1]["content"]
        if part["type"] == "image_url"
    ]
    assert all(url.startswith("data:image/png;base64,") for url in urls)
    return [base64.b64decode(url.split(",", 1)[1]) for url in urls]


@pytest.mark.parametrize(
    "answer, score",
    [
        ('{"score": 8}', 80.0),
        ('The square is red and sharp.\n{"score": 9}', 90.0),
        ('Reasoning mentions {braces} first.\nFinal: {"reason": "ok", "score": 6.5}', 65.0),
        ("I would give it score: 3 out of 10.", 30.0),
        ('{"score": 0}', 0.0),
    ],
)
def test_parse_score(answer, score):
    assert parse_score(answer) == score


@pytest.mark.parametrize(
    "answer", ["Looks great!", '{"score": 11}', '{"score": "high"}', '{"score": -1}', ""]
)
def test_parse_score_refuses_malformed_answers(answer):
    with pytest.raises(MalformedAnswer):
        parse_score(answer)


def test_messages_show_each_metric_what_it_needs():
    assert images_of(messages("text_quality", "edit")) == []
    assert images_of(messages("image_quality", "edit")) == [PNG]
    assert images_of(messages("image_consistency", "edit")) == [PNG, PNG]
    assert images_of(messages("image_alignment", "generation")) == [PNG]
    assert images_of(messages("text_alignment", "generation")) == []
    texts = " ".join(p.get("text", "") for p in messages("output_alignment")[1]["content"])
    assert "A red square." in texts and "draw a red square" in texts
    assert "Metric: output_alignment" in messages("output_alignment")[0]["content"]


def test_good_answer_scores_with_key_and_endpoint():
    with JudgeServer(scores={"image_quality": 8}) as server:
        judge, waits = client(server, api_key="sk-test")
        score, answer = judge.score(messages())
    assert score == 80.0 and answer.endswith('{"score": 8}')
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["model"] == "judge-x"
    assert request["auth"] == "Bearer sk-test" and waits == []
    image = Image.open(io.BytesIO(images_of(request["messages"])[0]))
    assert image.size == (8, 8)


@pytest.mark.parametrize(
    "script", [["malformed", "not_json"], ["429", "500"], ["429", "malformed"], ["slow"]]
)
def test_retries_with_exponential_backoff(script):
    with JudgeServer(script=script, slow_s=3.0) as server:
        judge, waits = client(server, timeout=1.0)  # well below slow_s, even on a busy machine
        score, _ = judge.score(messages())
    assert score == 70.0
    assert len(server.requests) == len(script) + 1
    assert waits == [0.5 * 2**i for i in range(len(script))]


def test_gives_up_after_the_retries_and_on_refusals():
    with JudgeServer(script=["503"] * 3) as server:
        judge, waits = client(server, retries=2)
        with pytest.raises(JudgeError, match="failed 3 times"):
            judge.score(messages())
    assert len(server.requests) == 3 and waits == [0.5, 1.0]
    with JudgeServer(script=["400"]) as server:
        judge, waits = client(server)
        with pytest.raises(JudgeError, match="HTTP 400"):
            judge.score(messages())
    assert len(server.requests) == 1 and waits == []


def test_answers_are_cached_on_disk(tmp_path):
    with JudgeServer(script=["malformed"]) as server:
        judge, _ = client(server, tmp_path)
        first = judge.score(messages())
        assert judge.score(messages()) == first
        again, _ = client(server, tmp_path)  # a new process, the same run folder
        assert again.score(messages()) == first
        assert len(server.requests) == 2  # the malformed answer and the good one
        judge.score(messages("text_quality"))
    assert len(server.requests) == 3
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_unreachable_judge_is_found_before_any_request():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    judge = JudgeClient(f"http://127.0.0.1:{port}", "judge-x", timeout=1)
    with pytest.raises(JudgeError, match="unreachable"):
        judge.check_reachable()
    with pytest.raises(JudgeError, match="not an http"):
        JudgeClient("ftp://example", "judge-x").check_reachable()


def test_scorer_asks_every_metric_of_the_task(tmp_path):
    image_path = tmp_path / "out.png"
    image_path.write_bytes(PNG)
    record = {"text": "A red square."}
    edit = BenchItem("e", "edit", "colour", "make it red", Image.new("RGB", (8, 8)))
    generation = BenchItem("g", "generation", "draw", "draw a red square")
    scores = {"text_quality": 10, "image_consistency": 2}
    with JudgeServer(scores=scores) as server:
        score = judge_scorer(client(server)[0])
        edited = score(edit, record, image_path)
        generated = score(generation, record, image_path)
    assert edited["text_quality"] == 100.0 and edited["image_consistency"] == 20.0
    assert edited["image_alignment"] == 70.0
    assert generated["image_consistency"] is None and generated["output_alignment"] == 70.0
    asked = server.metrics()
    assert len(asked) == 11 and asked.count("image_consistency") == 1
    assert set(asked) == set(METRICS)
    assert set(edited["judge_answers"]) == set(METRICS)
