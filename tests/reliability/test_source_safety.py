"""The source tree never deserialises untrusted data: no pickle, no `torch.load` without `weights_only=True`.

The scan parses every module of `cxrviewer/` (AST, so comments and strings do not count) and flags:
``torch.load(...)`` without ``weights_only=True``; ``pickle``/``cPickle``/``dill``/``joblib``
``load``/``loads``/``Unpickler``; ``marshal.load(s)``; ``numpy.load(..., allow_pickle=True)``;
``yaml.load`` without a safe loader; ``torch.jit.load`` / ``torch.package`` importers (they unpickle too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cxrviewer"

_PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle", "marshal", "shelve"}
_PICKLE_FUNCS = {"load", "loads", "Unpickler", "open"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _kw_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value == value for k in call.keywords)


def unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """'file:line: what' for every unsafe deserialisation call in `source`."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # local name -> dotted origin ("load" -> "torch.load")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if not name:
            continue
        head, _, rest = name.partition(".")
        full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        where = f"{filename}:{node.lineno}"
        module, _, func = full.rpartition(".")
        if full == "torch.load" and not _kw_is(node, "weights_only", True):
            found.append(f"{where}: torch.load without weights_only=True")
        elif full in ("torch.jit.load", "torch.package.PackageImporter"):
            found.append(f"{where}: {full} (unpickles)")
        elif module.split(".")[0] in _PICKLERS and func in _PICKLE_FUNCS:
            found.append(f"{where}: {full}")
        elif full in ("numpy.load", "np.load") and _kw_is(node, "allow_pickle", True):
            found.append(f"{where}: numpy.load with allow_pickle=True")
        elif full == "yaml.load" and not any(
            k.arg == "Loader" and "Safe" in _dotted(k.value) for k in node.keywords
        ):
            found.append(f"{where}: yaml.load without SafeLoader")
        elif full == "pandas.read_pickle":
            found.append(f"{where}: pandas.read_pickle")
    return found


@pytest.mark.parametrize(
    ("snippet", "flagged"),
    [
        ("import torch\ntorch.load(p)", True),
        ("import torch\ntorch.load(p, weights_only=False)", True),
        ("import torch\ntorch.load(p, map_location='cpu', weights_only=True)", False),
        ("from torch import load\nload(p)", True),
        ("import torch as T\nT.load(p)", True),
        ("import pickle\npickle.loads(b)", True),
        ("from pickle import load as L\nL(fh)", True),
        ("import pickle\npickle.dumps(x)", False),
        ("import numpy as np\nnp.load(p, allow_pickle=True)", True),
        ("import numpy as np\nnp.load(p)", False),
        ("import joblib\njoblib.load(p)", True),
        ("import yaml\nyaml.load(s)", True),
        ("import yaml\nyaml.load(s, Loader=yaml.SafeLoader)", False),
        ("from safetensors.torch import load_file\nload_file(p)", False),
        ("# torch.load(p)\ns = 'pickle.loads(b)'", False),
    ],
)
def test_scanner_recognises_unsafe_calls(snippet: str, flagged: bool) -> None:
    assert bool(unsafe_calls(snippet)) is flagged


def test_source_tree_has_no_unsafe_deserialisation() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 30, "package sources not found"
    found = [hit for f in files
             for hit in unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(PACKAGE.parent)))]
    assert not found, "unsafe deserialisation in the source tree:\n" + "\n".join(found)
