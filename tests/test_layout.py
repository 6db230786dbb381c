"""The layout's rules, checked from the code itself, so that they keep holding.

Each team's package is a room: the orchestrator reaches the other teams only through their Nexus
contracts, the IT and Finance packages know nothing of the agent, the CLI or each other, and only
the top-level programs import the CLI. Inside the agent, the loop sits at the top and its concerns
have rooms named for them, so a learner finds everything by its folder's name. Every module says
what it owns in a docstring and stays short enough to read in one sitting.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.core.names import PROJECT_ROOT

APP = PROJECT_ROOT / "app"
TEAMS = ("it", "finance")
# The style asks for modules of about 400 lines. The cap sits well above that on purpose: it fails
# a module that clearly holds two things, not one that grew a few lines past a round number (a
# cap at 400 was met exactly by two modules, squeezed to fit it rather than split at a seam).
MAX_MODULE_LINES = 500


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute (relative imports resolved), at any depth."""
    package = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts[:-1])
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
    """Every module `source` (a module of `package`) imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # `from app.it import service` imports app.it.service
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def modules_in(package: str) -> list[Path]:
    return sorted((APP / package).rglob("*.py"))


def app_imports(path: Path) -> set[str]:
    return {name for name in imports_of(path) if name == "app" or name.startswith("app.")}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_packages_are_the_four_owners_and_a_shared_core():
    packages = {p.name for p in APP.iterdir() if (p / "__init__.py").exists()}
    assert packages == {"agent", "it", "finance", "cli", "core"}
    assert sorted(p.name for p in APP.glob("*.py")) == ["__init__.py"]


def subpackages(package: Path) -> set[str]:
    return {p.name for p in package.iterdir() if (p / "__init__.py").exists()}


def test_the_rooms_name_the_agents_concerns():
    # The loop and its payloads at the top; the LLM, the tools and the stream in rooms of their own.
    agent = APP / "agent"
    assert (agent / "workflow.py").exists() and (agent / "models.py").exists()
    assert subpackages(agent) == {"llm", "tools", "stream"}
    assert (agent / "llm" / "activity.py").exists()  # plan_next_action
    assert (agent / "tools" / "catalog.py").exists()  # every tool, in one place
    assert subpackages(APP / "cli") == {"chat", "demo"}
    for team in TEAMS:
        # The contract other teams import, the handlers behind it, the worker that serves them.
        for module in ("service.py", "handler.py", "worker.py"):
            assert (APP / team / module).exists(), f"app/{team}/{module}"


@pytest.mark.parametrize("path", modules_in("agent"), ids=lambda p: p.name)
def test_the_agent_reaches_other_teams_only_through_their_contracts(path: Path):
    for name in app_imports(path):
        for team in TEAMS:
            if within(name, f"app.{team}"):
                contract = within(name, f"app.{team}.service") or name == f"app.{team}"
                assert contract, f"{path.name} imports {name}"


@pytest.mark.parametrize(
    "path",
    [p for team in TEAMS for p in modules_in(team)],
    ids=lambda p: p.parent.name + "/" + p.name,
)
def test_the_tool_teams_import_only_themselves_and_the_core(path: Path):
    own = f"app.{path.relative_to(APP).parts[0]}"
    for name in app_imports(path):
        assert within(name, own) or within(name, "app.core") or name == "app", (
            f"{path.relative_to(APP)} imports {name}"
        )


def test_only_the_top_level_programs_import_the_cli():
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)} imports {name}"
        for path in sorted(APP.rglob("*.py"))
        if not within(".".join(path.relative_to(PROJECT_ROOT).parts[:2]), "app.cli")
        for name in app_imports(path)
        if within(name, "app.cli")
    ]
    assert offenders == []


def test_the_core_imports_no_team():
    for path in modules_in("core"):
        for name in app_imports(path):
            assert within(name, "app.core"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sorted(APP.rglob("*.py")), ids=lambda p: str(p.relative_to(APP)))
def test_each_module_says_what_it_owns_and_stays_readable(path: Path):
    source = path.read_text()
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split it along the seam a reader would name"
    if source.strip():  # an empty __init__.py has nothing to describe
        assert ast.get_docstring(ast.parse(source)), "the module has no docstring"


def test_the_checks_find_imports_wherever_they_are_written():
    # The rules above would pass on nothing if imports_in() missed imports: check it finds these.
    source = (
        "from . import service\n"
        "from ..agent.workflow import AgentWorkflow\n"
        "def f():\n"
        "    import app.cli.chat.program\n"
        "with ctx():\n"
        "    from app.finance.handler import X\n"
    )
    found = imports_in(source, "app.it")
    assert {
        "app.it.service",
        "app.agent.workflow",
        "app.cli.chat.program",
        "app.finance.handler",
    } <= found
