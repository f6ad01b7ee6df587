"""``benchmark.audit.read_prompts``: the prompt files auditors bring — our layout, the I2P release's own
columns, spreadsheets' byte-order marks and header spelling — read as written, and every bad row one clear
error naming its line (never a silent default for a value that was given, never a traceback)."""

from __future__ import annotations

import pytest

from benchmark import UnlearnbenchError
from benchmark.audit import read_prompts


def _file(tmp_path, text: str, encoding: str = "utf-8"):
    path = tmp_path / "prompts.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_our_layout(tmp_path):
    rows = read_prompts(_file(tmp_path, 'prompt,seed,guidance\n"a nude woman, oil",3,7.5\nzero,,\n'))
    assert rows == [{"prompt": "a nude woman, oil", "seed": 3, "guidance": 7.5},
                    {"prompt": "zero", "seed": 0, "guidance": None}]


def test_the_i2p_release_columns(tmp_path):
    """AIML-TUDA/i2p names its columns sd_seed / sd_guidance_scale among many others."""
    text = ("prompt,categories,hard,inappropriate_percentage,sd_seed,sd_guidance_scale,sd_image_width\n"
            "a painting,sexual,1,80.0,2539888290,7,512\n")
    assert read_prompts(_file(tmp_path, text)) == [{"prompt": "a painting", "seed": 2539888290, "guidance": 7.0}]


def test_large_seeds_are_read_exactly(tmp_path):
    """Above 2^53 a float parse would round the seed (another image than the one the file names)."""
    big = 2**63 - 1
    rows = read_prompts(_file(tmp_path, f"prompt,seed\na,{big}\nb,9007199254740993\nc,42.0\n"))
    assert [r["seed"] for r in rows] == [big, 2**53 + 1, 42]
    with pytest.raises(UnlearnbenchError, match="seed '9223372036854775808' is not a whole number in"):
        read_prompts(_file(tmp_path, f"prompt,seed\na,{2**63}\n"))


def test_byte_order_mark_header_spelling_and_blank_lines(tmp_path):
    rows = read_prompts(_file(tmp_path, "Prompt , Seed,GUIDANCE\r\nred ink,4,3\r\n\r\n", encoding="utf-8-sig"))
    assert rows == [{"prompt": "red ink", "seed": 4, "guidance": 3.0}]


@pytest.mark.parametrize("row, message", [
    ("x,nan,", "seed 'nan' is not a finite number"),
    ("x,inf,", "seed 'inf' is not a finite number"),
    ("x,1e400,", "seed '1e400' is not a finite number"),
    ("x,1e23,", "seed '1e23' is not a whole number in"),
    ("x,1.7,", "seed '1.7' is not a whole number in"),
    ("x,-1,", "seed '-1' is not a whole number in"),
    ("x,abc,", "seed 'abc' is not a number"),
    ("x,1,nan", "guidance 'nan' is not a finite number"),
    ("x,1,-2", "guidance '-2' is negative"),
    (",1,3", "empty prompt"),
])
def test_bad_rows_are_one_error_naming_the_line(tmp_path, row, message):
    with pytest.raises(UnlearnbenchError, match="line 3: " + message.replace("(", r"\(")) as err:
        read_prompts(_file(tmp_path, f"prompt,seed,guidance\nfine,0,1\n{row}\n"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("text,seed\nhello,1\n", "want a CSV with a 'prompt' column"),
    ("prompt,seed\n", "no prompts below the header"),
    ("", "want a CSV with a 'prompt' column"),
])
def test_bad_files(tmp_path, text, message):
    with pytest.raises(UnlearnbenchError, match=message):
        read_prompts(_file(tmp_path, text))


def test_unreadable_file(tmp_path):
    with pytest.raises(UnlearnbenchError, match="cannot read it"):
        read_prompts(_file(tmp_path, "prompt\ncaf\xe9\n", encoding="latin-1"))
    with pytest.raises(UnlearnbenchError, match="cannot read it"):
        read_prompts(tmp_path)
