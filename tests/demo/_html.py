"""A small tree over the report's HTML (stdlib ``html.parser``), enough to find elements by tag,
id and class and read their text, plus the graph as XML (``xml.etree``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                  "source", "track", "wbr"})
SVG_NS = "{http://www.w3.org/2000/svg}"


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    parts: list[str | Element] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, *, cls: str | None = None) -> list[Element]:
        return [e for e in self.iter() if (tag is None or e.tag == tag)
                and (cls is None or cls in e.classes)]

    def by_id(self, ident: str) -> Element:
        found = [e for e in self.iter() if e.attrs.get("id") == ident]
        assert len(found) == 1, f"expected one element with id={ident!r}, found {len(found)}"
        return found[0]

    def rows(self) -> list[list[str]]:
        """A table's body rows as cell texts."""
        body = self.find_all("tbody")[0]
        return [[td.text() for td in tr.find_all("td")] for tr in body.find_all("tr")]

    def header(self) -> list[str]:
        return [th.text() for th in self.find_all("th")]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        self.stack[-1].parts.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        self.stack[-1].parts.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        while len(self.stack) > 1:
            if self.stack.pop().tag == tag:
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(document: str) -> Element:
    builder = _Builder()
    builder.feed(document)
    builder.close()
    return builder.root


def graph_xml(document: str) -> ET.Element:
    """The ``<svg id="delegation-graph">`` element, parsed as XML (so it must be well formed)."""
    start = document.index('<svg id="delegation-graph"')
    end = document.index("</svg>", start) + len("</svg>")
    return ET.fromstring(document[start:end])


def svg_groups(svg: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG_NS}g") if cls in g.get("class", "").split()]


def edge_label(edge: ET.Element) -> list[str]:
    """An edge's label, one line per ``tspan``."""
    return ["".join(t.itertext()) for t in edge.iter(f"{SVG_NS}tspan")]
