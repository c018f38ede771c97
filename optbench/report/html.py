"""`optbench report`: one Markdown report and one standalone HTML page per suite, with
the summary tables, the plots, a grid per curve, and the commands and versions that
produced them, so a reader can cite a row. The HTML embeds its images (base64), so the
page is a single file that can be mailed or archived."""
from __future__ import annotations

import base64
import html as html_lib
import re
from pathlib import Path

import markdown

from optbench.storage import write_atomic
from markdown.extensions import Extension

from optbench.text import md_code, md_text

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code{background:#f5f5f5;padding:1px 4px}
pre{background:#f5f5f5;padding:8px;overflow-x:auto}"""


def report_markdown(suite_dir: Path) -> str:
    from optbench.grids import grid_files
    from optbench.report.summary import load_cells, suite_meta
    suite_dir = Path(suite_dir)
    summary = (suite_dir / "summary.md").read_text()
    meta = suite_meta(suite_dir)
    loaded = load_cells(suite_dir)
    cells = [c["meta"] for c in loaded]
    versions = cells[0].get("versions") if cells else {}
    versions = versions if isinstance(versions, dict) else {}
    commits = sorted({str(c.get("git_commit", "unknown")) for c in cells})
    wall = sum(c["wall_seconds"] for c in cells if isinstance(c.get("wall_seconds"), (int, float)))
    parts = [summary, "## Curves", ""]
    for plot in sorted((suite_dir / "plots").glob("curves*.png")):
        parts += [f"![{plot.stem}](plots/{plot.name})", ""]
    for plot, title in (("equal_proxy.png", "Equal proxy score"), ("goodhart.png", "Goodhart-law fits")):
        if (suite_dir / "plots" / plot).exists():
            parts += [f"## {title}", "", f"![{plot}](plots/{plot})", ""]
    parts += ["## Image grids", "", "One row per pressure level; first seed of each curve.", ""]
    for label, (_, name) in grid_files(loaded).items():
        if (suite_dir / "plots" / name).is_file():
            parts += [f"### {md_text(label, in_table=False)}", "", f"![{name[:-4]}](plots/{name})", ""]
    parts += ["## Provenance", "",
              f"- command: {md_code(meta.get('command', ''))} "
              f"(suite file {md_code(meta.get('source_file', ''))})",
              f"- cells: {len(cells)}, total cell time {wall:.0f} s",
              f"- git commit: {md_text(', '.join(commits) or 'unknown', in_table=False)}",
              "- versions: " + md_text(", ".join(f"{k} {v}" for k, v in versions.items()), in_table=False),
              "- every curve point: `curves.csv` (one row per cell and level); per cell: "
              "`<cell-id>/spec.json`, `curve.json`, `meta.json`", ""]
    return "\n".join(parts)


class _TextOnly(Extension):
    """Treat raw HTML and links in the Markdown as text. Labels, descriptions and commands
    come from suite files and folder names: a label `<script>...</script>` must show as
    text, not run. Our own Markdown holds no raw HTML and no links, only images (kept).
    Unlike escaping the source ourselves, this leaves code spans escaped exactly once."""

    def extendMarkdown(self, md):
        md.preprocessors.deregister("html_block")
        for name in ("html", "link", "reference", "short_reference", "autolink", "automail"):
            md.inlinePatterns.deregister(name)   # links could carry javascript: URLs


def _inside(base: Path, src: str) -> Path | None:
    """The file `src` names, if it lies inside the suite folder `base` once every
    symbolic link is followed; None for anything else (an absolute path, '..', a link
    out of the folder): the page must never carry a file from elsewhere."""
    root = base.resolve()
    path = (root / html_lib.unescape(src)).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _embed_images(html: str, base: Path) -> str:
    def repl(m: re.Match) -> str:
        path = _inside(Path(base), m.group(2))
        if path is None:   # missing, or not ours to carry: the page keeps only the reference
            return m.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'{m.group(1)}src="data:image/png;base64,{data}"'
    # Only inside real <img> tags: text such as a label reading src="x.png" is not a tag.
    return re.sub(r'(<img [^>]*?)src="([^"]+\.png)"', repl, html)


def markdown_page(md: str, base: Path, title: str) -> str:
    """A standalone HTML page of our Markdown, its images (inside `base`) embedded."""
    body = markdown.markdown(md, extensions=["tables", "fenced_code", _TextOnly()])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html_lib.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{_embed_images(body, Path(base))}</body></html>\n")


def write_report(suite_dir: Path) -> tuple[Path, Path]:
    suite_dir = Path(suite_dir)
    md = report_markdown(suite_dir)
    md_path = suite_dir / "report.md"
    write_atomic(md_path, md)
    html = markdown_page(md, suite_dir, f"optbench: {suite_dir.name}")
    html_path = suite_dir / "report.html"
    write_atomic(html_path, html)
    return md_path, html_path
