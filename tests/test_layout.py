"""The package's layout rules, checked on the source: imports run only downward between the wings,
and scorer and dataset names are compared only inside their registries."""

import ast
import os

import pytest

from attn_jax.data import sources
from attn_jax.model import attention

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "attn_jax")
WINGS = ("data", "model", "eval", "run")
# What each wing may import from the others (entry points on top may import every wing).
ALLOWED = {
    "data": set(),
    "model": {"attn_jax.data.tokens"},
    "eval": {"attn_jax.data", "attn_jax.model"},
    "run": {"attn_jax.data", "attn_jax.model", "attn_jax.eval"},
}
REGISTRIES = {os.path.join("model", "attention.py"), os.path.join("data", "sources.py")}


def _modules():
    for root, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, PACKAGE), ast.parse(f.read(), path)


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_wings_import_only_downward():
    bad = []
    for rel, tree in _modules():
        wing = rel.split(os.sep)[0]
        if wing not in WINGS:
            continue  # An entry point or the package docstring.
        for name in _imports(tree):
            if not name.startswith("attn_jax.") or name.startswith(f"attn_jax.{wing}."):
                continue
            if not any(name == a or name.startswith(a + ".") for a in ALLOWED[wing]):
                bad.append(f"{rel} imports {name}")
    assert not bad, bad


def _names_compared(tree, names):
    """String constants from `names` that appear in a comparison (==, !=, in) in `tree`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in names:
                    found.append(f"line {node.lineno}: {side.value!r}")
    return found


@pytest.mark.parametrize("registry,names", [
    ("scorers", set(attention.SCORERS)),
    ("datasets", set(sources.DATASETS)),
])
def test_names_are_compared_only_in_their_registry(registry, names):
    bad = {rel: hits for rel, tree in _modules() if rel not in REGISTRIES
           for hits in [_names_compared(tree, names)] if hits}
    assert not bad, f"{registry} compared by name outside the registry: {bad}"


def test_no_isinstance_on_scorer_classes():
    classes = {name for name, value in vars(attention).items()
               if isinstance(value, type) and issubclass(value, attention.Scorer)}
    bad = []
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("isinstance", "issubclass") and len(node.args) == 2):
                used = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node.args[1])
                        if isinstance(n, ast.Name | ast.Attribute)}
                if used & classes:
                    bad.append(f"{rel}:{node.lineno}")
    assert not bad, bad


def test_the_rules_catch_what_they_forbid():
    """The checks above fail on code that breaks them (a check that cannot fail proves nothing)."""
    tree = ast.parse("from attn_jax.run import config\nif x.scorer == 'none': pass\n"
                     "isinstance(s, attention.Location)\n")
    assert list(_imports(tree)) == ["attn_jax.run.config"]
    assert _names_compared(tree, set(attention.SCORERS)) == ["line 2: 'none'"]
