"""A small HTML-to-text renderer for HTML-only mail (stdlib ``html.parser``).

Good enough for search and previews: block structure becomes line breaks,
lists get bullets, links keep their target, scripts and styles vanish.
Also: the charset HTML names for itself in a ``<meta>`` tag.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text", "meta_charset"]

_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "thead", "tfoot", "tr", "ul",
    }
)  # fmt: skip
_PARAGRAPH = frozenset(
    {"p", "ul", "ol", "dl", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "pre"}
)
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript"})
_CELL = frozenset({"td", "th"})
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_META_CHARSET = re.compile(rb"<meta\s[^>]*?\bcharset\s*=\s*[\"']?\s*([\w.:+-]+)", re.IGNORECASE)
_PRESCAN_BYTES = 1024
"""How far browsers look for a ``<meta>`` charset before they give up."""


class _Renderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._hidden = 0
        self._pre = 0
        self._links: list[str | None] = []
        self._link_text: list[list[str]] = []

    def _emit(self, text: str) -> None:
        if self._link_text:
            self._link_text[-1].append(text)
        else:
            self.out.append(text)

    def _break(self, blank: bool = False) -> None:
        """End the line (``blank``: and leave an empty one), not stacking breaks."""
        target = self._link_text[-1] if self._link_text else self.out
        tail = "".join(target[-4:]).rstrip(" \t")
        have = len(tail) - len(tail.rstrip("\n")) if tail else 2
        want = 2 if blank else 1
        if want > have:
            self._emit("\n" * (want - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self._break()
        elif tag == "pre":
            self._pre += 1
            self._break(blank=True)
        elif tag == "li":
            self._break()
            self._emit("- ")
        elif tag in _CELL:
            self._emit("\t")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._emit(f"[{alt}]")
        elif tag == "a":
            self._links.append(dict(attrs).get("href"))
            self._link_text.append([])
        elif tag in _BLOCK:
            self._break(blank=tag in _PARAGRAPH)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            return
        self.handle_starttag(tag, attrs)
        if tag in _HIDDEN:
            self._hidden -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._break(blank=True)
        elif tag == "a" and self._link_text:
            href = self._links.pop()
            text = "".join(self._link_text.pop())
            shown = text.strip()
            if href and href.startswith(("http:", "https:", "mailto:")):
                target = href.removeprefix("mailto:")
                if shown and target not in shown:
                    text = f"{text} <{target}>"
                elif not shown:
                    text = target
            self._emit(text)
        elif tag in _BLOCK:
            self._break(blank=tag in _PARAGRAPH)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self._emit(data if self._pre else _SPACES.sub(" ", data))

    def text(self) -> str:
        while self._link_text:  # unclosed <a>
            self._links.pop()
            self.out.extend(self._link_text.pop())
        lines = [line.strip(" ") for line in "".join(self.out).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(html: str) -> str:
    """Readable plain text for ``html``; never raises on malformed markup."""
    renderer = _Renderer()
    try:
        renderer.feed(html)
        renderer.close()
    except (AssertionError, ValueError):  # pragma: no cover - html.parser is lenient
        pass
    return renderer.text()


def meta_charset(html: bytes) -> str | None:
    """The charset a ``<meta charset>`` or ``http-equiv`` tag declares where a browser
    looks for one (the first 1024 bytes); UTF-16 there is a lie, as browsers know:
    the tag was read in an ASCII-compatible charset."""
    match = _META_CHARSET.search(html[:_PRESCAN_BYTES])
    if match is None:
        return None
    label = match.group(1).decode("ascii")
    return None if label.lower().startswith(("utf-16", "utf-32", "utf16", "utf32")) else label
