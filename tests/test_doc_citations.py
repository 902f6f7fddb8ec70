"""Every test the docs cite exists: a threat model that names a deleted or renamed test claims a check
nobody runs any more (THREAT_MODEL.md cited `test_flapping.py::test_reconnect_outage_is_a_real_gap`
long after it was gone).

Citations are code spans: `tests/x/test_y.py` (the whole file), `tests/x/test_y.py::test_z`, and the
shorthand `::test_z` for another test of the file cited last before it (the threat model's tables use it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPAN = re.compile(r"`([^`\n]+)`")
FILE = re.compile(r"^(tests/[\w/]+\.py)(?:::(\w+))?$")
SHORTHAND = re.compile(r"^::(\w+)$")


def citations(text: str) -> list[tuple[str, str | None]]:
    """(file, test or None) for each citation, shorthands resolved to the file cited last."""
    out: list[tuple[str, str | None]] = []
    last: str | None = None
    for span in SPAN.findall(text):
        span = span.strip()
        if m := FILE.match(span):
            last = m.group(1)
            out.append((last, m.group(2)))
        elif (m := SHORTHAND.match(span)) and last is not None:
            out.append((last, m.group(1)))
        elif m:
            raise AssertionError(f"{span!r} follows no cited test file")
    return out


def defined_tests(path: Path) -> set[str]:
    """Module-level test functions and methods of test classes, as pytest collects them."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{n.name}" for n in node.body if isinstance(n, ast.FunctionDef)}
    return names


def test_the_parser_reads_every_form() -> None:
    text = "`tests/a/test_b.py::test_c`, `::test_d`; `tests/e/test_f.py` and `hub/x.py`"
    assert citations(text) == [
        ("tests/a/test_b.py", "test_c"),
        ("tests/a/test_b.py", "test_d"),
        ("tests/e/test_f.py", None),
    ]
    with pytest.raises(AssertionError):
        citations("`::test_orphan`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_cited_test_exists(doc: Path) -> None:
    missing = []
    for file, name in citations(doc.read_text(encoding="utf-8")):
        path = ROOT / file
        if not path.is_file():
            missing.append(file)
        elif name is not None and name not in defined_tests(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"{doc.name} cites tests that do not exist: {missing}"


def test_the_threat_model_cites_tests() -> None:
    # The check above would pass on a document that cites nothing.
    cited = citations((ROOT / "docs" / "THREAT_MODEL.md").read_text(encoding="utf-8"))
    assert len(cited) > 50 and sum(1 for _, name in cited if name) > 50
