"""GSM8K fixture: a parquet folder laid out like the hub repo (main/<split>-00000-of-00001.parquet)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Real rows of openai/gsm8k (config "main"): the first three of test and the first two of train.
GSM8K_ROWS = {
    "test": [
        {"question": "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
                     "muffins for her friends every day with four. She sells the remainder at the farmers' market "
                     "daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' "
                     "market?",
         "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every "
                   "day at the farmer\u2019s market.\n#### 18"},
        {"question": "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total "
                     "does it take?",
         "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 "
                   "bolts of fabric\n#### 3"},
        {"question": "Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in $50,000 in "
                     "repairs.  This increased the value of the house by 150%.  How much profit did he make?",
         "answer": "The cost of the house and repairs came out to 80,000+50,000=$<<80000+50000=130000>>130,000\n"
                   "He increased the value of the house by 80,000*1.5=<<80000*1.5=120000>>120,000\nSo the new value "
                   "of the house is 120,000+80,000=$<<120000+80000=200000>>200,000\nSo he made a profit of "
                   "200,000-130,000=$<<200000-130000=70000>>70,000\n#### 70000"},
    ],
    "train": [
        {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                     "How many clips did Natalia sell altogether in April and May?",
         "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
                   "altogether in April and May.\n#### 72"},
        {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                     "How much did she earn?",
         "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = "
                   "$<<0.2*50=10>>10.\n#### 10"},
    ],
}


@pytest.fixture(scope="session")
def gsm8k_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsm8k")
    (root / "main").mkdir()
    schema = pa.schema([("question", pa.string()), ("answer", pa.string())])
    for split, rows in GSM8K_ROWS.items():
        table = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(table, root / "main" / f"{split}-00000-of-00001.parquet")
    return root
