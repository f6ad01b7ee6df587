"""Zero-shot accuracy of the shipped tiny CLIP per attribute and per phrasing, on the 1,000 held-out
images with the held-out caption templates (erase phrasings vs paraphrases: the model must know both).

Usage:  python perf/clip_zero_shot.py
"""

from __future__ import annotations

import json


def main() -> None:
    from benchmark import zoo
    from benchmark.data.mnist_text import mnist_text_splits
    from benchmark.zoo.text_recipes import clip_zero_shot

    clip = zoo.load_clip()
    held = mnist_text_splits(0).heldout
    names = ["erase phrasing 1 (zero / red)", "erase phrasing 2 (the digit 0 / red ink)",
             "paraphrase 1 (cero / crimson)", "paraphrase 2 (nought / scarlet)"]
    print("| phrasing | digit | colour | n |\n| --- | ---: | ---: | ---: |")
    for k, name in enumerate(names):
        r = clip_zero_shot(clip, held, phrasing=k)
        print(f"| {name} | {r['zero_shot_digit_accuracy']:.3f} | {r['zero_shot_colour_accuracy']:.3f} | {r['n']} |")
    print(json.dumps({"protocol": r["protocol"], "templates": "held-out"}))


if __name__ == "__main__":
    main()
