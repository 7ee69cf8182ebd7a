"""Summaries as HTML with clickable citations, as Markdown for copying and export, and the
cited source text with the passage that supports a point highlighted.

All text (the model's and the documents') is HTML-escaped here; the only markup is Verso's
own, and the only links are ``cite:`` and ``quote:`` ones the panel handles itself."""

from __future__ import annotations

import re
from html import escape

from engine.documents import Chunk, split_sentences
from engine.tasks.citations import Point
from engine.tasks.extractive import Extract
from engine.tasks.summarize import (
    UNSUPPORTED_MARK,
    UNSUPPORTED_TEXT,
    ChunkRef,
    Form,
    Mode,
    SummaryResult,
)

_WORD = re.compile(r"\w+")
_HEADING = re.compile(r"^#{1,6} ")


def _range(first: int | None, last: int | None) -> str:
    return f"{first}" if last in (None, first) else f"{first}–{last}"


def chunk_location(ref: ChunkRef) -> str:
    parts = [ref.source]
    if ref.first_page is not None:
        pages = _range(ref.first_page, ref.last_page)
        parts.append(("p. " if "–" not in pages else "pp. ") + pages)
    parts.append("¶ " + _range(ref.first_paragraph, ref.last_paragraph))
    return ", ".join(parts)


def extract_location(extract: Extract) -> str:
    return ", ".join([extract.source] + ([f"p. {extract.page}"] if extract.page else [])
                     + [f"¶ {extract.paragraph}"])


FALLBACK_ADVICE = ("A larger model, or longer chunks (fewer notes to combine), usually does "
                   "better.")
UNSUPPORTED_COLOUR = "#c62828"
REPEATING_COLOUR = "#b26a00"
_INFERRED = ' <small title="The model gave no citation; this is the closest chunk.">' \
            "(inferred)</small>"


def fallback_text(result: SummaryResult) -> str:
    return f"{result.fallback} {FALLBACK_ADVICE}" if result.fallback else ""


def unsupported_legend(result: SummaryResult) -> str:
    count = len(result.unsupported)
    if not count:
        return ""
    which = "1 point is" if count == 1 else f"{count} points are"
    return (f"{which} marked {UNSUPPORTED_MARK}: few of the words of such a point occur in the "
            "chunk it cites, so the document may not say it. Click its citation to check.")


def _markers_html(point: Point, index: int) -> str:
    return " ".join(f'<a href="cite:{c}:{index}">[{c}]</a>' for c in point.chunks)


def _flags_html(point: Point) -> str:
    html = _INFERRED if point.inferred else ""
    if point.unsupported:
        html += (f' <small title="{escape(UNSUPPORTED_TEXT)}" style="color:{UNSUPPORTED_COLOUR}">'
                 f"<b>({UNSUPPORTED_MARK})</b></small>")
    return html


def _point_html(point: Point, index: int) -> str:
    return f"{escape(point.text)} {_markers_html(point, index)}{_flags_html(point)}"


def summary_html(result: SummaryResult) -> str:
    if result.mode is Mode.EXTRACTIVE:
        items = "".join(
            f"<li>“{escape(e.text)}”<br>"
            f'<small><a href="quote:{i}">{escape(extract_location(e))}</a></small></li>'
            for i, e in enumerate(result.extracts))
        return f"<ul>{items}</ul>" if items else "<p>No sentence could be chosen.</p>"
    if not result.points:
        why = result.fallback or "The model wrote no usable summary."
        stopped = f" {result.repeating_note()}" if result.repeating else ""
        return f"<p>{escape(why + stopped)} Try another model or a longer length.</p>"
    html = f"<p><i>{escape(fallback_text(result))}</i></p>" if result.fallback else ""
    if result.repeating:
        html += (f'<p id="repeating" style="color:{REPEATING_COLOUR}"><small><b>'
                 f"{escape(result.repeating_note())}</b></small></p>")
    if result.left_out:
        html += f"<p><small><i>{escape(result.left_out)}</i></small></p>"
    if result.form is Form.PARAGRAPH and not result.fallback:
        html += "<p>" + " ".join(_point_html(p, i) for i, p in enumerate(result.points)) + "</p>"
    else:
        for kind, title in (("point", "Key points"), ("action", "Action items")):
            rows = [(i, p) for i, p in enumerate(result.points) if p.kind == kind]
            if not rows:
                continue
            if (result.form is Form.KEYPOINTS and not result.fallback) or kind == "action":
                html += f"<h4>{title}</h4>"
            html += "<ul>" + "".join(f"<li>{_point_html(p, i)}</li>" for i, p in rows) + "</ul>"
    legend = unsupported_legend(result)
    if legend:
        html += f'<p><small style="color:{UNSUPPORTED_COLOUR}">{escape(legend)}</small></p>'
    cited = sorted({c for p in result.points for c in p.chunks})
    by_id = {c.id: c for c in result.chunks}
    sources = "".join(f'<a href="cite:{c}:-1">[{c}]</a> {escape(chunk_location(by_id[c]))}<br>'
                      for c in cited if c in by_id)
    if sources:
        html += f"<p><small><b>Sources</b><br>{sources}</small></p>"
    return html


def summary_markdown(result: SummaryResult, title: str = "") -> str:
    lines = [f"# {title}", ""] if title else []
    if result.mode is Mode.EXTRACTIVE:
        lines += [f"> {e.text}\n>\n> — {extract_location(e)}\n" for e in result.extracts]
        return "\n".join(lines).rstrip() + "\n"
    if result.fallback:
        lines += [f"*{fallback_text(result)}*", ""]
    if result.repeating:
        lines += [f"*{result.repeating_note()}*", ""]
    if result.left_out:
        lines += [f"*{result.left_out}*", ""]
    lines.append(result.to_text())
    legend = unsupported_legend(result)
    if legend:
        lines += ["", f"*{legend}*"]
    cited = sorted({c for p in result.points for c in p.chunks})
    by_id = {c.id: c for c in result.chunks}
    if cited:
        lines += ["", "## Sources", ""]
        lines += [f"[{c}] {chunk_location(by_id[c])}  " for c in cited if c in by_id]
    return "\n".join(lines).rstrip() + "\n"


def _overlap(a: str, b: str) -> float:
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def _paragraphs_html(paragraphs: list[str], point: str, highlight: str) -> str:
    """Paragraphs (Markdown headings in bold) with the sentence most like ``point``
    highlighted, if any sentence shares a word with it."""
    headings = [bool(_HEADING.match(p)) for p in paragraphs]
    paragraphs = [_HEADING.sub("", p) for p in paragraphs]
    sentences = [(p, s) for p, text in enumerate(paragraphs) for s in split_sentences(text)]
    best = max(sentences, key=lambda ps: _overlap(point, ps[1].text), default=None) \
        if point else None
    if best is not None and _overlap(point, best[1].text) == 0:
        best = None
    out = []
    for p, text in enumerate(paragraphs):
        if best is not None and best[0] == p:
            span = best[1]
            body = (f"{escape(text[:span.start])}"
                    f'<span style="background-color:{highlight}"><a name="match"></a>'
                    f"{escape(span.text)}</span>{escape(text[span.end:])}")
        else:
            body = escape(text)
        out.append(f"<p><b>{body}</b></p>" if headings[p] else f"<p>{body}</p>")
    return "".join(out)


def chunk_html(ref: ChunkRef, chunk: Chunk | None, note: str | None, point: str,
               highlight: str) -> str:
    html = f"<h4>[{ref.id}] {escape(chunk_location(ref))}</h4>"
    if chunk is not None and chunk.heading_path:
        html += f"<p><small>Section: {escape(' › '.join(chunk.heading_path))}</small></p>"
    if point:
        html += f"<p><small>Cited for: <i>{escape(point)}</i></small></p>"
    if chunk is not None:
        paragraphs = [p for p in chunk.text.split("\n\n") if p.strip()]
        html += _paragraphs_html(paragraphs, point, highlight)
    if note:
        html += f"<p><small><b>The model's note on this chunk:</b> {escape(note)}</small></p>"
    return html


def extract_html(extract: Extract, block_text: str, highlight: str) -> str:
    before, after = block_text[:extract.start], block_text[extract.end:]
    return (f"<h4>{escape(extract_location(extract))}</h4>"
            f"<p>{escape(before)}<span style=\"background-color:{highlight}\">"
            f'<a name="match"></a>{escape(extract.text)}</span>{escape(after)}</p>')


