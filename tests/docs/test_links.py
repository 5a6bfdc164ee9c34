"""The README and docs/ stay true to the tree: links resolve, cited files exist, pages name their code.

Checked in README.md and every docs/*.md:
- every relative Markdown link points at an existing file, and its #anchor at a heading there;
- every repository path they cite (`collector/tls/pipeline.py`, `bench/ingest.py`, `analyzer/rules/*.sql`,
  `tests/x.py::test_name`, in prose, tables or code blocks) exists, and every dotted module they cite
  (`analyzer.demo.zoo`, `collector.config.keylog_dir`) imports that name;
- the README links every docs page and stays short; each part's page names the files implementing it;
- no lab-notebook phrasing that only made sense while the text was being written.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.reference_docs import anchor

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
IDS = [str(p.relative_to(REPO)) for p in PAGES]

# top-level entries of the repository a cited path may start with
ROOTS = ("collector/", "analyzer/", "dashboard/", "deploy/", "tests/", "bench/", "docs/", ".ci/")
ROOT_FILES = ("pyproject.toml", "README.md")
PACKAGES = ("collector", "analyzer", "dashboard", "bench", "tests")

FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FILE_SUFFIX = re.compile(r"\.(md|py|sql|ya?ml|c|sh|toml|json|txt)$")
TOKEN = re.compile(r"[^\s`'\"()\[\]|,;]+")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file, with -1, -2 … for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = anchor(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_relative_links_resolve(page: Path) -> None:
    bad = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, frag = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif frag and (dest.suffix != ".md" or frag not in _anchors(dest)):
            bad.append(f"{target}: no heading with anchor #{frag} in {dest.relative_to(REPO)}")
    assert not bad, f"{page.relative_to(REPO)}: " + "; ".join(bad)


def _defined_names(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _check_path(token: str) -> str | None:
    """None if the cited repository path exists, else why not."""
    path, _, func = token.partition("::")
    path = path.partition("#")[0].rstrip(".:")  # a link's #anchor is test_relative_links_resolve's business
    if "*" in path:
        return None if list(REPO.glob(path)) else f"{path} matches no file"
    f = REPO / path
    if not f.exists():
        return f"{path} does not exist"
    if func and func not in {n.name for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.FunctionDef)}:
        return f"{path} has no function {func}"
    return None


def _check_module(token: str) -> str | None:
    """None if a dotted name such as collector.config.keylog_dir resolves to a module (and attribute)."""
    parts = token.removesuffix("()").split(".")
    base = REPO
    for i, part in enumerate(parts):
        if (base / part / "__init__.py").exists() or (base / part).is_dir():
            base = base / part
            continue
        if (base / f"{part}.py").exists():
            rest = parts[i + 1 :]
            if rest and rest[0] not in _defined_names(base / f"{part}.py"):
                return f"{token}: {'.'.join(parts[: i + 1])} defines no {rest[0]}"
            return None
        if i >= 2:  # a package followed by an attribute of its __init__
            return None if part in _defined_names(base / "__init__.py") else f"{token}: no module or name {part}"
        return f"{token}: no module {'.'.join(parts[: i + 1])}"
    return None


def _cited(text: str) -> list[str]:
    out = []
    for tok in TOKEN.findall(text):
        tok = tok.strip(".:")
        if any(c in tok for c in "<>{}$…=") or "//" in tok:
            continue
        if tok.startswith(ROOTS) or tok in ROOT_FILES:
            out.append(("path", tok))
        elif re.fullmatch(rf"({'|'.join(PACKAGES)})(\.[A-Za-z_]\w*)+(\(\))?", tok) and not FILE_SUFFIX.search(tok):
            out.append(("module", tok))
    return out


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_cited_files_exist(page: Path) -> None:
    cited = _cited(page.read_text())
    bad = [why for kind, tok in cited if (why := (_check_path if kind == "path" else _check_module)(tok))]
    assert not bad, f"{page.relative_to(REPO)} cites: " + "; ".join(sorted(set(bad)))


def test_the_checks_catch_what_they_should() -> None:
    """The checkers themselves: a missing file, function, module or name is reported."""
    assert _check_path("collector/ebpf/probes.bpf.c") is None and _check_path("analyzer/rules/*.sql") is None
    assert _check_path("collector/ebpf/probes.c") and _check_path("analyzer/rules/*.yql")
    assert _check_path("tests/e2e/test_coverage_matrix.py::test_every_cited_test_exists") is None
    assert _check_path("tests/e2e/test_coverage_matrix.py::test_gone")
    assert _check_module("collector.config.keylog_dir()") is None and _check_module("analyzer.demo.zoo") is None
    assert _check_module("collector.config.no_such_name") and _check_module("collector.nothing.here")
    kinds = _cited("see `collector/tls/pipeline.py`, run `python -m bench.decode` (not /etc/x or <a>/b.py)")
    assert kinds == [("path", "collector/tls/pipeline.py"), ("module", "bench.decode")]
    assert "proxy-mode" in _anchors(DOCS / "agents-and-proxy.md")


def test_readme_links_every_docs_page_and_stays_short() -> None:
    readme = (REPO / "README.md").read_text()
    linked = {(REPO / t.partition("#")[0]).resolve() for t in LINK.findall(_prose(readme))}
    missing = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not missing, f"README.md does not link docs pages {missing}"
    lines = readme.count("\n")
    assert lines <= 250, f"README.md has {lines} lines: put details into the docs/ page of their part"


# Each part's page names the files that implement it (the eBPF program, the TLS decryptor, the rules, the pages).
IMPLEMENTED_BY = {
    "collector-and-ebpf.md": ["collector/ebpf/probes.bpf.c", "collector/ebpf/loader.py", "collector/live/collect.py"],
    "decryption.md": ["collector/tls/native_decrypt.py", "collector/tls/pipeline.py", "collector/ingest.py",
                      "collector/llm/pipeline.py"],
    "agents-and-proxy.md": ["collector/wrap.py", "collector/proxy/server.py", "collector/inventory/scan.py",
                            "collector/ebpf/go_tls.py"],
    "analyzer-and-rules.md": ["analyzer/engine.py", "analyzer/rules/", "collector/catalog/catalog.yaml",
                              "analyzer/ledger.py"],
    "dashboard.md": ["dashboard/app.py", "dashboard/views/", "dashboard/queries.py"],
    "store-and-fleet.md": ["collector/store/schema.py", "collector/store/writer.py"],
    "security.md": ["collector/secrets.py", "dashboard/auth.py"],
    "deploy.md": ["deploy/install.sh", "deploy/systemd/routerwatch-collector.service"],
}


@pytest.mark.parametrize("name", sorted(IMPLEMENTED_BY))
def test_each_part_page_names_its_files(name: str) -> None:
    text = (DOCS / name).read_text()
    missing = [f for f in IMPLEMENTED_BY[name] if f"`{f}" not in text]
    assert not missing, f"docs/{name} does not name {missing}"


DIARY = re.compile(r"\bthis round\b|\bother engineers\b|\bcause not found\b|\bthe issue'?s\b|\bissue #?\d+\b", re.I)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_no_lab_notebook_phrasing(page: Path) -> None:
    hits = [ln.strip() for ln in page.read_text().splitlines() if DIARY.search(ln)]
    assert not hits, f"{page.relative_to(REPO)}: write for a reader, not as a diary: {hits[:3]}"
