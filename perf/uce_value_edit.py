"""Where UCE's edit reaches: how much of a concept's cross-attention value signal survives UCE, on the text
states UCE was given and on the ones an attacker can reach.

UCE (Gandikota et al., WACV 2024; ``methods/uce.py``) edits every cross-attention key and value projection in
closed form so that the text states of the *bare* erase phrasings ("zero", "red") map to the unconditional
output. Any other text state carrying the concept — the same word inside a caption, behind an attacker's prefix
— is moved only as far as the least-squares edit happens to generalise to it. The README reads the contrast on
the text cards (UnlearnDiffAtk, P4D and Concept Inversion bring red back from UCE, nothing brings digit 0 back)
as: a colour's value signal sits in states the edit did not reach, a digit's does not. This script measures it.

For every cross-attention layer's value projection W (``attn2.to_v``; the keys are edited the same way) and
every pair of prompts that differ only in the concept (the erased value vs each other value of its axis: the
other digits or colours, same template, same other attribute), the concept's value signal is
Δ = mean over the context's positions of W c(prompt with the concept) − W c(prompt with the other value);
its **survival** after the edit is ⟨Δ_UCE, Δ_orig⟩ / ‖Δ_orig‖², pooled over layers weighted by ‖Δ_orig‖²
(1: untouched, 0: removed, < 0: reversed). Prompt sets: the bare erase phrasings (what UCE was given); the erase
phrasings inside the training templates; the paraphrases (never given to UCE) inside them; and the erase
phrasings inside a training template behind k = 5 random words of the attacks' search vocabulary
(``attacks.concept.common.search_vocabulary``, the concept's own words excluded) — the states a prefix attack
searches — as the median and 90th percentile over 200 draws.

Usage: ``python perf/uce_value_edit.py [--records docs/records] [--seed 0]`` (the UCE records' saved weights
must be beside them: ``unlearnbench run --scenario CARD --methods uce --save-weights``). CPU, seconds.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

CARDS = {"mnist-text-object": "mnist-text-object-v3-quick", "mnist-text-style": "mnist-text-style-v3-quick"}
PREFIX_WORDS, PREFIX_DRAWS = 5, 200


def _value_layers(model) -> list[torch.nn.Linear]:
    return [m.to_v for name, m in model.unet.named_modules() if name.endswith("attn2")]


@torch.no_grad()
def _signal(model, layers: list[torch.nn.Linear], with_concept: list[str], without: list[str]) -> list[torch.Tensor]:
    """Per layer: N × D value differences, mean over context positions."""
    a, b = model.encode(with_concept), model.encode(without)
    return [(layer(a) - layer(b)).mean(dim=1) for layer in layers]


def survival(original, edited, with_concept: list[str], without: list[str]) -> float:
    """⟨Δ_edited, Δ_orig⟩ / ‖Δ_orig‖², summed over layers and prompt pairs (weights ‖Δ_orig‖²)."""
    d0 = _signal(original, _value_layers(original), with_concept, without)
    d1 = _signal(edited, _value_layers(edited), with_concept, without)
    num = sum(float((x * y).sum()) for x, y in zip(d0, d1))
    den = sum(float((x * x).sum()) for x in d0)
    return num / den


def _axis(concept):
    """(phrasings per value of the concept's axis, the concept's key, the other attribute's words, a function
    (template, value phrase, other-attribute word) → prompt)."""
    from benchmark.data.mnist_text import COLOUR_PHRASINGS, COLOURS, DIGIT_PHRASINGS

    if concept.axis == "digit":
        return (DIGIT_PHRASINGS, int(concept.value), [COLOUR_PHRASINGS[c][0][0] for c in COLOURS],
                lambda t, phrase, fill: t.format(digit=phrase, colour=fill))
    return (COLOUR_PHRASINGS, str(concept.value), [DIGIT_PHRASINGS[d][0][0] for d in DIGIT_PHRASINGS],
            lambda t, phrase, fill: t.format(digit=fill, colour=phrase))


def prompt_pairs(concept, template_set: tuple[str, ...], kind: str) -> tuple[list[str], list[str]]:
    """(prompts with the concept, the same prompts with another value of its axis), every template × other
    attribute value × other concept value; phrasings of ``kind`` ("erase" / "paraphrase") for the concept and
    the erase phrasings of the others."""
    table, key, fill, fmt = _axis(concept)
    mine = table[key][0 if kind == "erase" else 1]
    others = [table[k][0] for k in table if k != key]
    pairs = [(fmt(t, phrase, word), fmt(t, other[i % len(other)], word))
             for t in template_set for i, phrase in enumerate(mine) for word in fill for other in others]
    return [a for a, _ in pairs], [b for _, b in pairs]


def bare_pairs(concept) -> tuple[list[str], list[str]]:
    table, key, _, _ = _axis(concept)
    pairs = [(p, table[k][0][i]) for i, p in enumerate(table[key][0]) for k in table if k != key]
    return [p for p, _ in pairs], [o for _, o in pairs]


def prefixed(concept, with_c: list[str], without: list[str], seed: int) -> list[tuple[str, list[str], list[str]]]:
    """PREFIX_DRAWS copies of the prompt pairs, each behind its own PREFIX_WORDS random search-vocabulary tokens."""
    from attacks.concept.common import decode, search_vocabulary

    vocab = search_vocabulary(concept)
    rng = random.Random(seed)
    draws = []
    for _ in range(PREFIX_DRAWS):
        prefix = decode([rng.choice(vocab) for _ in range(PREFIX_WORDS)])
        draws.append((prefix, [f"{prefix} {p}" for p in with_c], [f"{prefix} {p}" for p in without]))
    return draws


def main() -> None:
    from tqdm.auto import tqdm

    from benchmark.data.mnist_text import TRAIN_TEMPLATES, parse_concept
    from benchmark.models.loading import load_model
    from benchmark.scenarios import load_scenario
    from benchmark.zoo import load_unet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "records")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for card, folder in CARDS.items():
        scenario = load_scenario(card)
        record = next((args.records / folder).glob(f"*__uce__seed{args.seed}__*.json"))
        edited, _ = load_model(str(record))
        original = load_unet(scenario.models["base"]["zoo"], scenario.models["base"].get("sha256"))
        concept = parse_concept(scenario.default_target)
        sets = {"bare erase phrasings (given to UCE)": bare_pairs(concept),
                "erase phrasings in training templates": prompt_pairs(concept, TRAIN_TEMPLATES, "erase"),
                "paraphrases in training templates": prompt_pairs(concept, TRAIN_TEMPLATES, "paraphrase")}
        row = {name: survival(original, edited, *pair) for name, pair in sets.items()}
        one_template = prompt_pairs(concept, TRAIN_TEMPLATES[:1], "erase")
        draws = [survival(original, edited, a, b)
                 for _, a, b in tqdm(prefixed(concept, *one_template, args.seed), desc=f"{card} prefixes")]
        draws.sort()
        row[f"erase phrasing behind {PREFIX_WORDS} random words: median"] = draws[len(draws) // 2]
        row[f"erase phrasing behind {PREFIX_WORDS} random words: 90th percentile"] = draws[int(0.9 * len(draws))]
        rows.append((f"{card} ({concept.name})", row))
    names = list(rows[0][1])
    print(f"UCE seed {args.seed}: share of the concept's cross-attention value signal that survives the edit "
          "(1 = untouched, 0 = removed)\n")
    print("| prompts | " + " | ".join(card for card, _ in rows) + " |")
    print("| --- | " + " | ".join("---:" for _ in rows) + " |")
    for name in names:
        print(f"| {name} | " + " | ".join(f"{row[name]:.2f}" for _, row in rows) + " |")


if __name__ == "__main__":
    main()
