"""References in the repository resolve inside it: every ``docs/reference_notes.md §n`` that code, configs or docs
cite names a section of that file, and nothing cites the notes file that lived outside the repository
(issue 16, item 6)."""

import re
import subprocess
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
NOTES = REPO / "docs" / "reference_notes.md"
OLD_NAME = "REFERENCE" + "_NOTES"   # the absent file's name, spelt so that this test does not cite it
SECTION = re.compile(r"^##\s+§(\d+)\b", re.M)
# 'docs/reference_notes.md §3', '`docs/reference_notes.md` §3', '[docs/reference_notes.md](../../docs/reference_notes.md) §3'
CITATION = re.compile(r"reference_notes\.md`?(?:\]\([^)\s]*\))?\s*§\s*(\d+)")
SKIP_SUFFIXES = {".png", ".jpg", ".pdf", ".pt", ".zip", ".npz", ".gz", ".pkl"}


def repo_files() -> list[Path]:
    """The repository's files: tracked and untracked-but-not-ignored (git), else every file outside .git/.venv."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
        paths = [REPO / p for p in out.splitlines()]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in REPO.rglob("*") if not {".git", ".venv"} & set(p.relative_to(REPO).parts)]
    return [p for p in paths if p.is_file() and p.suffix not in SKIP_SUFFIXES]


def texts():
    for p in repo_files():
        try:
            yield p.relative_to(REPO).as_posix(), p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue


def sections() -> set[int]:
    return {int(n) for n in SECTION.findall(NOTES.read_text(encoding="utf-8"))}


def test_the_notes_have_numbered_sections_one_to_six():
    assert sections() == {1, 2, 3, 4, 5, 6}


def test_the_patterns_read_every_citation_form():
    cited = CITATION.findall("a (docs/reference_notes.md §5) b `docs/reference_notes.md` §3 c "
                             "[docs/reference_notes.md](../../docs/reference_notes.md) §4 d docs/reference_notes.md§2")
    assert cited == ["5", "3", "4", "2"]
    assert SECTION.findall("## §1 Knowledge Flow\ntext §7\n## §12 x\n### §9 not a section") == ["1", "12"]


def test_every_citation_names_a_section_that_exists():
    have, cited, bad = sections(), {}, []
    for rel, text in texts():
        for m in CITATION.finditer(text):
            n = int(m.group(1))
            cited.setdefault(n, []).append(rel)
            if n not in have:
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{rel}:{line}: cites §{n}; docs/reference_notes.md has {sorted(have)}")
    assert not bad, "\n".join(bad)
    # the code and docs cite every section (a section nobody cites is fine, but today all six are)
    assert set(cited) == have, f"uncited sections: {sorted(have - set(cited))}"


def test_no_file_cites_the_notes_outside_the_repository():
    bad = [f"{rel}:{text.count(chr(10), 0, text.index(OLD_NAME)) + 1}" for rel, text in texts() if OLD_NAME in text]
    assert not bad, f"cite docs/reference_notes.md §n instead of {OLD_NAME} in: {bad}"
