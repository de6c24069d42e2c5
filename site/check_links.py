"""Check every internal link of the built site, offline: `python site/check_links.py build/site`.

Every relative ``href``/``src`` (a, link, img, script, iframe, source, video, audio) of every page (every .html
file outside ``_static/``) must resolve to a file inside the site, and every ``#fragment`` on an HTML target
must be an ``id`` (or ``<a name>``) there. External links are never fetched (CI has no network): links into
this repository on GitHub or Colab (``…/diffusion-edu/diffusion-edu/blob/main/PATH``) are checked against the
checkout instead, so a Colab link to a renamed notebook fails too; other external links are only counted.
Exit status 1 on any broken link.
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
LINK_ATTRS = {"a": "href", "link": "href", "img": "src", "script": "src", "iframe": "src", "source": "src",
              "video": "src", "audio": "src", "area": "href"}


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str, int]] = []  # (tag, url, line)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        attr = LINK_ATTRS.get(tag)
        if attr and attrs.get(attr) is not None:
            self.links.append((tag, attrs[attr].strip(), self.getpos()[0]))

    handle_startendtag = handle_starttag


def _repo_prefixes(root: Path) -> list[re.Pattern]:
    setting = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["diffusion-edu"]
    repo, branch = re.escape(setting["repository"]), re.escape(setting["branch"])
    return [re.compile(rf"https://colab\.research\.google\.com/github/{repo}/blob/{branch}/(?P<path>[^?#]+)"),
            re.compile(rf"https://github\.com/{repo}/(?:blob|tree)/{branch}/(?P<path>[^?#]*)")]


def check(site: Path, root: Path = ROOT) -> tuple[list[str], dict[str, int]]:
    """(problems, counts) for the site folder ``site``; ``root`` is the checkout the repository links point into."""
    site = site.resolve()
    pages: dict[Path, Page] = {}
    for path in sorted(site.rglob("*.html")):
        if path.relative_to(site).parts[0] == "_static":  # assets: e.g. the theme's Jinja macros, copied as is
            continue
        page = Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        pages[path] = page
    repo_links = _repo_prefixes(root)
    problems, counts = [], {"pages": len(pages), "internal": 0, "anchors": 0, "repository": 0, "external": 0}
    for path, page in pages.items():
        where = path.relative_to(site).as_posix()
        for tag, url, line in page.links:
            if not url or url == "#":
                continue
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//"):
                for pattern in repo_links:
                    match = pattern.fullmatch(url.split("#")[0].split("?")[0])
                    if match:
                        counts["repository"] += 1
                        if not (root / unquote(match["path"])).exists():
                            problems.append(f"{where}:{line}: {url} points at {match['path']}, "
                                            "which is not in the repository")
                        break
                else:
                    counts["external"] += 1
                continue
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if parts.path.endswith("/") or target.is_dir():
                target = target / "index.html"
            if site not in target.parents and target != site:
                problems.append(f"{where}:{line}: <{tag}> {url} leaves the site")
                continue
            counts["internal"] += 1
            if not target.is_file():
                problems.append(f"{where}:{line}: <{tag}> {url}: no such file {target.relative_to(site)}")
                continue
            if parts.fragment and target.suffix == ".html":
                counts["anchors"] += 1
                if unquote(parts.fragment) not in pages[target].ids:
                    problems.append(f"{where}:{line}: <{tag}> {url}: no id {parts.fragment!r} in "
                                    f"{target.relative_to(site).as_posix()}")
    return problems, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site", type=Path, help="the built site, e.g. build/site")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        print(f"check_links: {args.site} holds no built site (no index.html): run `make site`", file=sys.stderr)
        return 1
    problems, n = check(args.site)
    for problem in problems:
        print(f"check_links: {problem}", file=sys.stderr)
    print(f"check_links: {n['pages']} pages, {n['internal']} internal links ({n['anchors']} with anchors) and "
          f"{n['repository']} links into the repository checked; {n['external']} other external links not "
          f"fetched; {len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
