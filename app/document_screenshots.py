"""The Summarize and Translate panels for ``app.screenshots``: real documents written to a
temp folder (a two-page PDF and a Word file), a real summary and a real translation."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtCore import QCoreApplication

    from app.window import MainWindow

PDF_PAGES = [
    ("The Press at Mainz", [
        "Around 1450 Johannes Gutenberg combined movable metal type, an oil-based ink and a "
        "screw press into one system for printing books.",
        "The Bible he finished around 1455 ran to roughly 180 copies. Forty-nine copies "
        "survive today.",
    ]),
    ("Paper and Trade", [
        "Paper mills spread across Europe and made printing cheap. Printers in Venice sold "
        "small books that fitted in a pocket.",
        "By 1500 presses worked in more than two hundred towns, and millions of books had "
        "been printed. Readers should compare editions before quoting them.",
    ]),
]
GLOSSARY = (("river", "fleuve"), ("valley", "vallon"), ("bag", "sacoche"))


def _pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    for heading, paragraphs in PDF_PAGES:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))
    return path


def _docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Field Notes", level=1)
    document.add_paragraph("We packed light. Every item had to earn its place in the bag.")
    document.add_paragraph("A compass", style="List Bullet")
    document.add_paragraph("Two maps of the valley", style="List Bullet")
    document.add_heading("Route", level=2)
    document.add_paragraph("Leave the car park at dawn and follow the river to the bridge.")
    document.add_paragraph("Rain arrived in the afternoon. We waited under the trees.")
    document.save(str(path))
    return path


def prepare_documents(app: QCoreApplication, window: MainWindow, wait: Callable) -> None:
    """Run a multi-document summary and a translation, and leave both on screen."""
    from app.panels.summarize import MULTI

    folder = Path(tempfile.mkdtemp(prefix="verso-screenshot-docs-"))
    pdf, notes = _pdf(folder / "printing.pdf"), _docx(folder / "field-notes.docx")

    summarize = window.summarize
    summarize.picker.add_files([pdf, notes])
    wait(app, lambda: not (summarize.picker.reading or summarize.picker.counting), 60,
         "the documents")
    summarize.set_mode(MULTI)
    summarize.chunk_tokens.setValue(128)
    summarize.length.setValue(3)
    done: list[object] = []
    summarize.finished.connect(done.append)
    summarize.run()
    wait(app, lambda: bool(done), 600, "the summary")
    result = summarize.outcome.result if summarize.outcome else None
    if result and result.points and result.points[0].chunks:
        summarize.show_citation(result.points[0].chunks[0], 0)

    translate = window.translate
    translate.picker.add_files([notes])
    wait(app, lambda: not (translate.picker.reading or translate.picker.counting), 60,
         "the document")
    for term, translation in GLOSSARY:
        translate.glossary.add_row(term, translation)
    translate.target.setCurrentText("French")
    finished: list[object] = []
    translate.finished.connect(lambda kind, outcome: finished.append(outcome))
    translate.run()
    wait(app, lambda: bool(finished), 600, "the translation")
    if translate.translation is not None and len(translate.translation.segments) > 1:
        translate.review.selectRow(1)


def capture_documents(app: QCoreApplication, window: MainWindow, out: Path, scheme: str,
                      settle: Callable) -> list[Path]:
    written = []
    for name, panel in (("summarize", window.summarize), ("translate", window.translate)):
        window.sidebar.setCurrentRow(window.stack.indexOf(panel))
        settle(app, 0.4)
        path = out / f"{name}-{scheme}.png"
        window.grab().save(str(path))
        written.append(path)
    window.sidebar.setCurrentRow(0)
    return written
