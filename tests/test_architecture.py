"""The shape of the code, checked by reading it: `ast` over `libs`, `gateway`, `services` and
`dashboard`, nothing imported, nothing run.

1. **A service never imports another.** No module of `services.X` imports `services.Y`.
2. **`libs.common` is shared, not a client.** It imports no service, not the gateway and
   not the dashboard. **The dashboard is a client of the gateway:** it reaches the platform
   over HTTP only, and imports no service and not the gateway (libs.common, yes).
3. **Only store and migration modules run SQL.** A store module is one named `store`:
   `store.py`, or any module of a `store/` package. A migration module is one under a
   `migrations/` or `alembic/` folder, or `migrations.py`. A module runs SQL when it
   - executes a statement: calls `execute`, `exec`, `exec_driver_sql`, `scalar`,
     `scalars`, `stream`, `fetch`, `fetchrow`, `fetchval`, `executemany` or any `copy_…`
     with an argument, on whatever object (a SQLAlchemy connection or session, an asyncpg
     connection or pool). Not executing: the same names called without an argument (a
     result's `scalar()` / `scalars()`), and `fetch` on a JetStream pull subscription (a
     receiver named `sub`, `…_sub` or `subscription`), which takes messages;
   - or builds a whole statement: calls SQLAlchemy's (or SQLModel's) `select`, `insert`,
     `update`, `delete` or `text`, the postgresql dialect's `insert` included, however
     imported. The Table methods of the same names (`table.insert()`) are not recognised,
     since `dict.update` and `list.insert` share them: stores use the functions.
   Schema is not a statement: a call inside the arguments of a table definition (`Table`,
   `Column`, `Index`, a constraint, `Computed`…), such as a `server_default` or an index
   predicate written with `text`. Nor is an expression: a function annotated to return a
   `ColumnElement` builds a piece of a WHERE clause for a store, and a subquery in it runs
   as part of the store's statement.
4. **Imports form a tree.** Every `import` and `from … import` between modules of the three
   packages, wherever it is written (inside functions and `if TYPE_CHECKING:` too), is an
   edge; the graph has no cycle. `from package import name` is an edge to the module
   `package.name` when there is one, else to the package.

Each failure names the file and line. The `test_check_*` tests feed the checks a small tree
of their own, to prove each one fires.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("libs", "gateway", "services", "dashboard")

EXECUTING = frozenset(
    {
        "execute",
        "exec",
        "exec_driver_sql",
        "scalar",
        "scalars",
        "stream",
        "fetch",
        "fetchrow",
        "fetchval",
        "executemany",
    }
)
STATEMENT_BUILDERS = frozenset({"select", "insert", "update", "delete", "text"})
SCHEMA_CONSTRUCTS = frozenset(
    {
        "Table",
        "Column",
        "Index",
        "CheckConstraint",
        "UniqueConstraint",
        "PrimaryKeyConstraint",
        "ForeignKeyConstraint",
        "ForeignKey",
        "ExcludeConstraint",
        "Computed",
        "Identity",
        "Sequence",
        "mapped_column",
    }
)
SQL_LIBRARIES = ("sqlalchemy", "sqlmodel")
SUBSCRIPTION = re.compile(r"(^|_)sub(scription)?$")
EXPRESSION_BUILDER = re.compile(r"^['\"]?([\w.]+\.)?ColumnElement\b")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool

    @property
    def service(self) -> str | None:
        """`registry` for a module of services.registry."""
        parts = self.name.split(".")
        return parts[1] if parts[0] == "services" and len(parts) > 1 else None

    def is_store(self) -> bool:
        return "store" in self.name.split(".")

    def is_migration(self) -> bool:
        folders = self.path.parts[:-1]
        return "migrations" in folders or "alembic" in folders or self.path.name == "migrations.py"


@dataclass(frozen=True)
class Import:
    source: Module
    line: int
    target: str

    def at(self) -> str:
        return f"{self.source.path}:{self.line}"


def load(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Module]:
    """Every module of the packages, by dotted name."""
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            parts = list(relative.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            tree = ast.parse(path.read_text(encoding="utf-8"), str(relative))
            modules[name] = Module(name, relative, tree, is_package)
    return modules


def imports(module: Module, modules: dict[str, Module]) -> Iterator[Import]:
    """Every import the module writes, at any depth, as the module it reaches."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.name.split(".")
                if not module.is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(module, node.lineno, submodule if submodule in modules else base)


def _within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


# ---------------------------------------------------------------- the checks


def services_importing_services(modules: dict[str, Module]) -> list[str]:
    found = []
    for module in modules.values():
        if module.service is None:
            continue
        for imp in imports(module, modules):
            parts = imp.target.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] != module.service:
                found.append(f"{imp.at()}: services.{module.service} imports {imp.target}")
    return found


def common_importing_apps(modules: dict[str, Module]) -> list[str]:
    found = []
    for module in modules.values():
        if not _within(module.name, "libs.common"):
            continue
        for imp in imports(module, modules):
            if any(_within(imp.target, p) for p in ("services", "gateway", "dashboard")):
                found.append(f"{imp.at()}: libs.common imports {imp.target}")
    return found


def dashboard_importing_platform(modules: dict[str, Module]) -> list[str]:
    found = []
    for module in modules.values():
        if not _within(module.name, "dashboard"):
            continue
        for imp in imports(module, modules):
            if _within(imp.target, "services") or _within(imp.target, "gateway"):
                found.append(f"{imp.at()}: the dashboard imports {imp.target}")
    return found


class _SqlFinder(ast.NodeVisitor):
    """The places in one module that execute SQL or build a statement."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.found: list[str] = []
        self._names = self._imported_names(module.tree)
        self._in_schema = 0
        self._in_expression_builder = 0

    @staticmethod
    def _imported_names(tree: ast.Module) -> dict[str, str]:
        """Local name → the dotted name it was imported as."""
        names: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        names[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        return names

    def _qualified(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self._names.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = self._qualified(node.value)
            return f"{owner}.{node.attr}" if owner else None
        return None

    def _sql_name(self, node: ast.expr) -> str | None:
        """The last part of a SQL library's function the call names, if it does."""
        qualified = self._qualified(node)
        if qualified is None or qualified.split(".")[0] not in SQL_LIBRARIES:
            return None
        return qualified.rsplit(".", 1)[-1]

    def _report(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.module.path}:{getattr(node, 'lineno', 0)}: {what}")

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        returns = ast.unparse(node.returns) if node.returns is not None else ""
        builder = bool(EXPRESSION_BUILDER.match(returns))
        self._in_expression_builder += builder
        self.generic_visit(node)
        self._in_expression_builder -= builder

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = self._sql_name(func)
        if name in SCHEMA_CONSTRUCTS:
            self._in_schema += 1
            self.generic_visit(node)
            self._in_schema -= 1
            return
        if name in STATEMENT_BUILDERS and not self._in_schema and not self._in_expression_builder:
            self._report(node, f"builds a statement with {ast.unparse(func)}(…)")
        elif isinstance(func, ast.Attribute) and self._executes(func, node):
            self._report(node, f"executes SQL with {ast.unparse(func)}(…)")
        self.generic_visit(node)

    @staticmethod
    def _executes(func: ast.Attribute, call: ast.Call) -> bool:
        if func.attr not in EXECUTING and not func.attr.startswith("copy_"):
            return False
        if not call.args and not call.keywords:
            return False
        if func.attr == "fetch":
            return not SUBSCRIPTION.search(_last_name(func.value))
        return True


def _last_name(node: ast.expr) -> str:
    """`_sub` for `self._sub`, `pg` for `pg`; empty for anything else."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def sql_outside_stores(modules: dict[str, Module]) -> list[str]:
    found = []
    for module in modules.values():
        if module.is_store() or module.is_migration():
            continue
        finder = _SqlFinder(module)
        finder.visit(module.tree)
        found.extend(finder.found)
    return found


def import_cycles(modules: dict[str, Module]) -> list[str]:
    """One cycle per strongly connected group of modules, each edge with its file:line."""
    edges: dict[str, dict[str, Import]] = {name: {} for name in modules}
    for module in modules.values():
        for imp in imports(module, modules):
            if imp.target in modules and imp.target != module.name:
                edges[module.name].setdefault(imp.target, imp)
    cycles = []
    for group in _strongly_connected(edges):
        if len(group) > 1:
            cycles.append(_describe_cycle(_cycle_in(group, edges)))
    return sorted(cycles)


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            advanced = False
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges[target]))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _cycle_in(group: set[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """The shortest path from the group's first module (by name) back to it, as imports."""
    start = min(group)
    came_by: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, imp in sorted(edges[node].items()):
                if target not in group or target in came_by:
                    continue
                came_by[target] = imp
                if target == start:
                    path = [imp]
                    while path[0].source.name != start:
                        path.insert(0, came_by[path[0].source.name])
                    return path
                following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def _describe_cycle(path: list[Import]) -> str:
    return "import cycle: " + " → ".join(f"{imp.at()} imports {imp.target}" for imp in path)


# ---------------------------------------------------------------- the repository


def _failure(title: str, found: list[str]) -> str:
    return f"{title}:\n  " + "\n  ".join(found)


MODULES = load()


def test_no_service_imports_another() -> None:
    found = services_importing_services(MODULES)
    assert not found, _failure("a service imports another service", found)


def test_common_imports_no_service_nor_the_gateway() -> None:
    found = common_importing_apps(MODULES)
    assert not found, _failure("libs.common imports a service or the gateway", found)


def test_dashboard_imports_no_service_nor_the_gateway() -> None:
    found = dashboard_importing_platform(MODULES)
    assert not found, _failure("the dashboard imports a service or the gateway", found)


def test_only_stores_and_migrations_run_sql() -> None:
    found = sql_outside_stores(MODULES)
    assert not found, _failure("SQL outside a store.py or a migration", found)


def test_imports_form_a_tree() -> None:
    found = import_cycles(MODULES)
    assert not found, _failure("circular imports", found)


# ---------------------------------------------------------------- the checks fire


def _tree(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return load(root)


def test_check_service_imports(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "services/__init__.py": "",
            "services/a/__init__.py": "",
            "services/a/api.py": "from services.a import store\n\n\ndef f():\n"
            "    from services.b.domain import rule\n",
            "services/a/store.py": "",
            "services/b/__init__.py": "",
            "services/b/domain.py": "rule = 1\n",
            "services/b/app.py": "from ..a import api\nfrom libs.common import db\n",
        },
    )
    assert services_importing_services(modules) == [
        "services/a/api.py:5: services.a imports services.b.domain",
        "services/b/app.py:1: services.b imports services.a.api",
    ]


def test_check_common_imports(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "libs/common/__init__.py": "",
            "libs/common/db.py": "import gateway.app\nfrom libs.common import errors\n",
            "libs/common/errors.py": "def f():\n    from services.a import api\n",
            "libs/other.py": "import gateway\n",
            "gateway/app.py": "",
            "services/a/api.py": "",
        },
    )
    assert common_importing_apps(modules) == [
        "libs/common/db.py:1: libs.common imports gateway.app",
        "libs/common/errors.py:2: libs.common imports services.a.api",
    ]


def test_check_sql(tmp_path: Path) -> None:
    statements = (
        "import sqlalchemy as sa\n"
        "from sqlalchemy import Column, ColumnElement, Index, Integer, Table, select, text\n"
        "from sqlalchemy.dialects import postgresql\n"
        "\n"
        "\n"
        "async def run(conn, pg, t, result):\n"
        "    await conn.execute(select(t))\n"
        "    await pg.fetch('SELECT 1')\n"
        "    await pg.copy_records_to_table('t', records=[])\n"
        "    stmt = postgresql.insert(t).values(a=1)\n"
        "    clause = sa.text('x = 1')\n"
        "    result.scalars()\n"
        "    await self._sub.fetch(10, timeout=1.0)\n"
        "\n"
        "\n"
        "def visible(t) -> ColumnElement[bool]:\n"
        "    return t.c.id.in_(select(t.c.id)) & text('true')\n"
        "\n"
        "\n"
        "def table(metadata):\n"
        "    return Table('t', metadata, Column('n', Integer, server_default=text('0')),\n"
        "                 Index('ix', 'n', postgresql_where=text('n > 0')))\n"
    )
    modules = _tree(
        tmp_path,
        {
            "services/a/service.py": statements,
            "services/a/store.py": statements,
            "services/a/store/reads.py": statements,
            "services/a/migrations/versions/0001_first.py": statements,
            "libs/common/alembic/env.py": statements,
        },
    )
    assert sql_outside_stores(modules) == [
        "services/a/service.py:7: executes SQL with conn.execute(…)",
        "services/a/service.py:7: builds a statement with select(…)",
        "services/a/service.py:8: executes SQL with pg.fetch(…)",
        "services/a/service.py:9: executes SQL with pg.copy_records_to_table(…)",
        "services/a/service.py:10: builds a statement with postgresql.insert(…)",
        "services/a/service.py:11: builds a statement with sa.text(…)",
    ]


def test_check_cycles(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "libs/common/__init__.py": "",
            "libs/common/events/__init__.py": "from libs.common.events.catalog import Event\n",
            "libs/common/events/base.py": "",
            "libs/common/events/catalog.py": "from . import base\n"
            "from libs.common.events.funds import Granted\n",
            "libs/common/events/funds.py": "def late():\n"
            "    from libs.common.events.catalog import Event\n",
            "gateway/app.py": "import libs.common.events\n",
        },
    )
    assert import_cycles(modules) == [
        "import cycle: "
        "libs/common/events/catalog.py:2 imports libs.common.events.funds → "
        "libs/common/events/funds.py:2 imports libs.common.events.catalog"
    ]
