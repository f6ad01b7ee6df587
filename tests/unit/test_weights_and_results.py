import json
import shutil

import pytest

from benchmark import UnlearnbenchError
from benchmark.models.fingerprint import WeightHashMismatch, file_sha256
from benchmark.results import SCHEMA_VERSION, load_records, new_record, validate_record, write_record
from benchmark.zoo import ZOO_DIR, load_judge, read_manifest


def test_shipped_judge_matches_card_hash():
    from benchmark.scenarios import load_scenario

    card = load_scenario("mnist-class")
    judge = load_judge("mnist-judge", card.models["judge"]["sha256"])
    assert judge.sha256 == card.models["judge"]["sha256"]
    assert read_manifest(ZOO_DIR / "mnist-judge")["quality"]["heldout_accuracy"] >= 0.97


def test_tampered_weights_are_refused(tmp_path):
    from benchmark.judges import ClassifierJudge

    src = ZOO_DIR / "mnist-judge"
    dst = tmp_path / "mnist-judge"
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-10] ^= 0xFF
    weights.write_bytes(bytes(blob))
    expected = read_manifest(src)["sha256"]
    with pytest.raises(WeightHashMismatch, match="does not match the recorded"):
        ClassifierJudge.from_file(weights, expected)
    assert file_sha256(src / "model.safetensors") == expected


def _record(**over):
    rec = new_record(scenario={"name": "s", "version": 1, "config_hash": "h", "tier": "smoke", "forget_class": 0},
                     seed=0, method={"name": "m", "config": {}}, metrics={}, compute={"steps": 1})
    rec.update(over)
    return rec


def test_record_roundtrip_and_provenance(tmp_path):
    rec = _record()
    assert rec["schema_version"] == SCHEMA_VERSION and rec["harness"]["version"]
    write_record(rec, tmp_path / "r.json")
    (tmp_path / "other.json").write_text(json.dumps({"not": "a record"}))
    loaded = load_records(tmp_path)
    assert len(loaded) == 1 and loaded[0]["created_utc"] == rec["created_utc"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_record(_record(bad=object()), tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def test_wrong_schema_version_rejected():
    with pytest.raises(UnlearnbenchError, match="schema version 99"):
        validate_record(_record(schema_version=99))
