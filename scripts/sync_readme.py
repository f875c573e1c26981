"""Rewrite README.md's map block from the experiment registry (`make readme`)."""
import re
import subprocess
import sys
from pathlib import Path

readme = Path(__file__).resolve().parents[1] / "README.md"
table = subprocess.run([sys.executable, "-m", "deepatlas", "list", "--markdown"],
                       capture_output=True, text=True, check=True).stdout
text = re.sub(r"<!-- map:start -->\n.*?<!-- map:end -->",
              lambda m: "<!-- map:start -->\n" + table + "<!-- map:end -->", readme.read_text(), flags=re.S)
readme.write_text(text)
