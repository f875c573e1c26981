"""Rewrite README.md's generated blocks (`make readme`): the map from the experiment registry,
the measured numbers from the kept full-setting results (results/). tests/test_map.py keeps both
equal to what these commands print."""
import re
import subprocess
import sys
from pathlib import Path

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
for block, args in (("map", ["--markdown"]), ("results", ["--results"]), ("speed", ["--speed"])):
    table = subprocess.run([sys.executable, "-m", "deepatlas", "list", *args],
                           capture_output=True, text=True, check=True).stdout
    text = re.sub(rf"<!-- {block}:start -->\n.*?<!-- {block}:end -->",
                  lambda m: f"<!-- {block}:start -->\n" + table + f"<!-- {block}:end -->", text, flags=re.S)
readme.write_text(text)
