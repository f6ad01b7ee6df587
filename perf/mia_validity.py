"""Validity of the membership attacks on the shipped models: members vs held-out AUC of the base model
(trained on all members) over all classes and on the forget class, next to the retrained oracle (never
saw class 0), with ROC curves plotted to docs/mia_roc.png.

Usage:  python perf/mia_validity.py [--out docs/mia_roc.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ATTACKS = ("loss_threshold", "secmi", "pia")


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from attacks.mia.base import summarize
    from benchmark.registry import ATTACKS as REGISTRY
    from benchmark.runner import attack_context
    from benchmark.scenarios import load_scenario

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "mia_roc.png")
    args = ap.parse_args()
    ctx = attack_context(load_scenario("mnist-class"), "quick", forget_class=0)
    rows = []
    fig, axes = plt.subplots(1, len(ATTACKS), figsize=(4 * len(ATTACKS), 4), sharey=True)
    for ax, name in zip(axes, tqdm(ATTACKS, desc="attacks")):
        attack = REGISTRY.get(name)(REGISTRY.get(name).make_config({"include_all_classes": True}))
        t0 = time.time()
        for label, model in ctx.reference_models.items():
            sc = attack._all_scores(model, ctx)
            for split, keep in (("all classes", None), ("class 0", 0)):
                m, h = sc["members"], sc["heldout"]
                if keep is not None:
                    m, h = m[sc["members_y"] == keep], h[sc["heldout_y"] == keep]
                r = summarize(m.numpy(), h.numpy())
                rows.append((name, label, split, r))
                ax.plot(r.fpr, r.tpr, ls="-" if keep is None else "--",
                        label=f"{label}, {split}: AUC {r.auc:.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"{name} ({time.time() - t0:.0f} s)")
        ax.set_xlabel("false positive rate (held-out called member)")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("true positive rate (member called member)")
    fig.suptitle("Membership inference on the shipped mnist-class models (members vs held-out)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print("| attack | model | split | n (members + held-out) | AUC [95% bootstrap CI] | TPR@1%FPR | "
          "TPR@0.1%FPR | best balanced acc |")
    print("| --- | --- | --- | ---: | --- | ---: | ---: | ---: |")
    for name, label, split, r in rows:
        t1, t01 = r.tpr_at["tpr@1%fpr"], r.tpr_at["tpr@0.1%fpr"]
        print(f"| {name} | {label} | {split} | {r.n_members} + {r.n_nonmembers} | {r.auc:.3f} "
              f"[{r.auc_ci[0]:.3f}, {r.auc_ci[1]:.3f}] | {'–' if t1 is None else f'{t1:.3f}'} | "
              f"{'–' if t01 is None else f'{t01:.3f}'} | {r.best_balanced_accuracy:.3f} |")
    print(f"ROC curves: {args.out}")


if __name__ == "__main__":
    main()
