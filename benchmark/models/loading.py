"""Loading a model someone hands us, safely: zoo names, diffusers folders, result records, weight files.

Safetensors only by default. A pickle file (``.ckpt``, ``.bin``, ``.pt``, ``.pth``, or a folder — class UNet,
text UNet or Stable Diffusion pipeline — whose weights are ``*.bin``) is refused with one line unless
``allow_pickle``; even then it is read with ``torch.load(weights_only=True)``, which unpickles tensors and plain containers only,
so a malicious pickle's code never runs (it fails to load instead). A bare weights file (safetensors or
pickle) holds a UNet state dict and is loaded into the architecture of ``template`` (the reference
model), refusing any missing, unexpected or mis-shaped tensor.

Every load returns its provenance (what was loaded, from where, the sha256 of the weights file) for the
audit report; the model's fingerprint is computed by the caller.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

from benchmark import UnlearnbenchError
from benchmark.api import DiffusionModel

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")


def load_model(spec: str, allow_pickle: bool = False, template: Any = None,
               what: str = "model") -> tuple[DiffusionModel, dict[str, Any]]:
    """``spec``: a zoo name, a folder (ours or a diffusers UNet folder), a result record (``.json``) with
    saved weights, or a weights file loaded into ``template`` (a model, or a callable returning one, called
    only when needed). Returns (model, provenance)."""
    from benchmark import zoo
    from benchmark.models.fingerprint import file_sha256

    path = Path(spec)
    if path.exists():
        path = path.absolute()  # provenance names the file itself, whatever the working folder
    else:
        if spec in zoo.zoo_names():
            folder = zoo.locate(spec)
            if folder is None:
                raise UnlearnbenchError(f"{what} {spec!r}: zoo entry is not shipped or cached (build it with "
                                        f"`unlearnbench zoo train {spec}`)")
            return zoo.load_unet(spec), {"kind": "zoo", "name": spec, "path": str(folder),
                                         "sha256": zoo.read_manifest(folder).get("sha256")}
        raise UnlearnbenchError(f"{what} {spec!r}: no such file, folder or zoo entry")
    if path.is_dir():
        return _load_folder(path, allow_pickle, what)
    if path.suffix == ".json":
        return _load_record(path, allow_pickle, what)
    if path.suffix == ".safetensors":
        state = _load_safetensors(path, what)
        return _into_template(state, template, path, what), {"kind": "safetensors state dict", "path": str(path),
                                                             "sha256": file_sha256(path)}
    if path.suffix in PICKLE_SUFFIXES:
        state = _load_pickle(path, allow_pickle, what)
        return _into_template(state, template, path, what), {"kind": "pickle state dict (weights_only)",
                                                             "path": str(path), "sha256": file_sha256(path)}
    raise UnlearnbenchError(f"{what} {path}: unknown kind of file (want a folder, a .safetensors or a result "
                            "record .json)")


LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, TypeError, RuntimeError,
                                                AttributeError, NotImplementedError, json.JSONDecodeError)
"""What diffusers / transformers raise on a malformed component (bad config values, weights of another
shape, an unknown schedule): turned into one ``UnlearnbenchError`` line by ``strict_from_pretrained``."""


def strict_from_pretrained(cls: Any, folder: Path, what: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(folder, **kwargs)`` (a diffusers or transformers model class) that refuses a
    checkpoint lacking any of the model's tensors. The libraries fill a missing tensor with random values and
    only warn, so an audit would judge a model that is not the one released. Tensors of the wrong shape and
    malformed configs are refused too; extra tensors the model does not use are ignored (never loaded, so
    never evaluated)."""
    from safetensors import SafetensorError

    try:
        model, info = cls.from_pretrained(folder, output_loading_info=True, **kwargs)
    except (*LOAD_ERRORS, SafetensorError) as exc:
        raise UnlearnbenchError(f"{what} {folder}: cannot load it ({first_line(exc)})") from exc
    for label, key in (("missing from its weights", "missing_keys"), ("of the wrong shape", "mismatched_keys")):
        keys = sorted(str(k) for k in info.get(key) or [])
        if keys:
            raise UnlearnbenchError(f"{what} {folder}: {len(keys)} tensor(s) {label} ({', '.join(keys[:3])}"
                                    f"{', …' if len(keys) > 3 else ''}); the libraries would fill them with random "
                                    "values, so this is not a complete model")
    if info.get("error_msgs"):
        raise UnlearnbenchError(f"{what} {folder}: cannot load it ({first_line(RuntimeError(info['error_msgs'][0]))})")
    return model


def _load_safetensors(path: Path, what: str) -> dict[str, Any]:
    """A bare safetensors state dict; a truncated or corrupt file is one error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnlearnbenchError(f"{what} {path}: not a readable safetensors file ({first_line(exc)})") from exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_pickle(path: Path, allow_pickle: bool, what: str) -> dict[str, Any]:
    if not allow_pickle:
        raise UnlearnbenchError(f"{what} {path}: pickle files can run code when loaded; convert it to safetensors, "
                                "or pass --allow-pickle to read it with torch.load(weights_only=True)")
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # an old (non-zip) pickle makes torch warn about the protocol: not ours
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as exc:
        raise UnlearnbenchError(f"{what} {path}: refused, nothing in it was run — it holds more than tensors "
                                f"({_refusal_reason(exc)})") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UnlearnbenchError(f"{what} {path}: expected a state dict of tensors, got {type(obj).__name__}")
    return obj


def _refusal_reason(exc: BaseException) -> str:
    """What the weights-only unpickler objected to (``… unsupported GLOBAL posix.system …``), without torch's
    advice to re-run with ``weights_only=False`` — the one thing an auditor must not do."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    found = next((line for line in lines if re.search(r"GLOBAL|[Uu]nsupported|not an allowed", line)), None)
    found = found or next((line for line in lines if "weights_only" not in line), None) or type(exc).__name__
    return found.replace("WeightsUnpickler error: ", "")[:200]


def _into_template(state: dict[str, Any], template: Any, path: Path, what: str) -> DiffusionModel:
    if template is not None and not isinstance(template, DiffusionModel):
        template = template()  # a callable that builds the architecture on demand
    if template is None:
        raise UnlearnbenchError(f"{what} {path}: a bare weights file needs a reference model whose architecture "
                                "it fits (pass --reference)")
    if any(str(k).startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")) for k in state):
        raise UnlearnbenchError(f"{what} {path}: a single-file (CompVis / A1111) Stable Diffusion checkpoint; convert "
                                "it to a diffusers pipeline folder (diffusers' scripts/convert_original_stable_"
                                "diffusion_to_diffusers.py) and audit the folder")
    model = template.clone()
    unet = model.modules()["unet"]
    own = unet.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        detail = "; ".join(f"{label} {keys[:3]}{'…' if len(keys) > 3 else ''}" for label, keys in
                           (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)) if keys)
        raise UnlearnbenchError(f"{what} {path}: does not fit the reference architecture ({detail})")
    unet.load_state_dict(state, strict=True)
    return model


def _load_folder(path: Path, allow_pickle: bool, what: str) -> tuple[DiffusionModel, dict[str, Any]]:
    from benchmark.models.fingerprint import file_sha256

    if (path / "model_index.json").is_file():  # a diffusers Stable Diffusion pipeline folder
        from benchmark.models.stable_diffusion import StableDiffusionModel

        # safetensors (pickles only with allow_pickle, read weights-only); one-line errors for what is missing
        model = StableDiffusionModel.from_pretrained(path, allow_pickle=allow_pickle)
        files = model.weight_files  # per component, the files it was loaded from
        pickled = [comp for comp, fs in files.items() if any(f.suffix != ".safetensors" for f in fs)]
        unet = [file_sha256(f) for f in files["unet"]]  # one file, or the shards of a sharded checkpoint
        sha = unet[0] if len(unet) == 1 else hashlib.sha256("".join(unet).encode()).hexdigest()
        return model, {"kind": "folder (Stable Diffusion pipeline" + (
                           f"; {', '.join(pickled)} pickled, read weights-only)" if pickled else "; safetensors)"),
                       "path": str(path), "sha256": sha,
                       "files": {comp: [f.name for f in fs] for comp, fs in files.items()}}
    unet_dir = path / "unet"
    if not unet_dir.is_dir() or not (unet_dir / "config.json").is_file():
        raise UnlearnbenchError(f"{what} {path}: not a model folder (expected unet/config.json and scheduler/, as "
                                "unlearnbench and diffusers write them)")
    if not (path / "scheduler").is_dir():
        raise UnlearnbenchError(f"{what} {path}: missing component scheduler/ (the noise schedule)")
    meta_file = path / "unlearnbench.json"
    try:
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    except json.JSONDecodeError as exc:
        raise UnlearnbenchError(f"{what} {path}: unlearnbench.json is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise UnlearnbenchError(f"{what} {path}: unlearnbench.json is not a JSON object")
    kind = meta.get("kind") or _guess_kind(unet_dir, what)
    weights = unet_dir / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        pickled = unet_dir / "diffusion_pytorch_model.bin"
        if pickled.is_file():
            return _load_pickled_folder(path, pickled, kind, meta, allow_pickle, what)
        raise UnlearnbenchError(f"{what} {path}: missing component unet/diffusion_pytorch_model.safetensors")
    if kind == "text_unet":
        from benchmark.models.text_unet import TextConditionalUNet

        model: DiffusionModel = TextConditionalUNet.from_pretrained(path)
    elif kind == "class_unet":
        from benchmark.models.class_unet import ClassConditionalUNet

        model = ClassConditionalUNet.from_pretrained(path)
    else:
        raise UnlearnbenchError(f"{what} {path}: unknown model kind {kind!r} (class_unet or text_unet)")
    return model, {"kind": f"folder ({kind})", "path": str(path), "sha256": file_sha256(weights)}


def _guess_kind(unet_dir: Path, what: str = "model") -> str:
    file = unet_dir / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnlearnbenchError(f"{what} {unet_dir.parent}: unet/config.json is not valid JSON "
                                f"({first_line(exc)})") from exc
    if not isinstance(config, dict):
        raise UnlearnbenchError(f"{what} {unet_dir.parent}: unet/config.json is not a JSON object (a diffusers UNet "
                                "config)")
    cls = config.get("_class_name", "")
    return {"UNet2DModel": "class_unet", "UNet2DConditionModel": "text_unet"}.get(cls, cls or "unknown")


def _load_pickled_folder(path: Path, pickled: Path, kind: str, meta: dict[str, Any], allow_pickle: bool,
                         what: str) -> tuple[DiffusionModel, dict[str, Any]]:
    """A class or text UNet folder whose weights are a pickle: built from its config, weights read
    weights-only (``_load_pickle``) and loaded strictly."""
    from benchmark.models.fingerprint import file_sha256

    state = _load_pickle(pickled, allow_pickle, what)
    if kind not in ("class_unet", "text_unet"):
        raise UnlearnbenchError(f"{what} {path}: unknown model kind {kind!r} (class_unet or text_unet)")
    from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel

    try:
        scheduler = DDPMScheduler.from_pretrained(path / "scheduler")
        if kind == "class_unet":
            from benchmark.models.class_unet import ClassConditionalUNet

            unet = UNet2DModel.from_config(UNet2DModel.load_config(path / "unet"))
            template: DiffusionModel = ClassConditionalUNet(unet, scheduler, unet.config.num_class_embeds - 1)
        else:
            from benchmark.models.text_unet import TextConditionalUNet
            from benchmark.zoo import load_clip_text_states

            source = meta.get("text_encoder") or {}
            if not source.get("zoo"):
                raise UnlearnbenchError(f"{what} {path}: unlearnbench.json names no text encoder (a text UNet folder "
                                        "references its zoo CLIP there)")
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(path / "unet"))
            template = TextConditionalUNet(unet, scheduler, load_clip_text_states(source["zoo"], source.get("sha256")),
                                           source)
    except LOAD_ERRORS as exc:
        raise UnlearnbenchError(f"{what} {path}: cannot build the {kind} from its config ({first_line(exc)})") from exc
    model = _into_template(state, template, pickled, what)
    return model, {"kind": f"folder ({kind}, pickled weights read weights-only)", "path": str(path),
                   "sha256": file_sha256(pickled)}


def _load_record(path: Path, allow_pickle: bool, what: str) -> tuple[DiffusionModel, dict[str, Any]]:
    from benchmark.results import read_record

    try:
        rec = read_record(path)
    except UnlearnbenchError as exc:
        raise UnlearnbenchError(f"{what} {exc}") from exc
    if rec is None:
        raise UnlearnbenchError(f"{what} {path}: not an unlearnbench result record")
    weights = (rec.get("artifacts") or {}).get("weights")
    if not weights:
        raise UnlearnbenchError(f"{what} {path}: the record kept no weights; rerun its cell with "
                                "`unlearnbench run --save-weights`")
    if not (path.parent / weights).exists():  # committed records ship without their weights (.gitignore)
        raise UnlearnbenchError(f"{what} {path}: its saved weights {weights} are not beside it (weights are not "
                                "committed); rerun its cell with `unlearnbench run --save-weights --out "
                                f"{path.parent}`")
    model, prov = _load_folder(path.parent / weights, allow_pickle, what)
    expected = (rec.get("model") or {}).get("fingerprint")
    if expected and model.fingerprint() != expected:
        raise UnlearnbenchError(f"{what} {path}: the saved weights do not match the record's model fingerprint")
    return model, {**prov, "kind": f"result record ({rec['method']['name']}, seed {rec['seed']})", "record": str(path)}
