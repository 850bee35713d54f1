"""The shared modules depend on no paper: no module under common/ imports papers (issue 16, item 1).

Imports are read from each module's syntax tree at any depth, so an import inside a function counts as much as
one at the top, and relative imports are resolved against the module's package.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `source`, a module of `package`; `from a import b` gives a and a.b."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found += [(node.lineno, module)] + [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return found


def imports_a_paper(module: str) -> bool:
    return module == "papers" or module.startswith("papers.")


def test_the_reader_sees_lazy_relative_and_from_imports():
    src = ("import os\nfrom . import zoo\n\ndef g():\n    from papers.cdrl import plan\n\n"
           "class C:\n    import papers.knowledge_flow.method as m\n")
    mods = [m for _, m in imported_modules(src, "common")]
    assert {"os", "common.zoo", "papers.cdrl", "papers.cdrl.plan", "papers.knowledge_flow.method"} <= set(mods)
    assert [imports_a_paper(m) for m in ("papers", "papers.cdrl", "papersfoo", "common.papers")] == [
        True, True, False, False]


def test_no_module_under_common_imports_a_paper():
    files = sorted((REPO / "common").rglob("*.py"))
    assert len(files) > 5
    bad = [f"{f.relative_to(REPO)}:{line}: imports {m}" for f in files
           for line, m in imported_modules(f.read_text(), ".".join(f.relative_to(REPO).parent.parts))
           if imports_a_paper(m)]
    assert not bad, "common/ must depend on no paper:\n" + "\n".join(bad)
