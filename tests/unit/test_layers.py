"""The house's rules, read from the product's own imports (those inside functions too):

    launcher -> flows -> tasks -> blocks -> targets -> domain

No import circle anywhere; no import from a lower layer up; the domain imports no SDK; a target's
folder never imports another target's; the flows never import a target (they are target-blind);
the work pool's command (launcher/start.py) imports the standard library only.

Around the product: `testbed/` (scratch environments, wrk) serves the tests and the benchmarks,
and the benchmarks never import the tests. Nothing in the product imports either.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from targets.registry import KINDS

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("domain", "targets", "blocks", "tasks", "flows", "deployments", "launcher")
LAYER = {
    "domain": 0,
    "targets": 1,
    "blocks": 2,
    "tasks": 3,
    "flows": 4,
    "deployments": 5,
    "launcher": 5,
}
SDKS = ("prefect", "prefect_aws", "prefect_docker", "docker", "boto3", "botocore", "httpx")
# Each kind's folder, from the registry: a new target is held to the rules without a line here.
TARGETS = tuple(sorted(kind.package for kind in KINDS))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code (TYPE_CHECKING blocks included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


GRAPH = {
    module_name(path): imports_of(path)
    for package in PRODUCT
    for path in sorted((ROOT / package).rglob("*.py"))
}


# Beside the product: what each of these folders must never import.
NEVER_IMPORTS = {
    "testbed": ("tests", "benchmarks"),
    "benchmarks": ("tests",),
}
OUTSIDE = {
    module_name(path): imports_of(path)
    for package in NEVER_IMPORTS
    for path in sorted((ROOT / package).rglob("*.py"))
}


def product_imports(module: str) -> set[str]:
    """The product modules `module` imports (a name imported from a module counts as it)."""
    return {name for name in GRAPH[module] if name in GRAPH and name != module}


def test_there_is_no_import_circle():
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(product_imports(module)):
            if imported in path:
                circles.append([*path[path.index(imported) :], imported])
            elif imported not in done:
                visit(imported, [*path, imported])
        done.add(module)

    done: set[str] = set()
    for module in sorted(GRAPH):
        if module not in done:
            visit(module, [module])
    assert circles == []


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_runs_from_a_lower_layer_up(module):
    layer = LAYER[module.split(".")[0]]
    upward = sorted(m for m in product_imports(module) if LAYER[m.split(".")[0]] > layer)
    assert upward == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("domain")))
def test_the_domain_imports_no_sdk(module):
    assert sorted(m for m in GRAPH[module] if m.split(".")[0] in SDKS) == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith(TARGETS)))
def test_a_target_never_imports_another_target(module):
    own = next(t for t in TARGETS if module.startswith(t))
    others = sorted(
        m for m in product_imports(module) if m.startswith(TARGETS) and not m.startswith(own)
    )
    assert others == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith(("flows", "tasks"))))
def test_flows_and_tasks_reach_docker_and_aws_only_through_a_target(module):
    sdk = sorted(m for m in GRAPH[module] if m.split(".")[0] in ("docker", "boto3", "botocore"))
    assert sdk == []
    if module.startswith("flows"):
        assert sorted(m for m in product_imports(module) if m.startswith("targets")) == []


def test_the_work_pool_command_imports_only_the_standard_library():
    """Its start is part of every deployment run's start (launcher/start.py)."""
    imported = {name.split(".")[0] for name in GRAPH["launcher.start"]}
    assert sorted(imported - set(sys.stdlib_module_names) - {"__future__"}) == []


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_the_product_imports_neither_the_testbed_nor_the_benchmarks_nor_the_tests(module):
    beside = ("testbed", "benchmarks", "tests")
    assert sorted(m for m in GRAPH[module] if m.split(".")[0] in beside) == []


@pytest.mark.parametrize("module", sorted(OUTSIDE))
def test_the_testbed_and_the_benchmarks_never_import_the_tests(module):
    """The benchmarks and the tests share scaffolding through testbed/, never through tests/."""
    forbidden = NEVER_IMPORTS[module.split(".")[0]]
    assert sorted(m for m in OUTSIDE[module] if m.split(".")[0] in forbidden) == []
