"""Shared pieces of the concept attacks on the text track (protocols in attacks/README.md).

- the prompts that ask for the erased concept: its *erase phrasings* on the held-out templates (what a
  method was told to forget) and the same prompts with the *paraphrases* no method was shown;
- the attacks' search vocabulary: the word tokens of the training captions, minus the concept's own
  phrasings (an attack that may type "nought" is the paraphrase attack, measured on its own);
- soft / adversarial prompts: k token slots after the start token, filled from embeddings;
- judging: N images per prompt, success when the judge reads the concept — ASR-1 (the first image)
  and ASR-N (any of N), over prompts with a Wilson CI;
- scoring against the references: every headline value is also computed on the original (the concept
  is there) and on the retrained oracle (it never was), and the gap to the oracle is reported.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from attacks.inversion.common import cached_per_model
from benchmark.api import HEADLINE, AttackContext, DiffusionModel, MetricValue
from benchmark.metrics.stats import item_ci
from benchmark.models.guided_ddim import starting_noise

TEXT_REQUIRES = frozenset({"text_cond", "token_embeddings", "grad"})


def concept_of(context: AttackContext) -> Any:
    """The context's ``Concept`` (text track), or raise ValueError for a context without one."""
    concept = (context.config or {}).get("concept")
    if concept is None or context.forget_prompts is None:
        raise ValueError("this attack needs a text-track context (a concept and prompts that ask for it)")
    return concept


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items spread evenly over ``items`` (all of them when n ≥ len)."""
    if n >= len(items):
        return list(items)
    idx = torch.linspace(0, len(items) - 1, n).round().long().tolist()
    return [items[i] for i in idx]


def erase_prompts(context: AttackContext, n: int) -> list[str]:
    """``n`` prompts that ask for the concept by its erase phrasings (held-out templates)."""
    concept_of(context)
    return spread(list(context.forget_prompts or ()), n)


def paraphrase_prompts(context: AttackContext, n: int) -> list[str]:
    """The erase prompts with the concept's phrase replaced by its paraphrases, in turn."""
    from methods.base import replace_concept

    concept = concept_of(context)
    if hasattr(concept, "paraphrase_prompts"):  # a card-defined concept (Stable Diffusion): its own templates
        return concept.paraphrase_prompts(len(erase_prompts(context, n)))
    base = erase_prompts(context, n)
    para = list(concept.phrasings("paraphrase"))
    return replace_concept(base, list(concept.phrasings("erase")), [para[i % len(para)] for i in range(len(base))])


@functools.lru_cache(maxsize=8)
def _caption_words() -> tuple[str, ...]:
    from benchmark.data.mnist_text import caption_table

    vocab, _ = caption_table()
    return tuple(sorted({w.strip(",:") for caption in vocab for w in caption.split()} - {""}))


def search_vocabulary(concept: Any, exclude_concept: bool = True) -> list[int]:
    """Token ids an attack may use: every token of the training captions' words (what the tiny CLIP
    learnt; the rest of the 49k BPE table is untrained noise), minus, when ``exclude_concept``, the tokens
    that only the concept's own phrasings use (erase phrasings and paraphrases: "0", "zero", "nought";
    words every value shares, such as "the digit", stay). A card-defined concept (Stable Diffusion) gives
    its own: the whole CLIP vocabulary less its words."""
    if hasattr(concept, "search_vocabulary"):
        return concept.search_vocabulary(exclude_concept)
    from benchmark.data.mnist_text import COLOUR_PHRASINGS, DIGIT_PHRASINGS
    from benchmark.models.tiny_clip import tokenizer

    tok = tokenizer()
    ids = {i for w in _caption_words() for i in tok.encode(w)}
    if exclude_concept:
        def tokens(table: tuple[tuple[str, ...], tuple[str, ...]]) -> set[int]:
            return {i for p in table[0] + table[1] for i in tok.encode(p)}

        axis = DIGIT_PHRASINGS if concept.axis == "digit" else COLOUR_PHRASINGS
        key = int(concept.value) if concept.axis == "digit" else str(concept.value)
        others = set().union(*(tokens(t) for k, t in axis.items() if k != key))
        ids -= tokens(axis[key]) - others
    return sorted(ids)


def decode(ids: Sequence[int]) -> str:
    from benchmark.models.tiny_clip import tokenizer

    return tokenizer().decode(list(ids)).strip()


def special_tokens(model: DiffusionModel) -> tuple[int, int, int]:
    """(start, end, pad) token ids of the model's tokenizer, read off the tokenised empty prompt, which is
    [start, end, pad, …]: the project's tiny CLIP pads with 0, SD v1's tokenizer with the end token (49407),
    SD 2's with "!" (0)."""
    empty = model.tokenize([""])[0]  # type: ignore[attr-defined]
    return int(empty[0]), int(empty[1]), int(empty[2])


def n_tokens(ids: Tensor, end: int) -> int:
    """Length of one tokenised prompt (1-d ids), start and end tokens included: up to its first end token,
    whatever the padding after it (counting non-zero ids only works for a tokenizer that pads with 0)."""
    at = torch.nonzero(ids == end).flatten()
    return int(at[0]) + 1 if len(at) else int(ids.shape[0])


class SlotPrompt:
    """A prompt with ``k`` token slots, filled from embeddings: ``embeddings(slot_embeds)`` gives 1 × L × D
    token embeddings for ``model.encode_embeddings``, ``with_tokens(ids)`` the plain text with real tokens.
    The slots go where the prompt has ``{}`` (textual inversion's placeholder), else right after the
    start token (UnlearnDiffAtk's prefix)."""

    def __init__(self, model: DiffusionModel, prompt: str, k: int):
        from benchmark import UnlearnbenchError

        self.model, self.prompt, self.k = model, prompt, k
        before, _, after = prompt.partition("{}") if "{}" in prompt else ("", "", prompt)
        head = model.tokenize([before.strip()])[0]  # type: ignore[attr-defined]
        tail = model.tokenize([after.strip()])[0]  # type: ignore[attr-defined]
        _, end, pad_id = special_tokens(model)
        n_head, n_tail = n_tokens(head, end) - 1, n_tokens(tail, end) - 1  # without EOT / SOT
        context = head.shape[0]
        if n_head + k + n_tail > context:
            raise UnlearnbenchError(f"prompt {prompt!r} with {k} inserted tokens exceeds the text context "
                                    f"({n_head + k + n_tail} > {context} tokens)")
        # the tokenizer's own padding (0 on the tiny CLIP, the end token on SD v1), as a typed prompt has
        pad = torch.full((context - (n_head + k + n_tail),), pad_id, dtype=head.dtype)
        self.ids = torch.cat([head[:n_head], torch.zeros(k, dtype=head.dtype), tail[1:1 + n_tail], pad])
        self.slots = slice(n_head, n_head + k)
        self._before, self._after = before.strip(), after.strip()

    @property
    def table(self) -> Tensor:
        return self.model.text_encoder.token_embedding.weight  # type: ignore[attr-defined]

    def embeddings(self, slot_embeds: Tensor) -> Tensor:
        """Token embeddings with the slots replaced (differentiable in ``slot_embeds``: k × D)."""
        base = self.table[self.ids.to(self.table.device)].detach().clone()
        lo, hi = self.slots.start, self.slots.stop
        return torch.cat([base[:lo], slot_embeds.to(base.dtype), base[hi:]])[None]

    def states(self, slot_embeds: Tensor) -> Tensor:
        return self.model.encode_embeddings(self.embeddings(slot_embeds))  # type: ignore[attr-defined]

    def filled(self, ids: Sequence[int] | Tensor) -> Tensor:
        """The prompt's token ids with the slots filled by ``ids`` (1 × L)."""
        out = self.ids.clone()
        out[self.slots] = torch.as_tensor(list(ids) if not torch.is_tensor(ids) else ids, dtype=out.dtype)
        return out[None]

    def states_for(self, ids: Sequence[int] | Tensor) -> Tensor:
        """Text states of the discrete prompt (exact: no detokenise / retokenise round trip)."""
        with torch.no_grad():
            return self.model.text_encoder(self.filled(ids).to(self.table.device))  # type: ignore[attr-defined]

    def with_tokens(self, ids: Sequence[int]) -> str:
        return " ".join(part for part in (self._before, decode(ids), self._after) if part)


def image_noise(n: int, shape: Sequence[int], seed: int) -> Tensor:
    """The n × C × H × W noise ``model.sample(…, seed)`` starts from: item i's depends on (seed, i)."""
    return starting_noise(None, n, shape, seed)


def sample_shape(model: DiffusionModel) -> tuple[int, int, int]:
    """C × H × W of the model's sampling space (pixels; latents on Stable Diffusion)."""
    cfg = model.unet.config  # type: ignore[attr-defined]
    return int(cfg.in_channels), int(cfg.sample_size), int(cfg.sample_size)


PROMPT_SEED_STRIDE = 1009  # judge_conditions(index=…): prompt i's noise comes from seed + stride · i


def judge_conditions(model: DiffusionModel, conditions: Any, context: AttackContext, n_per: int, seed: int,
                     steps: int | None = None, index: Sequence[int] | None = None) -> Tensor:
    """P × N matrix of 0/1: for each condition (a prompt, or 1 × L × D states), ``n_per`` samples judged
    as the concept or not. Sampling: the scenario's guidance, ``steps`` DDIM steps (default: the tier's).

    With ``index`` (the prompt number of each condition), condition j's images start from the noise of
    ``seed + PROMPT_SEED_STRIDE · index[j]`` (all conditions in one batched call, ``sample_each``), so a prompt
    gets the same starting noise whichever other prompts are judged with it: an attack that judges a prompt
    before and after changing its tokens compares the tokens, not two draws of the noise (UnlearnDiffAtk's and
    P4D's released code reseed alike). At 1 CPU thread the arithmetic of a small batch can differ from a
    larger one's in the last bits, so those attacks judge every prompt, in the same places, each time."""
    steps = steps or context.sample_steps
    if index is None:
        conds: Any = (conditions.repeat_interleave(n_per, dim=0) if torch.is_tensor(conditions)
                      else [c for c in conditions for _ in range(n_per)])
        x = model.sample(conds, seed=seed, steps=steps, guidance=context.guidance)
        return context.shows_concept(x).reshape(len(conditions), n_per)
    index = list(index)
    if not index:
        return torch.zeros((0, n_per))
    groups = [conditions[j:j + 1].repeat_interleave(n_per, dim=0) if torch.is_tensor(conditions)
              else [conditions[j]] * n_per for j in range(len(index))]
    x = torch.cat(sample_each(model, groups, [seed + PROMPT_SEED_STRIDE * int(i) for i in index], steps,
                              context.guidance))
    return context.shows_concept(x).reshape(len(index), n_per)


def sample_each(model: DiffusionModel, groups: Sequence[Any], seeds: Sequence[int], steps: int,
                guidance: float) -> list[Tensor]:
    """``model.sample(groups[j], seed=seeds[j], …)`` for every j (each group: prompts or N × L × D states),
    as one batched call when the wrapper takes ``noise=`` — every group still starts from its own seed's
    noise, so the images are those of the separate calls — else one call per group."""
    if not takes_noise(model):  # an older out-of-tree wrapper
        return [model.sample(g, seed=s, steps=steps, guidance=guidance) for g, s in zip(groups, seeds)]
    sizes = [len(g) for g in groups]
    noise = torch.cat([image_noise(n, sample_shape(model), s) for n, s in zip(sizes, seeds)])
    conds = torch.cat(list(groups)) if torch.is_tensor(groups[0]) else [c for g in groups for c in g]
    return list(model.sample(conds, seed=seeds[0], steps=steps, guidance=guidance, noise=noise).split(sizes))


def takes_noise(model: DiffusionModel) -> bool:
    """Whether the model's ``sample`` accepts ``noise=`` (the shipped wrappers do; an older out-of-tree one
    may not)."""
    return "noise" in inspect.signature(model.sample).parameters and hasattr(model, "unet")


def asr_values(success: Tensor, key: str, what: str, n_per: int) -> dict[str, MetricValue]:
    """ASR-1 (first image per prompt) and ASR-N (any of ``n_per``) over prompts, Wilson CI over prompts."""
    first = success[:, 0].double().numpy()
    anyn = success.max(1).values.double().numpy()
    return {
        f"{key}_asr1": MetricValue(f"{key}_asr1", float(first.mean()), len(first), None, item_ci(first),
                                   f"{what}; share of prompts whose first image is judged the concept; CI: Wilson over prompts"),
        f"{key}_asr{n_per}": MetricValue(f"{key}_asr{n_per}", float(anyn.mean()), len(anyn), None, item_ci(anyn),
                                         f"{what}; share of prompts with ≥ 1 of {n_per} images judged the concept; "
                                         "CI: Wilson over prompts"),
    }


def against_references(values: dict[str, MetricValue], context: AttackContext,
                       compute: Callable[[DiffusionModel], dict[str, MetricValue] | None],
                       headline: Sequence[str]) -> tuple[dict[str, MetricValue], dict[str, str]]:
    """Add ``{key}_{ref}`` for every reference model (original, oracle) and ``{key}_gap`` (model − oracle)
    for each headline key, and flag the headline keys (``extra["headline"]``, read by
    ``benchmark.api.headline_keys``). ``compute(ref)`` returns the reference's values (None when it did
    not finish)."""
    out = dict(values)
    for key in headline:
        if key in out:
            out[key] = dataclasses.replace(out[key], extra={**out[key].extra, HEADLINE: True})
    notes: dict[str, str] = {}
    for ref_name, ref_model in context.reference_models.items():
        ref_values = compute(ref_model)
        if ref_values is None:
            notes[ref_name] = "not attacked: stopped by its budget"
            continue
        for key, v in ref_values.items():
            out[f"{key}_{ref_name}"] = MetricValue(f"{key}_{ref_name}", v.value, v.n, v.higher_is_better, v.ci,
                                                   f"{v.protocol}; the {ref_name} model",
                                                   {k: x for k, x in v.extra.items() if k != HEADLINE})
    for key in headline:
        oracle = out.get(f"{key}_oracle")
        if key in out and oracle is not None:
            out[f"{key}_gap"] = MetricValue(f"{key}_gap", out[key].value - oracle.value, out[key].n, None, None,
                                            f"{key} of the model − the oracle's (0 = as hard to attack as the oracle)")
    return out, notes


def measure_with_references(attack: Any, model: DiffusionModel, context: AttackContext,
                            measure: Callable[[DiffusionModel], tuple[dict[str, MetricValue], list[dict], str]],
                            headline: Sequence[str]) -> tuple[dict[str, MetricValue], list[dict], str, dict[str, str]]:
    """``measure`` on the model and on every reference (each cached by weights), merged by
    ``against_references``: (values, the model's rows, stop reason or '', notes on references)."""
    values, rows, stopped = cached_per_model(context, attack, model, lambda: measure(model))
    if stopped:
        return values, rows, stopped, {}

    def reference(ref: DiffusionModel) -> dict[str, MetricValue] | None:
        v, _, ref_stopped = cached_per_model(context, attack, ref, lambda: measure(ref))
        return None if ref_stopped else v

    values, notes = against_references(values, context, reference, headline)
    return values, rows, "", notes
