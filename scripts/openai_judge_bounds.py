"""Can the official `openai` client keep the ParaBench judge's bounds? A measurement against the
scripted judge server of the tests (tests/bench_judge_server.py).

    pip install --target /tmp/openai_probe openai
    PYTHONPATH=/tmp/openai_probe:. python scripts/openai_judge_bounds.py

Two of the bounds paradiff's judge client (`paradiff/bench/llm_judge.py`) promises are checked:
- the per-attempt bound covers the whole exchange however the server trickles bytes: a server
  that sends its good answer one byte every 50 ms, against a 1 s timeout and no retries;
- a reply over 16 MiB is refused unread: a server that streams 64 MiB without a length.
The third, no repeated call on resume, is paradiff's answer cache, not the client's: it holds
whichever client sends the request. The results are in docs/architecture.md ("The judge client").
"""

from __future__ import annotations

import resource
import time

import openai

from tests.bench_judge_server import JudgeServer

MESSAGES = [{"role": "user", "content": "Metric: text_quality\nScore it."}]


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", timeout=1.0, max_retries=0)


def dripping_server() -> None:
    with JudgeServer(script=["drip"], slow_s=0.05) as server:
        started = time.monotonic()
        try:
            reply = client(server.url).chat.completions.create(model="judge", messages=MESSAGES)
            outcome = f"answered {reply.choices[0].message.content!r}"
        except openai.APITimeoutError as err:
            outcome = f"timed out ({type(err).__name__})"
        print(f"drip, timeout 1 s: {outcome} after {time.monotonic() - started:.1f} s")


def huge_reply() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with JudgeServer(script=["huge"]) as server:
        started = time.monotonic()
        try:
            client(server.url).chat.completions.create(model="judge", messages=MESSAGES)
            outcome = "answered"
        except (openai.OpenAIError, ValueError) as err:  # a JSON error after the whole body
            outcome = f"refused ({type(err).__name__}: {str(err)[:60]})"
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(
        f"64 MiB reply: {outcome} after {time.monotonic() - started:.1f} s, "
        f"peak memory grew {grown:.0f} MiB"
    )


if __name__ == "__main__":
    print(f"openai {openai.__version__}")
    dripping_server()
    huge_reply()
