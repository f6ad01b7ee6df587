"""`unlearnbench compare`: a re-run's records against stored ones, measured fields only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark import UnlearnbenchError
from benchmark.cli import main
from benchmark.compare import compare_records

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "records" / "mnist-text-object-v3-quick"


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    names = sorted(p.name for p in PUBLISHED.glob("*__seed0__*.json"))[:3]
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        for n in names:
            shutil.copy(PUBLISHED / n, d / n)
    return a, b, names


def _edit(path: Path, fn) -> None:
    rec = json.loads(path.read_text())
    fn(rec)
    path.write_text(json.dumps(rec))


def test_identical_records_reproduce_and_provenance_is_ignored(folders, capsys) -> None:
    a, b, names = folders

    def new_provenance(rec):
        rec["created_utc"] = "2030-01-01T00:00:00+00:00"
        rec["harness"]["commit"] = "0" * 40
        rec["timings"] = {k: v * 2 for k, v in rec["timings"].items()}
        rec["compute"]["seconds"] += 10
        rec["environment"]["platform"] = "elsewhere"
        rec["method_stats"]["loop_seconds"] = 1.0

    _edit(b / names[0], new_provenance)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "compared 3 record pair(s)" in out and "3 identical, 0 differ" in out


def test_a_changed_value_ci_or_fingerprint_is_reported_with_both_sides(folders, capsys) -> None:
    a, b, names = folders
    rec = json.loads((a / names[1]).read_text())
    attack = next(k for k, v in rec["attacks"].items() if v.get("values"))
    value = next(iter(rec["attacks"][attack]["values"]))

    def perturb(r):
        r["metrics"]["forget_accuracy"]["value"] += 0.025
        r["attacks"][attack]["values"][value]["ci"][0] -= 1e-3
        r["model"]["fingerprint"] = "f" * 64

    _edit(b / names[1], perturb)
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "2 identical, 1 differ" in out
    for fieldname in ("metrics.forget_accuracy.value", f"attacks.{attack}.{value}.ci", "model.fingerprint"):
        assert fieldname in out
    cmp = compare_records(a, b)
    assert {d.field for d in cmp.differences} == {"metrics.forget_accuracy.value",
                                                 f"attacks.{attack}.{value}.ci", "model.fingerprint"}
    forget = next(d for d in cmp.differences if d.field == "metrics.forget_accuracy.value")
    assert forget.b == pytest.approx(forget.a + 0.025)


def test_tolerance_accepts_last_bit_noise_but_not_a_real_change(folders) -> None:
    a, b, names = folders
    _edit(b / names[0], lambda r: r["metrics"]["retain_accuracy"].update(value=r["metrics"]["retain_accuracy"]["value"] + 1e-9))
    assert not compare_records(a, b).identical
    assert compare_records(a, b, atol=1e-6).identical
    _edit(b / names[0], lambda r: r["metrics"]["retain_accuracy"].update(value=r["metrics"]["retain_accuracy"]["value"] + 0.01))
    assert not compare_records(a, b, atol=1e-6).identical


def test_unpaired_records_are_listed_not_failed_and_nothing_paired_is_an_error(folders, tmp_path, capsys) -> None:
    a, b, names = folders
    (b / names[2]).unlink()
    assert main(["compare", str(a), str(b)]) == 0
    assert "only in A (1" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(a), str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unlearnbench: error: no records in common") and err.count("\n") == 1
    (empty / "x.json").write_text("{not json")
    with pytest.raises(UnlearnbenchError, match="not a readable JSON"):
        compare_records(a, empty)
    assert main(["compare", str(a / names[0]), str(tmp_path / "missing.json")]) == 2


def test_two_record_files_compare_whatever_their_names(folders) -> None:
    a, _, names = folders
    cmp = compare_records(a / names[0], a / names[1])
    assert cmp.paired == ["record"] and "model.fingerprint" in {d.field for d in cmp.differences}
    assert compare_records(a / names[0], a / names[0]).identical


def test_extras_are_compared_leaf_by_leaf_and_a_missing_field_is_named(folders) -> None:
    a, b, names = folders

    def edit(r):
        r["attacks"]["relearning"]["values"]["relearn_steps"]["extra"]["curve"][0]["forget_accuracy"] += 0.0625
        r["attacks"]["relearning"]["values"]["relearn_steps"]["extra"]["new_key"] = 1

    _edit(b / names[0], edit)
    diffs = {d.field: (d.a, d.b) for d in compare_records(a, b).differences}
    assert set(diffs) == {"attacks.relearning.relearn_steps.extra.curve[0].forget_accuracy",
                          "attacks.relearning.relearn_steps.extra.new_key"}
    assert diffs["attacks.relearning.relearn_steps.extra.new_key"] == ("(absent)", 1)
