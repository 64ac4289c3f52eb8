"""Tiny fixture copies of each benchmark, written in the dataset's real column schema (images made with pillow)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

CVBENCH_CARD_2025 = """---
license: apache-2.0
configs:
- config_name: default
  data_files:
  - split: test
    path: test*.parquet
- config_name: 2D
  data_files:
  - split: test
    path: test_2d.parquet
- config_name: 3D
  data_files:
  - split: test
    path: test_3d.parquet
---
# CV-Bench (fixture)
"""


def png(seed: int, size: int = 24) -> Image.Image:
    """A small deterministic picture: a coloured square on grey."""
    im = Image.new("RGB", (size, size), (128, 128, 128))
    ImageDraw.Draw(im).rectangle([seed % 8, 2, seed % 8 + 8, 10], fill=((seed * 40) % 256, 30, 200))
    return im


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    png(seed).save(buf, format="PNG")
    return buf.getvalue()


def _prompt(question: str, choices: list[str]) -> str:
    return question + " Select from the following choices.\n" + "\n".join(
        f"({'ABCDEF'[i]}) {c}" for i, c in enumerate(choices))


def cvbench_rows(start_idx: int, kind: str) -> list[dict]:
    """Rows in CV-Bench's schema: 2D (Count/Relation from ADE20K/COCO) or 3D (Depth/Distance from Omni3D)."""
    rows = []
    if kind == "2D":
        specs = [("Count", "ADE20K", "How many chairs are in the image?", ["0", "1", "2", "3", "4"], "(C)"),
                 ("Count", "COCO", "How many cars are in the image?", ["1", "2", "3", "4"], "(A)"),
                 ("Relation", "COCO",
                  "Considering the relative positions of the cup (annotated by the red box) and the plate "
                  "(annotated by the blue box) in the image provided, where is the cup (annotated by the red box) "
                  "located with respect to the plate (annotated by the blue box)?", ["left", "right"], "(B)"),
                 ("Relation", "ADE20K", "Where is the lamp located with respect to the bed?", ["above", "below"],
                  "(A)")]
    else:
        specs = [("Depth", "Omni3D", "Which object is closer to the camera taking this photo, the chair "
                  "(highlighted by a red box) or the table (highlighted by a blue box)?", ["chair", "table"], "(A)"),
                 ("Distance", "Omni3D", "Which of these two objects (the sofa, the lamp) is closer to the tv?",
                  ["sofa", "lamp"], "(B)")]
    for k, (task, src, q, ch, ans) in enumerate(specs):
        idx = start_idx + k
        rows.append(dict(
            idx=idx, type=kind, task=task, image={"bytes": png_bytes(idx), "path": f"img/{kind}/{task}/{idx}.png"},
            question=q, choices=ch, answer=ans, prompt=_prompt(q, ch), filename=f"img/{kind}/{task}/{idx}.png",
            source=src, source_dataset=f"{src} val", source_filename=f"{src.lower()}_{idx}.jpg",
            target_class="car" if src == "COCO" and task == "Count" else None,
            target_size=1234 if src == "COCO" and task == "Count" else None,
            bbox=[[1.0, 2.0, 10.0, 12.0], [5.0, 6.0, 20.0, 22.0]] if src == "Omni3D" else None,
        ))
    return rows


def cvbench_features():
    from datasets import Features, Image as HFImage, List, Value

    return Features({
        "idx": Value("int32"), "type": Value("string"), "task": Value("string"), "image": HFImage(),
        "question": Value("string"), "choices": List(Value("string")), "answer": Value("string"),
        "prompt": Value("string"), "filename": Value("string"), "source": Value("string"),
        "source_dataset": Value("string"), "source_filename": Value("string"), "target_class": Value("string"),
        "target_size": Value("int64"), "bbox": List(List(Value("float32"))),
    })


def write_parquet(rows: list[dict], features, path: Path) -> Path:
    from datasets import Dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path


def make_cvbench(folder: Path, layout: str = "2025", card: bool = False, extra_rows: list[dict] | None = None) -> Path:
    """A CV-Bench folder in the 2024 (test.parquet) or 2025 (test_2d + test_3d, optional card) layout."""
    feats = cvbench_features()
    r2, r3 = cvbench_rows(0, "2D"), cvbench_rows(4, "3D")
    r2 = r2 + (extra_rows or [])
    if layout == "2024":
        write_parquet(r2 + r3, feats, folder / "test.parquet")
        if card:  # the 2024 snapshot: a card without configs, plus test.jsonl and img/ beside the parquet
            (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# CV-Bench (fixture)\n")
            (folder / "test.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "image"})
                                                       + "\n" for r in r2 + r3))
            (folder / "img").mkdir(exist_ok=True)
    else:
        write_parquet(r2, feats, folder / "test_2d.parquet")
        write_parquet(r3, feats, folder / "test_3d.parquet")
        if card:
            (folder / "README.md").write_text(CVBENCH_CARD_2025)
    return folder


def blink_features():
    from datasets import Features, Image as HFImage, List, Value

    return Features({"idx": Value("string"), "question": Value("string"), "sub_task": Value("string"),
                     "image_1": HFImage(), "image_2": HFImage(), "image_3": HFImage(), "image_4": HFImage(),
                     "choices": List(Value("string")), "answer": Value("string"), "prompt": Value("string"),
                     "explanation": Value("string")})


def blink_rows(sub: str, n: int = 3) -> list[dict]:
    rows = []
    for k in range(n):
        q = {"Counting": "How many blue floats are there?", "Relative_Depth":
             "Which point is closer to the camera?"}.get(sub, "Is the cat on the mat?")
        ch = {"Counting": ["0", "3", "2", "1"], "Relative_Depth": ["A is closer", "B is closer"]}.get(sub, ["yes", "no"])
        rows.append(dict(idx=f"val_{sub}_{k + 1}", question=q, sub_task=sub.replace("_", " "),
                         image_1={"bytes": png_bytes(k), "path": None}, image_2=None, image_3=None, image_4=None,
                         choices=ch, answer=f"({'AB'[k % 2]})",
                         prompt=q + "\nSelect from the following choices.\n" + "\n".join(
                             f"({'ABCD'[i]}) {c}" for i, c in enumerate(ch)), explanation=""))
    return rows


def make_blink(folder: Path, subtasks=("Counting", "Relative_Depth"), extra: dict | None = None) -> Path:
    for sub in subtasks:
        rows = blink_rows(sub) + (extra or {}).get(sub, [])
        write_parquet(rows, blink_features(), folder / sub / "val-00000-of-00001.parquet")
    return folder


def make_whatsup_original(folder: Path, subset: str = "A", n: int = 4, broken: bool = False) -> Path:
    """The original release: JSON list of {image_path, caption_options} (first caption true) + image files."""
    name = {"A": ("controlled_images_dataset.json", "controlled_images"),
            "B": ("controlled_clevr_dataset.json", "controlled_clevr")}[subset]
    (folder / name[1]).mkdir(parents=True, exist_ok=True)
    rows = []
    preps = ["left_of", "right_of", "on", "under"]
    for k in range(n):
        p = preps[k % 4]
        path = f"data/{name[1]}/mug_{p}_table.jpeg"
        png(k).save(folder / name[1] / f"mug_{p}_table.jpeg", format="JPEG")
        caps = [f"A mug {p.replace('_', ' ')} a table"] + [f"A mug {q.replace('_', ' ')} a table"
                                                          for q in preps if q != p]
        rows.append({"image_path": path, "caption_options": caps})
    if broken:
        rows.append({"image_path": f"data/{name[1]}/missing.jpeg", "caption_options": rows[0]["caption_options"]})
    (folder / name[0]).write_text(json.dumps(rows))
    return folder


def make_whatsup_hub(path: Path, n: int = 4) -> Path:
    """The hub mirror's schema: image_options (Image), caption_options (list), TARGET (int)."""
    from datasets import Features, Image as HFImage, List, Value

    feats = Features({"image_options": HFImage(), "caption_options": List(Value("string")), "TARGET": Value("int64")})
    rows = [{"image_options": {"bytes": png_bytes(k), "path": None},
             "caption_options": ["A dog left of a cat", "A dog right of a cat", "A dog on a cat", "A dog under a cat"],
             "TARGET": k % 4} for k in range(n)]
    return write_parquet(rows, feats, path)


def make_clevr(path: Path, answers=("3", "5", "10", "4")) -> Path:
    from datasets import Features, Image as HFImage, List, Value

    feats = Features({"images": List(HFImage()), "problem": Value("string"), "answer": Value("string")})
    rows = [{"images": [{"bytes": png_bytes(k), "path": None}],
             "problem": "<image>How many items are there in the image?", "answer": a} for k, a in enumerate(answers)]
    return write_parquet(rows, feats, path)


def make_superclevr(folder: Path, counts=(4, 9, 10, 3), bad_line: bool = False) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, c in enumerate(counts):
        name = f"superCLEVR_new_{25000 + k:06d}.png"
        png(k).save(folder / "images" / name)
        lines.append(json.dumps({"image_path": f"./images/{name}",
                                 "question": "How many different items are there in the image?", "ground_truth": c}))
    if bad_line:
        lines.append('{"image_path": "./images/x.png", "question": ')
    path = folder / "superclevr_test200_counting_problems.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
