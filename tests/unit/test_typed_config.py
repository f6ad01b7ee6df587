"""Typed configuration: method/attack configs and scenario cards are checked by key and type, with
one-line errors; valid input builds exactly what it built before."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pytest

from benchmark import UnlearnbenchError
from benchmark.api import Configurable
from benchmark.scenarios import MNIST_CLASS, load_card, load_scenario
from benchmark.typed_config import ConfigError, coerce_config, coerce_field, describe

REPO = Path(__file__).resolve().parents[2]


class Toy(Configurable):
    name = "toy"

    @dataclass
    class Config:
        lr: float = 1e-4
        steps: int = 10
        grad_clip: float | None = 1.0
        ema_steps: Optional[int] = None  # noqa: UP045 - the typing spelling must work too
        params: Literal["all", "xattn", "noxattn"] = "all"
        use_ema: bool = True
        guide: str = ""
        timesteps: tuple[int, ...] = (20, 50)
        strengths: tuple[float, ...] = (0.5, 1.0)
        pair: tuple[str, str] = ("a", "b")
        names: list[str] = field(default_factory=list)
        extra: dict[str, Any] = field(default_factory=dict)
        anything: Any = None


def test_numeric_strings_become_floats():
    cfg = Toy.make_config({"lr": "1e-5"})
    assert cfg.lr == 1e-5 and isinstance(cfg.lr, float)
    assert Toy.make_config({"lr": "3e-4", "grad_clip": "0.5"}).grad_clip == 0.5


def test_valid_values_are_kept_as_given():
    cfg = Toy.make_config({"lr": 1, "steps": 4, "grad_clip": None, "use_ema": False, "params": "xattn"})
    assert cfg == Toy.Config(lr=1, steps=4, grad_clip=None, use_ema=False, params="xattn")
    assert type(cfg.lr) is int and type(cfg.steps) is int  # an int for a float stays an int (stored records)


def test_bad_float_names_the_key_and_the_type():
    with pytest.raises(ConfigError) as exc:
        Toy.make_config({"lr": "abc"})
    msg = str(exc.value)
    assert msg == "toy config: lr must be a float, got 'abc'"
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, UnlearnbenchError)
    with pytest.raises(ConfigError, match="lr must be a float, got True"):
        Toy.make_config({"lr": True})


def test_ints():
    assert Toy.make_config({"steps": "4"}).steps == 4
    assert Toy.make_config({"steps": 4.0}).steps == 4
    for bad in (4.5, "4.5", "four", True, None):
        with pytest.raises(ConfigError, match="steps must be an integer"):
            Toy.make_config({"steps": bad})


def test_optional_and_bool():
    assert Toy.make_config({"ema_steps": "7"}).ema_steps == 7
    assert Toy.make_config({"ema_steps": "null"}).ema_steps is None
    assert Toy.make_config({"grad_clip": "none"}).grad_clip is None
    with pytest.raises(ConfigError, match=r"ema_steps must be an integer or null, got 'x'"):
        Toy.make_config({"ema_steps": "x"})
    assert Toy.make_config({"use_ema": "no"}).use_ema is False
    assert Toy.make_config({"use_ema": "True"}).use_ema is True
    with pytest.raises(ConfigError, match="use_ema must be a boolean"):
        Toy.make_config({"use_ema": 1})
    with pytest.raises(ConfigError, match="guide must be a string, got 3"):
        Toy.make_config({"guide": 3})


def test_literal_rejects_other_values():
    with pytest.raises(ConfigError) as exc:
        Toy.make_config({"params": "everything"})
    assert str(exc.value) == "toy config: params must be one of 'all', 'xattn', 'noxattn', got 'everything'"


def test_sequences_take_the_declared_container():
    cfg = Toy.make_config(
        {"timesteps": [50, "100"], "strengths": ["1e-1", 1], "pair": ["x", "y"], "names": ("n",)}
    )
    assert (
        cfg.timesteps == (50, 100)
        and cfg.strengths == (0.1, 1)
        and cfg.pair == ("x", "y")
        and cfg.names == ["n"]
    )
    with pytest.raises(ConfigError, match=r"timesteps\[1\] must be an integer, got 'x'"):
        Toy.make_config({"timesteps": [1, "x"]})
    with pytest.raises(ConfigError, match=r"timesteps must be a list of integers, got 5"):
        Toy.make_config({"timesteps": 5})
    with pytest.raises(ConfigError, match=r"pair must be a list of 2 \(a string, a string\)"):
        Toy.make_config({"pair": ["x"]})
    assert Toy.make_config({"extra": {"a": 1}, "anything": object}).extra == {"a": 1}
    with pytest.raises(ConfigError, match="extra must be a mapping"):
        Toy.make_config({"extra": [1]})


def test_unknown_key_suggests_and_lists_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        Toy.make_config({"stepz": 4})
    msg = str(exc.value)
    assert "'stepz'" in msg and "did you mean 'steps'?" in msg and "known: " in msg and "timesteps" in msg
    assert "\n" not in msg


def test_lower_level_helpers():
    assert coerce_field("x", "k", "2", float) == 2.0
    assert coerce_config("x", Toy.Config, {"steps": "3"}) == {"steps": 3}
    assert describe(tuple[float, ...]) == "a list of floats"
    with pytest.raises(ConfigError, match="x: k must be a number, got 'two'"):
        coerce_field("x", "k", "two", float, expected="a number")


def test_every_registered_config_builds_from_every_card_as_before():
    from benchmark.registry import ATTACKS, METHODS

    for scenario in ("mnist-class", "mnist-text-object", "mnist-text-style", "sd-nudity", "sd-object", "sd-style"):
        sc = load_scenario(scenario)
        for tier in sc.tiers:
            for registry, values_for in ((METHODS, sc.method_config), (ATTACKS, sc.attack_config)):
                for name in registry.names():
                    cls, values = registry.get(name), values_for(tier, name)
                    made, direct = cls.make_config(values), cls.Config(**values)
                    as_json = [json.dumps(dataclasses.asdict(c), sort_keys=True) for c in (made, direct)]
                    assert as_json[0] == as_json[1], (scenario, tier, name)


def test_sd_cards_carry_the_methods_stable_diffusion_settings():
    """The SD cards' method blocks resolve to the released SD settings (not the DDPM Config defaults):
    EraseDiff nudity noxattn / Adam 1e-5 / batch 16 / K = 2 / 5 epochs (500 steps at 800 images), objects
    every weight / K = 1 / 2 epochs (100 steps), erasediff-fixed the released SD λ = 1.0, no clip or EMA;
    quick and smoke keep the trained weights, lr and λ and scale only the budget."""
    from benchmark.registry import METHODS

    def config(scenario: str, tier: str, method: str) -> Any:
        return METHODS.get(method).make_config(load_scenario(scenario).method_config(tier, method))

    full = config("sd-nudity", "full", "erasediff")
    assert (full.params, full.lr, full.batch_size, full.inner_steps, full.steps) == ("noxattn", 1e-5, 16, 2, 500)
    assert (full.lambda_mode, full.grad_clip, full.ema_decay, full.inner_lr) == ("adaptive", None, None, 1e-5)
    fixed = config("sd-nudity", "full", "erasediff-fixed")  # inherits `erasediff`, adds λ
    assert (fixed.params, fixed.lr, fixed.batch_size, fixed.lambda_mode, fixed.lam) == ("noxattn", 1e-5, 16, "fixed", 1.0)
    for scenario in ("sd-object", "sd-style"):
        obj = config(scenario, "full", "erasediff-fixed")
        assert (obj.params, obj.lr, obj.batch_size, obj.inner_steps, obj.steps, obj.lam) == ("all", 1e-5, 16, 1, 100, 1.0)
    for scenario in ("sd-nudity", "sd-object", "sd-style"):
        by_tier = {tier: config(scenario, tier, "erasediff-fixed") for tier in ("smoke", "quick", "full")}
        assert len({(c.params, c.lr, c.lam, c.grad_clip, c.ema_decay) for c in by_tier.values()}) == 1, scenario
        assert by_tier["quick"].inner_steps == by_tier["full"].inner_steps
        # SalUn: nudity's 1 epoch at α = 0.1, Imagenette's 5 epochs at α = 0.5 (latent-averaged L_r, as a
        # summed-L_r weight); no condition dropout or clip on SD, as released; erasediff-remap drops no prompt
        salun = config(scenario, "full", "salun")
        steps, alpha = (500, 0.5) if scenario == "sd-object" else (100, 0.1)
        assert (salun.lr, salun.steps, salun.batch_size, salun.alpha * 4 * 64 * 64) == (1e-5, steps, 8, alpha)
        assert (salun.label_dropout, salun.grad_clip) == (0.0, None)
        assert config(scenario, "full", "erasediff-remap").label_dropout == 0.0
        esd = config(scenario, "full", "esd-x" if scenario == "sd-style" else "esd-u")
        assert (esd.steps, esd.lr, esd.negative_guidance) == (1000, 1e-5, 1.0)


# -- scenario cards --------------------------------------------------------------------------------------


def _card(tmp_path: Path, old: str, new: str) -> Path:
    text = MNIST_CLASS.read_text()
    assert old in text
    path = tmp_path / "card.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_valid_card_parses_as_before():
    sc = load_card(MNIST_CLASS)
    assert sc.version == 2 and sc.guidance == 2.0 and isinstance(sc.guidance, float) and sc.forget_class == 0
    assert sc.tiers["quick"].samples_per_class == 100 and sc.metrics == ("classifier", "fidelity")
    assert sc.tier("smoke").methods["finetune"] == {"steps": 4, "batch_size": 32}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("guidance: 2.0", "guidance: two", "sampling.guidance must be a number, got 'two'"),
        ("version: 2", "version: 2.5", "version must be an integer, got 2.5"),
        ("num_classes: 10", "num_classes: ten", "num_classes must be an integer, got 'ten'"),
        ("forget_class: 0", "forget_class: [0]", "forget_class must be an integer, got [0]"),
        (
            "samples_per_class: 8",
            "samples_per_class: many",
            "tiers.smoke.samples_per_class must be an integer",
        ),
        ("ddim_steps: 25", "ddim_steps: 2.5", "tiers.quick.ddim_steps must be an integer, got 2.5"),
        ("    samples_per_class: 8\n", "", "tiers.smoke lacks samples_per_class"),
        ("tiers:\n", "tiers: 3\nx:\n", "tiers must be a mapping, got 3"),
        ("  smoke:\n", "  smoke: 3\n  x:\n", "tiers.smoke must be a mapping, got 3"),
        ("    methods: {}", "    methods: {}\n  bad: [", "cannot read scenario card"),
        ("    methods: {}", "    methods: [a]", "tiers.full.methods must be a mapping, got ['a']"),
        (
            "      salun:     {steps: 4, batch_size: 32}",
            "      salun: 4",
            "tiers.smoke.methods.salun must be a mapping",
        ),
        (
            "attack_budget: {max_seconds: 60}",
            "attack_budget: 60",
            "tiers.smoke.attack_budget must be a mapping",
        ),
        (
            "metrics: [classifier, fidelity]",
            "metrics: classifier",
            "metrics must be a list of names, got 'classifier'",
        ),
        ("attacks: [loss_threshold,", "attacks: [3,", "attacks[0] must be a name (a string), got 3"),
        ("default_methods: [original,", "default_methods: [[original],", "default_methods[0] must be a name"),
    ],
)
def test_bad_card_fields_are_one_line_errors(tmp_path, old, new, message):
    path = _card(tmp_path, old, new)
    with pytest.raises(UnlearnbenchError) as exc:
        load_card(path)
    msg = str(exc.value)
    assert (
        msg.startswith((f"scenario card {path}: ", f"cannot read scenario card {path}: ")) and message in msg
    )
    assert "\n" not in msg


def test_cli_refuses_a_bad_card_with_one_line(tmp_path):
    path = _card(tmp_path, "guidance: 2.0", "guidance: two")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.cli",
            "run",
            "--scenario",
            str(path),
            "--tier",
            "smoke",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("unlearnbench: error:"), proc.stderr
    assert "sampling.guidance must be a number, got 'two'" in lines[0]
    assert not (tmp_path / "r").exists()


def test_cli_refuses_a_mistyped_card_config_with_one_line(tmp_path, capsys):
    from benchmark.cli import main

    path = _card(
        tmp_path,
        "finetune:  {steps: 100, batch_size: 64, lr: 1.0e-3}",
        "finetune:  {steps: 100, batch_size: 64, lr: fast}",
    )
    code = main(
        [
            "run",
            "--scenario",
            str(path),
            "--tier",
            "quick",
            "--methods",
            "finetune",
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ]
    )
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("unlearnbench: error:")
    assert "lr must be a float, got 'fast'" in lines[0]
