"""The pipe file's sections depend on each other in one direction: each uses only what stands above it.

The map at the top of the file says so; this keeps it true. A section starts at a separator line
(`# ---...`); the first one (frontmatter, map, imports, constants) is the file's head."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

PIPE = Path(__file__).resolve().parent.parent / "pipe_n8n_stream.py"
SEPARATOR = "# " + "-" * 75


@dataclass(frozen=True)
class Section:
    title: str
    first_line: int


def sections(source: str) -> list[Section]:
    """The file's sections, each named by the first words of the comment under its separator."""
    lines = source.splitlines()
    found = [Section("head", 1)]
    for number, line in enumerate(lines, start=1):
        if line == SEPARATOR:
            title = lines[number].removeprefix("# ").split(":", 1)[0] if number < len(lines) else ""
            found.append(Section(title, number))
    return found


def section_of(line: int, all_sections: list[Section]) -> int:
    return max(i for i, s in enumerate(all_sections) if s.first_line <= line)


def defined_names(statement: ast.stmt) -> list[str]:
    """The module-level names one top-level statement defines."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [statement.name]
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
        targets = [statement.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def uses_against_direction(source: str) -> list[str]:
    """Every use of a module-level name defined in a later section, as 'line N: name (user -> owner)'."""
    tree = ast.parse(source)
    all_sections = sections(source)
    owner: dict[str, int] = {}
    for statement in tree.body:
        for name in defined_names(statement):
            owner.setdefault(name, section_of(statement.lineno, all_sections))
    wrong = []
    for statement in tree.body:
        if is_main_guard(statement):
            continue
        for node, local in module_name_uses(statement):
            if node.id not in owner or node.id in local:
                continue
            user = section_of(node.lineno, all_sections)
            if owner[node.id] > user:
                users, owners = all_sections[user].title, all_sections[owner[node.id]].title
                wrong.append(f"line {node.lineno}: {node.id} ({users} uses {owners})")
    return wrong


def module_name_uses(node: ast.AST, local: frozenset[str] = frozenset()) -> list[tuple[ast.Name, frozenset[str]]]:
    """Every name read under `node`, with the names local to the functions around it (their parameters and
    what they assign): a parameter called `webhook_url` is no use of the function `webhook_url`."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        arguments = node.args
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
        assigned = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        local = local | {a.arg for a in every if a is not None} | assigned
    uses = [(node, local)] if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) else []
    for child in ast.iter_child_nodes(node):
        uses += module_name_uses(child, local)
    return uses


def is_main_guard(statement: ast.stmt) -> bool:
    """`if __name__ == "__main__": main()` runs after the whole file is read: it may call the command line."""
    test = statement.test if isinstance(statement, ast.If) else None
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"


def test_each_section_uses_only_the_sections_above_it() -> None:
    assert uses_against_direction(PIPE.read_text(encoding="utf-8")) == []


def test_the_check_names_a_use_against_the_direction() -> None:
    source = f"A = 1\n{SEPARATOR}\n# First: one\nB = C\ndef f(C): return C\n{SEPARATOR}\n# Second: two\nC = A\n"
    assert uses_against_direction(source) == ["line 4: C (First uses Second)"]


def test_the_map_names_every_section_in_order() -> None:
    source = PIPE.read_text(encoding="utf-8")
    head = source[: source.index("from __future__")]
    rows = [m.group(1) for m in re.finditer(r"^#   (\S.*?)(?:\s{2,}|$)", head, re.MULTILINE)]
    assert rows == [s.title for s in sections(source)[1:]]
