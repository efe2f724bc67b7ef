"""Which score should best-of-K keep an answer by? Measured on the development split.

K seeded answers per prompt (the model's shipped steps, the given temperatures), then the exact
judge's scores of the answer each rule keeps:
- first: candidate 0 alone (one sample at these temperatures);
- image|text: log p(output image | reasoning, prompt), the shipped rule (`sampling.best_of`);
- text|image: log p(reasoning | output image, prompt);
- both: their sum;
- oracle: the candidate with the best exact output alignment (an upper bound, not a rule).

    python scripts/best_of_rules.py --k 4 --text-temperature 0.7 --image-temperature 1
"""

from __future__ import annotations

import argparse

import torch

from paradiff.bench.items import METRICS
from paradiff.pipeline import ParallelPipeline
from paradiff.sampling.best_of import candidate_seeds, image_given_text_score
from paradiff.sampling.best_of import masked_log_likelihood as log_likelihood
from paradiff.sampling.sampler import ParallelSampler
from paradiff.shapes.dataset import development_samples
from paradiff.shapes.judge import score_sample
from paradiff.shapes.probe import request_of

RULES = ("first", "image|text", "text|image", "both", "oracle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the bundled one)")
    parser.add_argument("--k", type=int, default=4, help="candidates per prompt")
    parser.add_argument("--text-temperature", type=float, default=0.7)
    parser.add_argument("--image-temperature", type=float, default=1.0)
    parser.add_argument("--image-steps", type=int, default=None, help="default: the model's")
    parser.add_argument("--per-category", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=30)
    args = parser.parse_args()
    pipe = ParallelPipeline.from_pretrained(args.model)
    model, space = pipe.model.eval(), pipe.space
    config = pipe.sampler_defaults.replace(
        text_temperature=args.text_temperature,
        image_temperature=args.image_temperature,
        best_of=1,
        seed=0,
    )
    if args.image_steps is not None:
        config = config.replace(image_steps=args.image_steps)
    samples = development_samples(args.per_category)
    kept: dict[str, list[tuple[str, dict[str, float]]]] = {rule: [] for rule in RULES}
    for task in ("edit", "generation"):
        todo = [s for s in samples if s.task == task]
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start : start + args.batch_size]
            name = "edit" if task == "edit" else "generate"
            batch = pipe.layout.collate(
                [pipe.build_sequences(name, request_of(s), config)[0] for s in chunk]
            )
            scores, judged = [], []
            for k in range(args.k):
                seeds = candidate_seeds([config.seed] * len(chunk), k)
                out = ParallelSampler(model, space, config)(batch, len(chunk), seeds)
                image = image_given_text_score(model, space, out.ids, batch)
                text = log_likelihood(model, space, out.ids, batch, batch.text, space.text_vocab)
                scores.append({"image|text": image, "text|image": text, "both": image + text})
                judged.append(
                    [
                        score_sample(s, pipe.decode_reasoning(out.text_tokens[i]), codes)
                        for i, (s, codes) in enumerate(zip(chunk, out.image_codes, strict=True))
                    ]
                )
            for i in range(len(chunk)):
                answers = [judged[k][i] for k in range(args.k)]
                kept["first"].append((task, answers[0]))
                oracle = max(answers, key=lambda a: a["output_alignment"])
                kept["oracle"].append((task, oracle))
                for rule in ("image|text", "text|image", "both"):
                    best = int(torch.stack([s[rule][i] for s in scores]).argmax())
                    kept[rule].append((task, answers[best]))
    print(
        f"{len(samples)} development prompts, K = {args.k}, text temperature "
        f"{args.text_temperature:g}, image temperature {args.image_temperature:g}"
    )
    print("| rule | task | " + " | ".join(METRICS) + " |")
    for rule, rows in kept.items():
        for task in ("overall", "edit", "generation"):
            chosen = [a for t, a in rows if task == "overall" or t == task]
            means = " | ".join(f"{sum(a[m] for a in chosen) / len(chosen):.1f}" for m in METRICS)
            print(f"| {rule} | {task} | {means} |")


if __name__ == "__main__":
    main()
