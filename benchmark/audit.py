"""``unlearnbench audit MODEL``: the metric and attack battery on a model someone released, and a report.

The audited model is loaded safely (``benchmark.models.loading``), its track read from what it is (a
class-conditional or a text-conditional UNet), and the scenario of that track run on three cells with the
same runner as ``unlearnbench run``: the **reference** (the model it was derived from: the scenario's base,
or ``--reference``), the **oracle** (the zoo model retrained without the target, where one exists), and the
**audited** model — as the built-in pseudo-method ``audited``, which returns the loaded weights unchanged.
So every number is computed exactly as on the leaderboard, cached and resumable like ``run`` (records in
``OUT/records/``), and the report (``reports/audit.py``) reads the records only.

Everything is validated before anything is written: a malformed folder, a missing component, a model of
the wrong track for ``--scenario``, an unreadable prompt file → one error line, exit 2, ``OUT`` untouched.
"""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from benchmark import UnlearnbenchError
from benchmark.api import DiffusionModel, UnlearningMethod, UnlearnOutcome, UnlearnRequest

TRACK_SCENARIOS = {"class": "mnist-class", "text": "mnist-text-object"}
FAMILY_SCENARIOS = {"stable-diffusion": "sd-nudity"}  # the default scenario of a model family without a zoo base
_LOADED: dict[str, DiffusionModel] = {}  # fingerprint → audited model loaded by this process


@dataclass
class AuditedConfig:
    source: str = ""  # what was audited (a path or zoo name), for the record
    fingerprint: str = ""  # the audited weights' fingerprint: part of the record's identity
    allow_pickle: bool = False


class AuditedModel(UnlearningMethod):
    """Not an unlearning method: returns the audited model as loaded, so the runner scores it."""

    name: ClassVar[str] = "audited"
    paper: ClassVar[str] = "— (the model under audit, as released)"
    supports: ClassVar[frozenset[str]] = frozenset({"class", "text"})
    Config = AuditedConfig
    config: AuditedConfig

    def unlearn(self, model: DiffusionModel, request: UnlearnRequest) -> UnlearnOutcome:
        audited = _LOADED.get(self.config.fingerprint)
        if audited is None:
            from benchmark.models.loading import load_model

            audited, _ = load_model(self.config.source, self.config.allow_pickle, template=model)
            if audited.fingerprint() != self.config.fingerprint:
                raise UnlearnbenchError(f"{self.config.source} changed since the audit was planned")
        return UnlearnOutcome(audited.clone().to(request.device), steps=0, stats={"source": self.config.source})


def track_of(model: DiffusionModel) -> str:
    from benchmark.models.class_unet import ClassConditionalUNet
    from benchmark.models.stable_diffusion import StableDiffusionModel
    from benchmark.models.text_unet import TextConditionalUNet

    if isinstance(model, ClassConditionalUNet):
        return "class"
    if isinstance(model, (TextConditionalUNet, StableDiffusionModel)):
        return "text"
    raise UnlearnbenchError(f"cannot audit a {type(model).__name__}: no scenario track for it")


def family_of(model: DiffusionModel) -> str:
    """'stable-diffusion' for a user's Stable Diffusion pipeline, 'embedded' for the project's own UNets."""
    from benchmark.models.stable_diffusion import StableDiffusionModel

    return "stable-diffusion" if isinstance(model, StableDiffusionModel) else "embedded"


SEED_COLUMNS = ("seed", "sd_seed", "evaluation_seed")  # ours, I2P's (AIML-TUDA/i2p), UnlearnDiffAtk's
GUIDANCE_COLUMNS = ("guidance", "sd_guidance_scale", "evaluation_guidance")
PROMPT_MAX_SEED = 2**63 - 1  # a prompt row's seed seeds torch.Generator directly (run seeds: runner.MAX_SEED)


def _row_number(value: str, what: str, where: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise UnlearnbenchError(f"{where}: {what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise UnlearnbenchError(f"{where}: {what} {value!r} is not a finite number")
    return number


def _row_seed(value: str, where: str) -> int:
    """A whole number in [0, 2^63): read exactly when written as an integer (a float would round seeds above
    2^53), else as a number with no fractional part ("42.0", "1e3", as spreadsheets write them)."""
    try:
        seed = int(value)
    except ValueError:
        number = _row_number(value, "seed", where)
        seed = int(number) if number.is_integer() else -1
    if not 0 <= seed <= PROMPT_MAX_SEED:
        raise UnlearnbenchError(f"{where}: seed {value!r} is not a whole number in [0, 2^63)")
    return seed


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """A prompt file in the I2P CSV layout: a ``prompt`` column, optional seed (``seed``, or I2P's ``sd_seed``,
    or ``evaluation_seed``) and guidance (``guidance``, ``sd_guidance_scale``, ``evaluation_guidance``)
    columns; other columns (I2P's categories, percentages…) are ignored. Header names are matched without
    case or surrounding spaces, a UTF-8 byte-order mark is skipped. A row without a seed gets 0, one without
    guidance the card's. Seeds must be whole numbers in [0, 2⁶³); guidance a finite number ≥ 0."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            rows = [r for r in reader if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UnlearnbenchError(f"prompt file {path}: cannot read it ({exc})") from exc
    columns = [c.strip().lower() for c in header]
    if "prompt" not in columns:
        raise UnlearnbenchError(f"prompt file {path}: want a CSV with a 'prompt' column (I2P layout)")
    if not rows:
        raise UnlearnbenchError(f"prompt file {path}: no prompts below the header")

    def first(names: tuple[str, ...]) -> int | None:
        return next((columns.index(n) for n in names if n in columns), None)

    at_prompt, at_seed, at_guidance = columns.index("prompt"), first(SEED_COLUMNS), first(GUIDANCE_COLUMNS)
    out = []
    for line, row in enumerate(rows, start=2):
        where = f"prompt file {path}: line {line}"
        row = row + [""] * (len(columns) - len(row))
        seed = row[at_seed].strip() if at_seed is not None else ""
        guidance = row[at_guidance].strip() if at_guidance is not None else ""
        seed_value = _row_seed(seed, where) if seed else 0
        guidance_value = _row_number(guidance, "guidance", where) if guidance else None
        if guidance_value is not None and guidance_value < 0:
            raise UnlearnbenchError(f"{where}: guidance {guidance!r} is negative")
        if not row[at_prompt].strip():
            raise UnlearnbenchError(f"{where}: empty prompt")
        out.append({"prompt": row[at_prompt], "seed": seed_value, "guidance": guidance_value})
    return out


@dataclass
class AuditPlan:
    run: Any  # runner.RunPlan with the reference / oracle / audited cells
    model_source: dict[str, Any]
    reference_source: dict[str, Any]
    prompts: list[dict[str, Any]]
    out: Path
    fingerprint: str = ""
    prompt_file: dict[str, Any] | None = None  # {"path", "sha256"} of --prompts, for the report
    forget_prompt_rows: list[dict[str, Any]] | None = None  # Stable Diffusion: --prompts as the forget prompt set


def record_defaults(source: dict[str, Any]) -> dict[str, Any]:
    """What a result record says about the model it holds: its scenario, forget target and seed — the audit's
    defaults when MODEL is a record, so a record of ``mnist-text-style`` (forget red) is audited for red on that
    card, not for the text track's default (digit 0), and with the seed of its leaderboard row."""
    import json

    if not source.get("record"):
        return {}
    rec = json.loads(Path(source["record"]).read_text())
    sc = rec.get("scenario") or {}
    target = sc.get("forget_target", sc.get("forget_class"))
    return {k: v for k, v in (("scenario", sc.get("name")), ("target", target), ("seed", rec.get("seed")))
            if v is not None}


def zoo_defaults(model: str) -> dict[str, Any]:
    """The card whose default target's oracle is the zoo model ``model`` (``mnist-text-unet-retrain-red`` →
    ``mnist-text-style``): auditing an oracle by name measures it for what it was retrained without, not for
    its track's default card. Empty for anything else (the base, a path, a Stable Diffusion card's oracle)."""
    from benchmark import zoo
    from benchmark.registry import SCENARIOS
    from benchmark.scenarios import load_scenario
    from benchmark.scenarios.setup import setup_for

    if Path(model).exists() or zoo.locate(model) is None:
        return {}
    for name in SCENARIOS.names():
        try:
            sc = load_scenario(name)
            if sc.raw.get("family", "embedded") == "embedded" and \
                    setup_for(sc, None, log=lambda *_: None).oracle_entry()[0] == model:
                return {"scenario": name}
        except UnlearnbenchError:
            continue
    return {}


def plan_audit(model: str, reference: str | None = None, scenario: str | None = None, target: Any = None,
               tier: str = "quick", seed: int | None = None, attacks: list[str] | None = None,
               prompts: str | None = None, allow_pickle: bool = False, device: str = "cpu",
               out: str | Path = "audit", instruments: dict[str, str] | None = None) -> AuditPlan:
    """Load and check everything; write nothing. ``instruments``: measuring files of prompt-set scenarios
    (``{"clip": "ARCH=FILE", "inception": FILE}``). ``scenario``, ``target`` and ``seed`` left None come from
    MODEL when it is a result record (``record_defaults``) or a zoo oracle (``zoo_defaults``: its card), else
    from the model's track (seed 0)."""
    from benchmark import runner, zoo
    from benchmark.atomic import check_out_dir
    from benchmark.models.loading import load_model
    from benchmark.registry import METHODS
    from benchmark.scenarios import load_scenario
    from benchmark.scenarios.setup import setup_for

    out = check_out_dir(out)
    for given, role in ((model, "model"), (reference, "reference")):  # never write into a model under audit
        folder = Path(given).absolute() if given and Path(given).is_dir() else None
        if folder is not None and (out.absolute() == folder or folder in out.absolute().parents):
            raise UnlearnbenchError(f"--out {out} is inside the {role} folder {given}: write the audit elsewhere")
    prompt_rows = read_prompts(prompts) if prompts else []
    ref_model, ref_source = (load_model(reference, allow_pickle, what="reference") if reference else (None, {}))

    def template() -> DiffusionModel:  # only a bare weights file needs an architecture to load into
        if ref_model is not None:
            return ref_model
        if scenario is None:
            raise UnlearnbenchError(f"model {model}: a bare weights file needs --reference (the model it was derived "
                                    "from; for the embedded models --scenario also works) to give its architecture")
        return setup_for(load_scenario(scenario), target).base

    audited, source = load_model(model, allow_pickle, template=template, what="model")
    recorded = record_defaults(source) or (zoo_defaults(model) if scenario is None else {})
    scenario = scenario or recorded.get("scenario")
    target = target if target is not None else recorded.get("target")
    seed = seed if seed is not None else recorded.get("seed", 0)
    track, family = track_of(audited), family_of(audited)
    sc = load_scenario(scenario or FAMILY_SCENARIOS.get(family) or TRACK_SCENARIOS[track])
    if sc.raw.get("family", "embedded") != family:
        raise UnlearnbenchError(f"model {model} is a {family.replace('-', ' ')} model; scenario {sc.name} takes "
                                f"{sc.raw.get('family', 'embedded').replace('-', ' ')} models")
    if sc.track != track:
        raise UnlearnbenchError(f"model {model} is a {track}-track model; scenario {sc.name} is {sc.track}-track")
    if family != "embedded" and ref_model is None:
        raise UnlearnbenchError(f"auditing a {family.replace('-', ' ')} model needs --reference DIR: the pipeline it "
                                "was derived from (there is no shipped base at this scale)")
    instruments = {k: v for k, v in (instruments or {}).items() if v}
    if family != "embedded":  # the prompt file is the scenario's forget prompt set, not an extra table
        target = {"concept": target, "prompts": prompt_rows, **instruments}
        prompt_rows = []
    elif instruments:
        raise UnlearnbenchError("--clip-weights / --inception-weights / --nudity-convention apply to Stable Diffusion "
                                "scenarios; the embedded models are measured with the project's own CLIP and judge")
    if ref_model is not None and track_of(ref_model) != track:
        raise UnlearnbenchError(f"reference {reference} is a {track_of(ref_model)}-track model; the audited one is "
                                f"{track}-track")
    if prompt_rows and track != "text":
        raise UnlearnbenchError(f"--prompts applies to text-to-image models; {model} is a {track}-track model")
    setup = setup_for(sc, target, device, log=lambda *_: None)
    setup.load_instruments()  # a bad judge or measuring file: one error line now, not a failed cell later
    base = ref_model if ref_model is not None else setup.base
    if not ref_source:
        spec = sc.models["base"]
        ref_source = {"kind": "zoo (the scenario's base)", "name": spec["zoo"], "sha256": spec.get("sha256")}
    base_fingerprint = base.fingerprint()  # hashes every weight: computed once (a Stable Diffusion UNet is 3.4 GB)
    check_reference(audited, base, base_fingerprint, source, model)
    fingerprint = audited.fingerprint()
    _LOADED[fingerprint] = audited
    if "audited" not in METHODS:
        METHODS.register("audited", AuditedModel, origin="audit")
    names = ["original"]
    oracle_name, _ = setup.oracle_entry()
    if zoo.locate(oracle_name) is not None:
        names.append("retrain")
    names.append("audited")
    run = runner.plan(sc.path.as_posix() if sc.overlay is None else sc.overlay["path"], names, None, tier, seed,
                      device, out / "records", attacks=attacks, target=setup.target,
                      # an absolute path: `audited` and `./audited` are one model (one record, one cache entry)
                      overrides={"audited": {"source": str(Path(model).absolute()) if Path(model).exists() else model,
                                             "fingerprint": fingerprint,
                                             "allow_pickle": allow_pickle}})
    if ref_model is not None:
        run.base = base
    source = {**source, "fingerprint": fingerprint}
    if hasattr(audited, "component_fingerprints") and hasattr(base, "component_fingerprints"):
        mine, theirs = audited.component_fingerprints(), base.component_fingerprints()
        source["changed_from_reference"] = [k for k in mine if mine[k] != theirs.get(k)]  # e.g. ["unet"]
    ref_source = {**ref_source, "fingerprint": base_fingerprint}
    prompt_file = None
    if prompts:
        from benchmark.models.fingerprint import file_sha256

        prompt_file = {"path": str(Path(prompts).resolve()), "sha256": file_sha256(Path(prompts))}
        tokenizer = getattr(base, "tokenizer", None)  # Stable Diffusion: long I2P prompts are cut, as diffusers does
        rows = target["prompts"] if isinstance(target, dict) else prompt_rows
        if tokenizer is None and hasattr(base, "tokenize"):  # the embedded text models refuse, not cut, long prompts:
            try:                                             # say so now, not after every cell has run
                base.tokenize([r["prompt"] for r in rows])
            except UnlearnbenchError as exc:
                raise UnlearnbenchError(f"--prompts {prompts}: {exc}") from None
        if tokenizer is not None:
            limit = base.context_length
            prompt_file["truncated"] = sum(len(tokenizer(r["prompt"]).input_ids) > limit for r in rows)
            prompt_file["context_length"], prompt_file["n"] = limit, len(rows)
    return AuditPlan(run, source, ref_source, prompt_rows, out, fingerprint, prompt_file,
                     target.get("prompts") if isinstance(target, dict) else None)


def check_reference(audited: DiffusionModel, reference: DiffusionModel, reference_fingerprint: str,
                    source: dict[str, Any], model: str) -> None:
    """The reference must be the model the audited one was derived from: a result record names its base by
    fingerprint, and unlearning never changes a UNet's architecture — anything else compares unrelated models."""
    import json

    if source.get("record"):
        recorded = (json.loads(Path(source["record"]).read_text()).get("model") or {}).get("base_fingerprint")
        if recorded and recorded != reference_fingerprint:
            raise UnlearnbenchError(f"record {model} was unlearned from the model with fingerprint {recorded[:12]}, not "
                                    f"from the reference ({reference_fingerprint[:12]}): pass --reference the model "
                                    "it was derived from")
    a, r = getattr(audited, "unet", None), getattr(reference, "unet", None)
    if a is not None and r is not None:
        differ = sorted(k for k in set(a.config) | set(r.config) if not k.startswith("_")
                        and a.config.get(k) != r.config.get(k))
        if differ:
            k = differ[0]
            raise UnlearnbenchError(f"model {model}: its UNet differs from the reference's in architecture ({k}: "
                                    f"{a.config.get(k)!r} vs {r.config.get(k)!r}{', …' if len(differ) > 1 else ''}); "
                                    "--reference must be the model it was derived from")


def run_audit(plan: AuditPlan, show_progress: bool = True, log: Any = print) -> dict[str, Path]:
    """Execute the cells (cached and resumable) and write report.html / report.md / report.json."""
    import json

    from benchmark import runner
    from reports.audit import write_report

    previous = plan.out / "report.json"
    if previous.is_file():  # removed now: a failed audit must not leave an earlier report beside new records
        try:
            before = (json.loads(previous.read_text()).get("model") or {}).get("fingerprint")
        except (OSError, ValueError):
            before = None
        for stale in ("report.json", "report.md", "report.html"):
            (plan.out / stale).unlink(missing_ok=True)
        shutil.rmtree(plan.out / "figures", ignore_errors=True)
        if before and before != plan.fingerprint:
            log(f"note: {plan.out} held the report of another model ({before[:12]}); removed, this model's replaces "
                f"it when the audit finishes (its records stay in {plan.run.out_dir})")
    paths = runner.execute(plan.run, show_progress=show_progress, log=log, stop_on_failure=True)
    records = [json.loads(p.read_text()) for p in paths]
    failed = [r for r in records if r.get("status", "ok") != "ok"]
    if failed:
        f = failed[0]
        raise UnlearnbenchError(f"the {f['method']['name']} cell failed in {f['failure']['stage']}: "
                                f"{f['failure']['reason']}")
    if plan.prompts:
        plan.prompts = measure_prompts(plan, show_progress)
    return write_report(records, plan)


PROMPT_SAMPLES = 4


def measure_prompts(plan: AuditPlan, show_progress: bool = True) -> list[dict[str, Any]]:
    """Each prompt of the user's file, sampled ``PROMPT_SAMPLES`` times (its seed, its guidance or the
    card's) from the reference, the audited model and the oracle; the share the judge reads as the target."""
    from tqdm.auto import tqdm

    from benchmark import zoo
    from benchmark.sampling import sample_prompts
    from benchmark.scenarios.setup import setup_for

    run = plan.run
    setup = setup_for(run.scenario, run.target, run.device, lambda *_: None)
    if run.base is not None:
        setup.base = run.base
    ctx = setup.attack_context(run.tier, run.seed)
    models = {"reference": setup.base, "audited": _LOADED[plan.fingerprint], "oracle": ctx.reference_models.get("oracle")}
    rows = []
    for row in tqdm(plan.prompts, desc="prompts", disable=not show_progress):
        guidance = row["guidance"] if row["guidance"] is not None else ctx.guidance
        out = {**row, "guidance_used": guidance, "n": PROMPT_SAMPLES}
        for role, model in models.items():
            if model is None:
                continue
            x = sample_prompts(model, [row["prompt"]] * PROMPT_SAMPLES, ctx.sample_steps, guidance, row["seed"],
                               cache_dir=zoo.cache_dir(), show_progress=False)  # cached by weights, like run's
            out[f"{role}_concept_rate"] = float(ctx.shows_concept(x).mean())
        rows.append(out)
    return rows
