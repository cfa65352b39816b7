"""The shape of the code, as the developers' guide asks it: functions that fit a screen, one place for
each fact (operators in their table, roles by name), no import cycle, and a Pgpool-II component whose
arguments can be followed without going back and forth between files."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import components.pgpool as pgpool_module
from tests.program_run import ROOT, dev_stack_inputs, run_program

MAX_FUNCTION_LINES = 60
PGPOOL_MODULES = ("pgpool.py", "pgpool_config.py", "pgpool_pod.py")
"""The Pgpool-II component's own modules; shared helpers (workload.py, the image contract, the operator
table, k8s_secret.py) are looked up like a library, not followed."""


def python_files(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (ROOT / root).glob("*.py"))


def functions(path: Path) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function in a file."""
    found: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((prefix + child.name, child.end_lineno - child.lineno + 1))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(ast.parse(path.read_text()), "")
    return found


def test_every_function_fits_a_screen() -> None:
    long = {f"{path.relative_to(ROOT)}:{name}": lines
            for path in python_files("components", "scripts", "scripts/localcluster")
            for name, lines in functions(path) if lines > MAX_FUNCTION_LINES}
    assert not long, long


def walk_of_pgpool_args(config: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """The Pgpool-II module of each function Pgpool.__init__ calls, directly or not, in call order,
    consecutive calls in one module counted once: the files a reader follows `args` through."""
    init, modules = pgpool_module.Pgpool.__init__.__code__, []
    components = str(ROOT / "components")
    inside = [0]

    def trace(frame, event, arg):
        code = frame.f_code
        if code is init:
            inside[0] += 1
            modules.append("pgpool.py")
            return lambda frame, event, arg: inside.__setitem__(0, inside[0] - (event == "return")) or None
        name = Path(code.co_filename).name
        if inside[0] and code.co_filename.startswith(components) and name in PGPOOL_MODULES:
            if modules[-1] != name:
                modules.append(name)
        return None

    sys.settrace(trace)
    try:
        run_program(config, secrets, "dev")
    finally:
        sys.settrace(None)
    return modules


@pytest.mark.parametrize("mode", ["configmap", "env"])
def test_pgpool_args_are_followed_through_few_files(mode: str) -> None:
    config, secrets = dev_stack_inputs()
    stays = walk_of_pgpool_args({**config, "pgpoolMode": mode}, secrets)
    returns = sum(module in stays[:i] for i, module in enumerate(stays))
    assert stays == ["pgpool.py", "pgpool_config.py", "pgpool.py", "pgpool_pod.py", "pgpool.py"]
    assert len(stays) <= 5 and returns <= 2


NAME = r"""["'](kubedb|zalando|crunchy|cloudnativepg|external)["']"""
OPERATOR_QUESTION = re.compile(rf"(==|!=)\s*{NAME}|{NAME}\s*(==|!=|:)|\bin\s*[(\[{{][^)\]}}]*{NAME}")
"""A comparison with an operator's name, a membership test among names, or a table keyed by them."""


def test_operator_facts_live_only_in_the_operator_table() -> None:
    """Nothing outside components/operators.py asks which operator it is by name."""
    allowed = {ROOT / "components" / "operators.py"}
    for path in python_files("components", "scripts", "scripts/localcluster") + [ROOT / "__main__.py"]:
        if path in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            assert not OPERATOR_QUESTION.search(code), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


def test_roles_are_named_never_taken_by_position() -> None:
    for path in python_files("components") + [ROOT / "__main__.py"]:
        text = path.read_text()
        assert not re.search(r"users\[[0-9]*:?[0-9]*\]", text), path.relative_to(ROOT)


def imports_of(path: Path) -> set[str]:
    """Every components module a file imports, TYPE_CHECKING imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "components":
                found |= {f"components.{alias.name}" for alias in node.names}
            elif node.module.startswith("components."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("components.")}
    return found


def test_components_import_each_other_without_a_cycle() -> None:
    graph = {f"components.{p.stem}": imports_of(p) for p in python_files("components")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join(path + (module,))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, path + (module,))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
