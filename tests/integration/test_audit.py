"""`unlearnbench audit` on real models of the shipped zoo: verdicts, safe loading, bad input, the report in a browser."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from benchmark import zoo
from benchmark.cli import main

EVIL_NAME = '<img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def base_audit(tmp_path_factory) -> Path:
    """The original model itself, audited from a folder whose name is an HTML injection attempt."""
    root = tmp_path_factory.mktemp("audit")
    model = root / EVIL_NAME
    shutil.copytree(zoo.locate("mnist-unet-base"), model)
    out = root / "out"
    assert main(["audit", str(model), "--tier", "smoke", "--attacks", "loss_threshold,relearning", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def test_the_original_is_distinguishable_from_the_oracle(base_audit):
    report = json.loads((base_audit / "report.json").read_text())
    assert report["schema_version"] == 1 and report["kind"] == "unlearnbench.audit"
    assert report["model"]["fingerprint"] == report["reference"]["fingerprint"]  # it *is* the original
    assert report["oracle"]["name"].startswith("zoo:mnist-unet-retrain-c0")
    forget = next(m for m in report["metrics"] if m["metric"] == "forget_accuracy")
    assert forget["verdict"]["distinguishable"] and forget["audited"]["value"] >= 0.75
    assert report["verdict"]["distinguishable"] >= 1 and report["verdict"]["against"] == "oracle"
    attacks = {(a["attack"], a["value"]) for a in report["attacks"]}
    assert ("loss_threshold", "auc_forget") in attacks and ("relearning", "relearn_steps") in attacks
    assert (base_audit / "report.md").is_file() and (base_audit / "figures" / "membership_ROC.png").is_file()


def test_the_oracle_is_not_distinguishable_from_itself(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)  # the folder holds another model's report: removed, not mixed in
    (out / "report.json").write_text(json.dumps({"model": {"fingerprint": "f" * 64}}))
    (out / "figures" / "samples_oracle_of_another_model.png").write_bytes(b"png")
    assert main(["audit", "mnist-unet-retrain-c0", "--tier", "smoke", "--attacks", "none", "--out", str(out),
                 "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"]["distinguishable"] == 0 and report["verdict"]["judged"] >= 3
    assert report["verdict"]["complete"] and not report["verdict"]["concern"]
    log = capsys.readouterr().out
    assert "no measurable trace" in log and "held the report of another model (ffffffffffff); removed" in log
    assert not (out / "figures" / "samples_oracle_of_another_model.png").exists()


def test_a_result_record_with_saved_weights_is_audited_for_its_own_target_and_seed(tmp_path):
    runs = tmp_path / "runs"
    assert main(["run", "--tier", "smoke", "--methods", "finetune", "--forget-class", "3", "--seeds", "1",
                 "--attacks", "none", "--save-weights", "--out", str(runs), "--no-progress"]) == 0
    record = next(runs.glob("*finetune*.json"))
    assert record.with_suffix(".weights").is_dir()
    assert main(["audit", str(record), "--tier", "smoke", "--attacks", "none", "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["model"]["fingerprint"] == json.loads(record.read_text())["model"]["fingerprint"]
    assert "result record (finetune, seed 1)" in report["model"]["kind"]
    # audited for what the record erased (class 3, not the card's default 0) with the record's seed
    assert report["scenario"]["forget_class"] == 3 and report["seed"] == 1
    # against a reference it was not unlearned from: refused (the record names its base by fingerprint)
    assert main(["audit", str(record), "--reference", "mnist-unet-retrain-c0", "--tier", "smoke", "--attacks", "none",
                 "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert not (tmp_path / "b").exists()


def test_a_zoo_oracle_is_audited_on_the_card_it_is_the_oracle_of():
    from benchmark.audit import zoo_defaults

    if zoo.locate("mnist-text-unet-retrain-red") is None:
        pytest.skip("mnist-text-unet-retrain-red is not shipped")
    assert zoo_defaults("mnist-text-unet-retrain-red") == {"scenario": "mnist-text-style"}  # not digit 0
    assert zoo_defaults("mnist-text-unet-retrain-d0") == {"scenario": "mnist-text-object"}
    assert zoo_defaults("mnist-unet-retrain-c0") == {"scenario": "mnist-class"}
    assert zoo_defaults("mnist-text-unet-base") == {} and zoo_defaults("no-such-model") == {}


class _Evil:
    """Unpickling this would write a file: it must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unlearnbench: error:"), err
    return err[0]


def test_pickles_are_refused_and_a_malicious_one_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"unet.weight": _Evil(marker)}))
    out = tmp_path / "out"
    assert main(["audit", str(evil), "--reference", "mnist-unet-base", "--out", str(out)]) == 2
    assert "pickle files can run code" in _one_error(capsys)
    assert main(["audit", str(evil), "--reference", "mnist-unet-base", "--allow-pickle", "--out", str(out)]) == 2
    assert "refused" in _one_error(capsys)
    import torch

    zipped = tmp_path / "evil.pt"  # torch.save's zip format: torch's own message advises weights_only=False
    torch.save({"unet.weight": _Evil(marker)}, zipped)
    assert main(["audit", str(zipped), "--reference", "mnist-unet-base", "--allow-pickle", "--out", str(out)]) == 2
    message = _one_error(capsys)  # one line: what was refused, not torch's advice to load it unsafely
    assert "refused, nothing in it was run" in message and "GLOBAL" in message and "weights_only" not in message
    assert not marker.exists() and not out.exists()


def test_a_plain_state_dict_pickle_loads_weights_only(tmp_path):
    import torch

    from benchmark.models.loading import load_model

    base = zoo.load_unet("mnist-unet-base")
    ckpt = tmp_path / "weights.pt"
    torch.save(base.unet.state_dict(), ckpt)
    model, source = load_model(str(ckpt), allow_pickle=True, template=base)
    assert model.fingerprint() == base.fingerprint() and "weights_only" in source["kind"]


def _pickled_copy(source: Path, folder: Path) -> None:
    """``source`` (a zoo folder) with its UNet weights saved as a plain state-dict pickle instead."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(source, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), weights.with_suffix(".bin"))
    weights.unlink()


@pytest.mark.parametrize("name", ["mnist-unet-base", "mnist-text-unet-base"])
def test_allow_pickle_loads_pickled_folders_weights_only(name, tmp_path):
    from benchmark import UnlearnbenchError
    from benchmark.models.loading import load_model

    folder = tmp_path / "model"
    _pickled_copy(zoo.locate(name), folder)
    with pytest.raises(UnlearnbenchError, match="pickle files can run code"):
        load_model(str(folder))
    model, source = load_model(str(folder), allow_pickle=True)
    assert model.fingerprint() == zoo.load_unet(name).fingerprint()
    assert "pickled weights read weights-only" in source["kind"]


@pytest.mark.parametrize("case, message", [
    ("empty", "not a model folder"),
    ("no-scheduler", "missing component scheduler/"),
    ("wrong-track", "is a class-track model; scenario mnist-text-object is text-track"),
    ("bad-prompts", "prompt file"),
    ("pipeline", "missing component"),
    ("bad-unet-config", "unet/config.json is not valid JSON"),
    ("corrupt-weights", "not a readable safetensors file"),
    ("single-file-checkpoint", "a single-file (CompVis / A1111) Stable Diffusion checkpoint; convert it"),
    ("pickled-text-unet", "pickle files can run code"),
    ("header-only-prompts", "no prompts below the header"),
    ("record-without-weights", "are not beside it (weights are not committed)"),
    # the libraries would fill a missing tensor with random values: the class embedding is what unlearning edits
    ("missing-tensor", "1 tensor(s) missing from its weights (class_embedding.weight)"),
    ("weights-of-another-shape", "class-conditional UNet"),
    ("bad-class-count", "cannot load a class-conditional UNet"),
    ("bad-layer-count", "class-conditional UNet"),
    ("v-prediction", "only ε-prediction models are supported"),
    ("text-encoder-not-an-object", "text_encoder must be an object naming the zoo CLIP"),
    ("prompt-too-long", "tokens long; the text encoder's context is 32 tokens"),  # at plan time, not after the cells
])
def test_bad_input_is_one_line_and_writes_nothing(case, message, tmp_path, capsys):
    folder = tmp_path / "model"
    args = [str(folder)]
    if case == "empty":
        folder.mkdir()
    elif case == "bad-unet-config":  # a diffusers folder (no unlearnbench.json) whose config is not JSON
        shutil.copytree(zoo.locate("mnist-unet-base"), folder)
        (folder / "unlearnbench.json").unlink()
        (folder / "unet" / "config.json").write_text('{"_class_name": "UNet2DModel",')
    elif case == "corrupt-weights":  # a bare weights file cut short
        weights = zoo.locate("mnist-unet-base") / "unet" / "diffusion_pytorch_model.safetensors"
        folder = tmp_path / "model.safetensors"
        folder.write_bytes(weights.read_bytes()[:1000])
        args = [str(folder), "--reference", "mnist-unet-base"]
    elif case == "single-file-checkpoint":  # CompVis key names: the UNet under model.diffusion_model.
        import torch
        from safetensors.torch import save_file

        folder = tmp_path / "sd-v1-4.safetensors"
        save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2)}, folder)
        args = [str(folder), "--reference", "mnist-unet-base"]
    elif case == "pickled-text-unet":  # pickled weights are refused without --allow-pickle, text UNets too
        _pickled_copy(zoo.locate("mnist-text-unet-base"), folder)
    elif case == "no-scheduler":
        shutil.copytree(zoo.locate("mnist-unet-base") / "unet", folder / "unet")
    elif case == "pipeline":
        folder.mkdir()
        (folder / "model_index.json").write_text("{}")
    elif case == "record-without-weights":  # a committed record: it names its weights, which stay local
        record = next((Path(__file__).parents[2] / "docs" / "records" / "mnist-text-object-v3-quick").glob(
            "*__esd-u__seed0__*.json"))
        shutil.copy(record, tmp_path / record.name)
        args = [str(tmp_path / record.name)]
    elif case in ("missing-tensor", "weights-of-another-shape", "bad-class-count", "bad-layer-count", "v-prediction"):
        shutil.copytree(zoo.locate("mnist-unet-base"), folder)
        _break_class_folder(folder, case)
    elif case == "prompt-too-long":
        (tmp_path / "p.csv").write_text("prompt,seed\nzero in red,1\n" + "zero written in red ink " * 8 + ",2\n")
        args = ["mnist-text-unet-retrain-d0", "--prompts", str(tmp_path / "p.csv")]
    elif case == "text-encoder-not-an-object":
        shutil.copytree(zoo.locate("mnist-text-unet-base"), folder)
        meta = json.loads((folder / "unlearnbench.json").read_text())
        (folder / "unlearnbench.json").write_text(json.dumps({**meta, "text_encoder": "x"}))
    else:
        shutil.copytree(zoo.locate("mnist-unet-base"), folder)
        if case == "wrong-track":
            args += ["--scenario", "mnist-text-object"]
        else:
            (tmp_path / "p.csv").write_text("prompt,seed\n" if case == "header-only-prompts" else "text,seed\nhello,1\n")
            args += ["--prompts", str(tmp_path / "p.csv")]
    out = tmp_path / "out"
    assert main(["audit", *args, "--out", str(out)]) == 2
    assert message in _one_error(capsys)
    assert not out.exists()


def _break_class_folder(folder: Path, case: str) -> None:
    from safetensors.torch import load_file, save_file

    def edit(file: Path, **changes) -> None:
        file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))

    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    if case == "missing-tensor":
        state = load_file(weights)
        del state["class_embedding.weight"]
        save_file(state, weights, metadata={"format": "pt"})
    elif case == "weights-of-another-shape":
        config = json.loads((folder / "unet" / "config.json").read_text())
        edit(folder / "unet" / "config.json", block_out_channels=[2 * c for c in config["block_out_channels"]])
    elif case == "bad-class-count":
        edit(folder / "unlearnbench.json", num_classes="ten")
    elif case == "bad-layer-count":
        edit(folder / "unet" / "config.json", layers_per_block="two")
    elif case == "v-prediction":
        edit(folder / "scheduler" / "scheduler_config.json", prediction_type="v_prediction")


def test_another_noise_schedule_is_another_model(tmp_path):
    """The same weights under another schedule draw other images: another fingerprint (no shared cached
    samples or attack results); the default schedule keeps the zoo's fingerprint."""
    from benchmark.models.class_unet import ClassConditionalUNet

    folder = tmp_path / "m"
    shutil.copytree(zoo.locate("mnist-unet-base"), folder)
    base = zoo.load_unet("mnist-unet-base").fingerprint()
    assert ClassConditionalUNet.from_pretrained(folder).fingerprint() == base
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "beta_end": 0.06}))
    assert ClassConditionalUNet.from_pretrained(folder).fingerprint() != base


def test_report_escapes_user_strings(base_audit):
    text = (base_audit / "report.html").read_text()
    assert EVIL_NAME not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    md = (base_audit / "report.md").read_text()  # no HTML gets through; plain quotes stay readable
    assert EVIL_NAME not in md and "&lt;img src=x onerror=alert(1)>" in md
    assert "&#x27;" not in md and "()" not in md
    record = json.loads(next((base_audit / "records").rglob("*__audited__*.json")).read_text())
    assert any("identical to the reference's" in w for w in record.get("warnings") or [])
    report = json.loads((base_audit / "report.json").read_text())  # and the reviewer reads it in the report
    assert any("identical to the reference's" in w for w in report["warnings"])
    assert "**Warning:** the audited model's weights are identical" in md


def test_report_renders_in_a_real_browser(base_audit):
    from tests.browser import open_report

    seen = open_report(base_audit / "report.html", "#model-path")
    assert not seen["errors"] and not seen["dialogs"]
    assert seen["offline"], seen["requests"]
    assert EVIL_NAME in seen["text"]  # shown as text, executed nothing
    assert len(seen["images"]) >= 4 and all(done and width > 0 for done, width in seen["images"]), seen["images"]
    assert seen["attack_rows"] >= 3


def test_the_embedded_text_model_audited_for_a_digit_it_still_draws(tmp_path):
    """Real signal on the text track: the original text-to-image model, audited for digit 0, is flagged
    against the retrained oracle on its forget metrics (and they survive Holm's correction); a prompt file's
    "zero" prompt draws a zero for the original and not for the oracle, and a ``<script>`` prompt is text."""
    prompts = tmp_path / "p.csv"
    prompts.write_text('prompt,seed\n"zero written in red ink",1\n"<script>alert(1)</script> seven in blue",2\n')
    out = tmp_path / "out"
    assert main(["audit", "mnist-text-unet-base", "--tier", "smoke", "--attacks", "none", "--prompts", str(prompts),
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["scenario"]["name"] == "mnist-text-object" and report["oracle"]["name"].endswith("retrain-d0")
    flagged = {m["metric"] for m in report["metrics"] if (m.get("verdict") or {}).get("distinguishable")}
    assert {"forget_accuracy", "forget_accuracy_paraphrase"} <= flagged
    assert {"forget_accuracy", "forget_accuracy_paraphrase"} <= set(report["verdict"]["holm"]["names"])
    zero = next(p for p in report["prompts"] if p["prompt"].startswith("zero"))
    assert zero["reference_concept_rate"] >= 0.75 and zero["oracle_concept_rate"] <= 0.5
    html = (out / "report.html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; seven in blue" in html
