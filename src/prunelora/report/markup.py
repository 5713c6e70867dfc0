"""HTML building blocks of report.html: tags with escaped attributes, paragraphs, sections, key-value tables."""
from __future__ import annotations

from html import escape
from typing import Any


def tag(name: str, text: str = "", **attrs: Any) -> str:
    """<name attrs>text</name>; text is inserted as given (escape it first), attribute values are escaped."""
    shown = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(str(v))}"' for k, v in attrs.items() if v is not None)
    return f"<{name}{shown}>{text}</{name}>"


def kv_table(pairs: list[tuple[str, Any]], caption: str | None = None) -> str:
    body = "".join(tag("tr", tag("td", escape(k)) + tag("td", escape(plain(v)))) for k, v in pairs)
    return tag("table", (tag("caption", escape(caption)) if caption else "") + body, class_="kv")


def plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return "; ".join(f"{k} {plain(v)}" for k, v in value.items()) if value else "-"
    return "-" if value is None else str(value)


def section(title: str, *parts: str) -> str:
    return tag("section", tag("h2", escape(title)) + "".join(parts))


def para(text: str, cls: str | None = None) -> str:
    return tag("p", escape(text), class_=cls)
