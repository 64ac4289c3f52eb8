"""Every loader round-trips fixture files written in the dataset's real schema; malformed rows are named."""

from __future__ import annotations

import warnings

import pytest
from PIL import Image

from steerkit.errors import DataError
from steerkit.tasks.loaders import load_blink, load_clevr_count, load_cvbench, load_superclevr_count, load_whatsup
from tests.tasks import fixtures as fx


@pytest.mark.parametrize("layout,card", [("2024", False), ("2024", True), ("2025", False), ("2025", True)])
def test_cvbench_layouts_round_trip(tmp_path, layout, card):
    folder = fx.make_cvbench(tmp_path / "cvb", layout=layout, card=card)
    items = load_cvbench(folder)
    assert [it.id for it in items] == ["0", "1", "2", "3", "4", "5"]
    by_id = {it.id: it for it in items}
    assert by_id["0"].answer == "C" and by_id["0"].choices == ["0", "1", "2", "3", "4"]
    assert by_id["0"].task == "Count" and by_id["0"].source == "ADE20K"
    assert by_id["2"].task == "Relation" and by_id["2"].answer == "B"
    assert by_id["4"].source == "Omni3D" and by_id["4"].extra["bbox"][0] == [1.0, 2.0, 10.0, 12.0]
    assert "bbox" not in by_id["0"].extra and by_id["1"].extra["target_class"] == "car"
    assert by_id["2"].prompt.endswith("(A) left\n(B) right")
    assert isinstance(by_id["5"].image, Image.Image) and by_id["5"].image.convert("RGB").size == (24, 24)
    # the pixels survive the parquet round trip
    assert by_id["5"].image.convert("RGB").tobytes() == fx.png(5).tobytes()


@pytest.mark.parametrize("card", [True, False])
def test_cvbench_local_folder_never_returns_stale_rows(tmp_path, monkeypatch, card):
    """A changed parquet (same size and mtime) and another folder of the same name each give their own rows."""
    import os

    from datasets import config as hf_config

    monkeypatch.setattr(hf_config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # start from an empty cache
    folder = fx.make_cvbench(tmp_path / "a" / "cvb", layout="2025", card=card)
    assert [it.question for it in load_cvbench(folder)][0] == "How many chairs are in the image?"
    target = folder / "test_2d.parquet"
    before = target.stat()
    rows = fx.cvbench_rows(0, "2D")
    rows[0]["question"] = "How many tables are in the image?"  # same length: a same-size edit is the hard case
    fx.write_parquet(rows, fx.cvbench_features(), target)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert [it.question for it in load_cvbench(folder)][0] == "How many tables are in the image?"
    other = fx.make_cvbench(tmp_path / "b" / "cvb", layout="2025", card=card,
                            extra_rows=[dict(fx.cvbench_rows(0, "2D")[0], idx=99)])
    assert [it.id for it in load_cvbench(other)] == ["0", "1", "2", "3", "99", "4", "5"]
    assert [it.id for it in load_cvbench(folder)] == ["0", "1", "2", "3", "4", "5"]  # each folder its own rows


def test_cvbench_configs_and_filters(tmp_path):
    folder = fx.make_cvbench(tmp_path / "cvb", layout="2025", card=True)
    three = load_cvbench(folder, config="3D")
    assert [it.id for it in three] == ["4", "5"]  # global idx, also when 3D is loaded alone
    assert {it.task for it in load_cvbench(folder, config="2D")} == {"Count", "Relation"}
    plain = fx.make_cvbench(tmp_path / "plain", layout="2025")
    assert [it.id for it in load_cvbench(plain, config="3D")] == ["4", "5"]
    assert [it.id for it in load_cvbench(plain, tasks=["Count"], sources=["COCO"])] == ["1"]
    with pytest.raises(DataError, match="2024 layout"):
        load_cvbench(fx.make_cvbench(tmp_path / "old", layout="2024"), config="3D")
    with pytest.raises(ValueError, match="unknown CV-Bench tasks"):
        load_cvbench(plain, tasks=["Counting"])


def test_cvbench_parquet_file_and_dataset_objects(tmp_path):
    from datasets import load_dataset

    folder = fx.make_cvbench(tmp_path / "cvb", layout="2024")
    assert len(load_cvbench(folder / "test.parquet")) == 6
    ds = load_dataset("parquet", data_files=str(folder / "test.parquet"), split="train")
    assert [it.id for it in load_cvbench(ds, limit=2)] == ["0", "1"]
    # pandas rows keep the image as the raw {bytes, path} struct
    assert load_cvbench(ds.to_pandas()).__len__() == 6


def _bad_cvbench_rows():
    good = fx.cvbench_rows(0, "2D")[0]
    no_answer = {**good, "idx": 100, "answer": None}
    bad_letter = {**good, "idx": 101, "answer": "(F)"}  # 5 choices: A-E
    bad_image = {**good, "idx": 102, "image": {"bytes": b"not an image", "path": "x.png"}}
    return [no_answer, bad_letter, bad_image]


def test_cvbench_malformed_rows_raise_or_are_listed(tmp_path):
    folder = fx.make_cvbench(tmp_path / "cvb", layout="2024", extra_rows=_bad_cvbench_rows())
    with pytest.raises(DataError, match="row '100'.*answer is missing"):
        load_cvbench(folder)
    with pytest.warns(UserWarning, match="3 malformed rows skipped"):
        items = load_cvbench(folder, on_error="skip")
    assert len(items) == 6
    skipped = dict(items.skipped)
    assert set(skipped) == {"100", "101", "102"}
    assert "not one of the choice letters" in skipped["101"]
    assert "cannot be decoded" in skipped["102"]
    with pytest.raises(ValueError, match="on_error"):
        load_cvbench(folder, on_error="ignore")


def test_whatsup_original_json_and_rotation(tmp_path):
    folder = fx.make_whatsup_original(tmp_path / "wu", "A", n=4)
    items = load_whatsup("A", folder)
    assert [it.answer for it in items] == ["A", "D", "C", "B"]  # rotated by row index
    for it in items:
        assert it.choices[it.answer_index] == it.extra["true_caption"]
        assert it.prompt.startswith("Please select the correct caption for the image:\n(A) ")
        assert it.image.convert("RGB").size == (24, 24)
    assert [it.extra["preposition"] for it in items] == ["left", "right", "on", "under"]
    assert [it.answer for it in load_whatsup("A", folder, rotate=False)] == ["A"] * 4
    fx.make_whatsup_original(tmp_path / "wub", "B", n=2)
    assert load_whatsup("B", tmp_path / "wub")[0].task == "WhatsUp-B"


def test_whatsup_hub_schema_and_missing_image(tmp_path):
    path = fx.make_whatsup_hub(tmp_path / "wu.parquet", n=4)
    items = load_whatsup("A", path)
    for i, it in enumerate(items):
        assert it.choices[it.answer_index] == ["A dog left of a cat", "A dog right of a cat", "A dog on a cat",
                                               "A dog under a cat"][i % 4]
    folder = fx.make_whatsup_original(tmp_path / "wu2", "A", n=2, broken=True)
    with pytest.raises(DataError, match="whatsup_A/2"):
        load_whatsup("A", folder)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kept = load_whatsup("A", folder, on_error="skip")
    assert len(kept) == 2 and kept.skipped[0][0] == "whatsup_A/2" and "cannot be read" in kept.skipped[0][1]
    assert any("whatsup_A/2" in str(x.message) for x in w)


def test_blink_round_trip_and_multi_image_rows(tmp_path):
    two_images = {**fx.blink_rows("Counting")[0], "idx": "val_Counting_99",
                  "image_2": {"bytes": fx.png_bytes(3), "path": None}}
    folder = fx.make_blink(tmp_path / "blink", extra={"Counting": [two_images]})
    with pytest.raises(DataError, match="val_Counting_99.*2 images"):
        load_blink(["Counting"], source=folder)
    with pytest.warns(UserWarning):
        items = load_blink(["Counting", "Relative_Depth"], source=folder, on_error="skip")
    assert [it.id for it in items] == ["val_Counting_1", "val_Counting_2", "val_Counting_3",
                                      "val_Relative_Depth_1", "val_Relative_Depth_2", "val_Relative_Depth_3"]
    assert items.skipped == [("val_Counting_99", items.skipped[0][1])]
    assert items[0].task == "BLINK-Counting" and items[0].answer == "A" and items[1].answer == "B"
    assert items[0].choices == ["0", "3", "2", "1"] and "Select from the following choices" in items[0].prompt
    with pytest.raises(DataError, match="no val"):
        load_blink(["Spatial_Relation"], source=folder)
    rows = fx.blink_rows("Counting") + fx.blink_rows("Relative_Depth")  # rows in hand: one pass, task from sub_task
    assert [it.task for it in load_blink(source=rows)] == ["BLINK-Counting"] * 3 + ["BLINK-Relative_Depth"] * 3


def test_clevr_count_to_multiple_choice(tmp_path):
    path = fx.make_clevr(tmp_path / "clevr.parquet", answers=("3", "5", "10", "0"))
    items = load_clevr_count(path)
    assert [it.extra["count"] for it in items] == [3, 5, 10, 0]
    for it in items:
        vals = [int(c) for c in it.choices]
        assert vals == list(range(vals[0], vals[0] + 4)) and vals[0] >= 0
        assert int(it.choices[it.answer_index]) == it.extra["count"]
        assert it.prompt.startswith("How many items are there in the image? Select from the following choices.\n(A)")
        assert "<image>" not in it.prompt
    assert [it.choices for it in load_clevr_count(path)] == [it.choices for it in items]  # deterministic
    bad = fx.make_clevr(tmp_path / "bad.parquet", answers=("3", "many"))
    with pytest.raises(DataError, match="clevr/1"):
        load_clevr_count(bad)


def test_count_choices_spread_the_answer_position():
    from steerkit.tasks.loaders import count_choices

    positions = [count_choices(7, f"id{i}").index(7) for i in range(400)]
    counts = [positions.count(p) for p in range(4)]
    assert min(counts) > 60, counts  # every letter is used (expected 100 each)


def test_superclevr_round_trip_and_bad_line(tmp_path):
    path = fx.make_superclevr(tmp_path / "sc", counts=(4, 9, 10, 3))
    items = load_superclevr_count(path)
    assert [it.extra["count"] for it in items] == [4, 9, 10, 3]
    assert items[0].id == "superclevr/superCLEVR_new_025000" and items[0].task == "SuperCLEVR-Count"
    assert items[1].image.convert("RGB").tobytes() == fx.png(1).tobytes()
    assert len(load_superclevr_count(tmp_path / "sc")) == 4  # folder form
    fx.make_superclevr(tmp_path / "sc2", bad_line=True)
    with pytest.warns(UserWarning, match="1 malformed rows skipped"):
        kept = load_superclevr_count(tmp_path / "sc2", on_error="skip")
    assert len(kept) == 4 and "unparsable JSON" in kept.skipped[0][1]
