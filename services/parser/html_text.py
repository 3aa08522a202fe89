"""A readable plain-text rendering of an HTML mail body (stdlib ``html.parser`` only).

Used when a mail has no text/plain part, so that requests always show readable text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Content of these elements is never shown to a reader.
_HIDDEN = frozenset({"script", "style", "title", "template"})
# Elements that start on a line of their own in a browser.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_BLANK_RUNS = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Render ``html`` as plain text: one line per block, list items as ``- item``.

    Script and style content is dropped, link text kept, entities unescaped, runs of blank
    lines collapsed to one. Never raises on malformed HTML.
    """
    renderer = _Renderer()
    renderer.feed(html)
    renderer.close()
    return _tidy("".join(renderer.chunks))


def _tidy(text: str) -> str:
    lines = [line.strip(" \t") for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


class _Renderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden: list[str] = []  # open hidden elements, innermost last
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden.append(tag)
        elif tag == "br":
            self.chunks.append("\n")
        elif tag == "li":
            self.chunks.append("\n- ")
        elif tag in _BLOCKS:
            self.chunks.append("\n\n" if tag == "p" else "\n")
        elif tag in _CELLS:
            self.chunks.append(" ")
        if tag == "pre":
            self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/> and <hr/>: a self-closed hidden element must not hide what follows.
        if tag not in _HIDDEN:
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._close_hidden(tag)
        elif tag in _BLOCKS:
            self.chunks.append("\n\n" if tag == "p" else "\n")
        if tag == "pre" and self._pre:
            self._pre -= 1

    def _close_hidden(self, tag: str) -> None:
        if tag in self._hidden:
            del self._hidden[len(self._hidden) - 1 - self._hidden[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            self.chunks.append(data)
        else:
            self.chunks.append(_collapse(data))


def _collapse(data: str) -> str:
    """Whitespace in HTML text is one space, as a browser shows it; keep edge spaces."""
    words = data.split()
    if not words:
        return " " if data else ""
    lead = " " if data[0].isspace() else ""
    tail = " " if data[-1].isspace() else ""
    return lead + " ".join(words) + tail
