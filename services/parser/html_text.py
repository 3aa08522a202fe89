"""A readable plain-text rendering of an HTML mail body.

Used when a mail has no text/plain part, so that requests always show readable text.
inscriptis renders it as a browser lays it out: table columns aligned, nested lists
indented and numbered, preformatted text kept. HTML nested deeper than it can follow
(only hostile mail is) is rendered by a plain reader on the stdlib's ``html.parser``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import lxml.etree
import lxml.html
from inscriptis import Inscriptis
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

# "strict" keeps to what CSS says of each element: no indentation a browser would not show.
_CONFIG = ParserConfig(css=CSS_PROFILES["strict"])
# huge_tree: no cap on text node size or nesting (the default drops text past 256 levels).
_PARSER = lxml.html.HTMLParser(huge_tree=True, remove_comments=True, remove_pis=True)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>")
# Content of these elements is never shown to a reader.
_HIDDEN = frozenset({"script", "style", "title", "template"})
# Elements a browser starts on a line of their own; a paragraph also leaves a blank line.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "main", "nav", "ol", "pre", "section", "table", "tr", "ul",
    }
)  # fmt: skip
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})
_CELLS = frozenset({"td", "th"})
_BLANK_RUNS = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Render ``html`` as plain text, laid out as a browser shows it.

    Script and style content is dropped, link text kept, entities unescaped, runs of blank
    lines collapsed to one, trailing spaces removed. Never raises on malformed HTML.
    """
    html = _XML_DECLARATION.sub("", html.replace("\x00", ""), count=1)
    if not html.strip():
        return ""
    try:
        text = Inscriptis(lxml.html.document_fromstring(html, parser=_PARSER), _CONFIG).get_text()
    except (RecursionError, ValueError, lxml.etree.LxmlError):
        # Nested deeper than the renderer recurses, or nothing lxml can read.
        text = _plain_rendering(html)
    return _tidy(text)


def _plain_rendering(html: str) -> str:
    """One line per block, list items as ``- item``; no layout, but no depth limit."""
    renderer = _Renderer()
    renderer.feed(html)
    renderer.close()
    return "\n".join(line.strip(" \t") for line in "".join(renderer.chunks).split("\n"))


def _tidy(text: str) -> str:
    lines = [line.rstrip(" \t") for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


class _Renderer(HTMLParser):
    """Collects text chunks; line breaks wait until text follows, so empty blocks add none."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden: list[str] = []  # open hidden elements, innermost last
        self._pre = 0
        self._breaks = 0  # line breaks owed before the next text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden.append(tag)
            return
        self._block_edge(tag)
        if tag == "br":
            self._breaks += 1
        elif tag == "li":
            self._write("- ")
        elif tag in _CELLS:
            self.chunks.append(" ")
        elif tag == "pre":
            self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/> and <hr/>; a self-closed hidden element must not hide what follows.
        if tag not in _HIDDEN:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._hidden:
            del self._hidden[len(self._hidden) - 1 - self._hidden[::-1].index(tag) :]
        self._block_edge(tag)
        if tag == "pre" and self._pre:
            self._pre -= 1

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        text = data if self._pre else _collapse(data)
        if text.strip() or self._pre:
            self._write(text)
        elif text and not self._breaks:
            self.chunks.append(text)

    def _block_edge(self, tag: str) -> None:
        if tag in _PARAGRAPHS:
            self._breaks = max(self._breaks, 2)
        elif tag in _BLOCKS:
            self._breaks = max(self._breaks, 1)

    def _write(self, text: str) -> None:
        self.chunks.append("\n" * self._breaks + text)
        self._breaks = 0


def _collapse(data: str) -> str:
    """Whitespace in HTML text is one space, as a browser shows it; keep edge spaces."""
    words = data.split()
    if not words:
        return " " if data else ""
    lead = " " if data[0].isspace() else ""
    tail = " " if data[-1].isspace() else ""
    return lead + " ".join(words) + tail
