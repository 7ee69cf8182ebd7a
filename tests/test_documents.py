"""Document loading, sentences and segmentation, on real documents made here: a PDF written
with fpdf2, a .docx written with python-docx, HTML, Markdown and text in several encodings,
and broken or hostile files of each kind. Segmentation counts with SmolLM2's vocabulary."""

from __future__ import annotations

import multiprocessing
import pickle
import re
import socket
import time
import zipfile
from itertools import pairwise
from pathlib import Path

import pytest

from engine.documents import (
    BlockKind,
    Chunk,
    Document,
    DocumentError,
    DocumentFormat,
    DocumentProblem,
    document_from_text,
    load_document,
    parse_file,
    segment,
    split_sentences,
    vocab_token_counter,
)
from engine.documents.limits import Limits
from engine.events import ErrorKind

# ---------------------------------------------------------------- real text

CHAPTERS = [
    ("The Press at Mainz", [
        "Around 1450 Johannes Gutenberg combined several known techniques into one system "
        "for printing books. Movable metal type, an oil-based ink and a screw press adapted "
        "from wine making let a small workshop produce hundreds of identical pages a day.",
        "The decisive part was the hand mould, which cast letters of exactly the same height "
        "in great numbers. A compositor could set a page, print it, break it up and reuse "
        "the letters for the next page. Nothing of the kind had been possible with carved "
        "wooden blocks.",
        "The Bible he finished around 1455 ran to roughly 180 copies. About a quarter were "
        "printed on vellum, the rest on paper. Forty-nine copies survive, some of them "
        "complete, and they are still admired for the evenness of their black letter.",
    ]),
    ("Spreading Across Europe", [
        "Printers trained at Mainz carried the craft along the trade routes. By 1480 there "
        "were presses in more than a hundred towns, from Venice and Paris to Cracow. Each "
        "new shop needed capital, paper and a market, so most settled in commercial cities.",
        "Venice became the busiest centre of all. Its merchants could finance large editions "
        "and ship them abroad, and its scholars supplied corrected texts. Aldus Manutius "
        "printed Greek classics there in small, portable formats that readers could carry.",
        "Prices fell as print runs grew. A book that had cost a clerk a year of wages in "
        "manuscript could now be bought for a few weeks of pay. Reading spread from the "
        "monastery and the university into the houses of merchants and craftsmen.",
    ]),
    ("Paper and Ink", [
        "Paper, not type, set the limit on output. It was made from linen rags beaten into "
        "pulp, lifted from a vat on a wire screen and pressed dry sheet by sheet. A busy mill "
        "produced a few thousand sheets a day, and rag collectors roamed the countryside.",
        "Printing ink differed from the ink of scribes. Water-based ink ran off metal type, "
        "so printers used a varnish of boiled linseed oil mixed with lampblack. It clung to "
        "the letters and left a dense, glossy impression on damp paper.",
        "Workshops guarded their recipes. Some added resin or egg white, others ground the "
        "soot for days. The difference showed: a good ink stayed black for centuries, while "
        "a poor one faded to brown or bled through the page.",
    ]),
    ("The Working Shop", [
        "A typical shop employed a master, two or three compositors and pressmen working in "
        "pairs. One inked the forme with leather balls while the other laid the sheet, "
        "lowered the platen and pulled the bar. A team could print about two hundred fifty "
        "sheets an hour.",
        "Compositors read the manuscript line by line and picked each letter from a case "
        "divided into compartments. Capitals lived in the upper case and small letters in "
        "the lower case. The names outlived the wooden cases themselves.",
        "Proofs were read while printing went on, so corrections entered the run at "
        "different moments. Two copies of the same edition can therefore differ in small "
        "ways, a fact that keeps bibliographers busy to this day.",
    ]),
    ("Censorship and Control", [
        "Authorities soon saw both the promise and the danger of the press. Church and state "
        "issued licences, required the name of the printer on every title page and drew up "
        "lists of forbidden books. Printers who ignored the rules risked fines or prison.",
        "Control was never complete. Books banned in one city were printed in another and "
        "smuggled across borders in bales of ordinary goods. The fragmented map of Europe "
        "made it hard for any single power to silence an author.",
        "Pamphlets and broadsides travelled fastest. Cheap to produce and easy to hide, they "
        "carried news, satire and religious argument to readers who would never buy a bound "
        "book. Their survival rate is low, because they were read until they fell apart.",
    ]),
    ("Legacy", [
        "Within a century the printed book had settled into the form we still know: a title "
        "page, numbered pages, an index and a consistent typeface. These conventions made it "
        "possible to cite a passage precisely and to check another reader's reference.",
        "Standard editions changed scholarship. When every copy of a text was the same, "
        "errors could be collected and corrected in the next printing. Knowledge began to "
        "accumulate in a way that copying by hand had never allowed.",
        "The hand press remained in use for nearly four hundred years. Only in the "
        "nineteenth century did iron presses, steam power and machine-made paper transform "
        "the trade again, and the basic idea of Mainz survived even that change.",
    ]),
]

ALL_PARAGRAPHS = [p for _, paragraphs in CHAPTERS for p in paragraphs]

CHINESE = (
    "印刷术是中国古代的重要发明之一。早在唐代，人们就已经使用雕版印刷佛经和历书。"
    "北宋时期，毕昇发明了活字印刷术，用胶泥制成单个的字，烧硬以后可以反复使用。"
    "排版时，工匠把字按顺序排在铁板上，再用松香和蜡固定。印完以后加热铁板，字就可以取下来。"
    "这种方法比雕版省时省料，但是在汉字数量众多的情况下，准备字模需要很大的工夫。"
    "后来又出现了木活字和铜活字，元代的王祯还设计了转轮排字架，提高了拣字的速度。"
    "印刷术传到朝鲜、日本和其他地区，对世界文化的交流产生了深远的影响。"
) * 3


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---------------------------------------------------------------- documents made here


def _make_pdf(path: Path) -> Path:
    from fpdf import FPDF

    class Book(FPDF):
        def footer(self) -> None:  # a page number on every page
            self.set_y(-15)
            self.set_font("Helvetica", "", 9)
            self.cell(0, 10, str(self.page_no()), align="C")

    pdf = Book()
    pdf.set_title("A Short History of Printing")
    pdf.set_auto_page_break(True, margin=20)
    for heading, paragraphs in CHAPTERS:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 18)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        pdf.set_font("Helvetica", "", 11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))
    return path


def _make_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = "Field Notes"
    document.add_heading("Field Notes", level=0)
    document.add_heading("Equipment", level=1)
    document.add_paragraph("We packed light. Every item had to earn its place in the bag.")
    document.add_paragraph("A compass", style="List Bullet")
    document.add_paragraph("Two maps of the valley", style="List Bullet")
    document.add_paragraph("A spare battery", style="List Bullet 2")
    document.add_heading("Route", level=2)
    document.add_paragraph("Leave the car park at dawn", style="List Number")
    document.add_paragraph("Follow the river to the bridge", style="List Number")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Day", "Distance"
    table.cell(1, 0).text, table.cell(1, 1).text = "Monday", "14 km"
    document.add_heading("Weather", level=1)
    document.add_paragraph("Rain arrived in the afternoon. We waited under the trees.")
    document.save(str(path))
    return path


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("documents")


@pytest.fixture(scope="module")
def book_pdf(docs_dir: Path) -> Path:
    return _make_pdf(docs_dir / "printing.pdf")


@pytest.fixture(scope="module")
def book(book_pdf: Path) -> Document:
    return load_document(book_pdf)


@pytest.fixture(scope="module")
def notes_docx(docs_dir: Path) -> Path:
    return _make_docx(docs_dir / "notes.docx")


@pytest.fixture(scope="session")
def count_tokens(smol_path: Path):
    return vocab_token_counter(smol_path)


# ---------------------------------------------------------------- loading real documents


def test_pdf_keeps_pages_paragraphs_and_headings(book: Document):
    assert book.format is DocumentFormat.PDF
    assert book.title == "A Short History of Printing"
    stats = book.stats
    assert stats.pages == 6
    assert stats.headings == 6
    assert stats.paragraphs == 6 + len(ALL_PARAGRAPHS)
    paragraphs = [b for b in book.blocks if b.kind is BlockKind.PARAGRAPH]
    # Lines are joined back into the paragraphs that were written; page numbers are dropped.
    assert [p.text for p in paragraphs] == ALL_PARAGRAPHS
    for number, (heading, _) in enumerate(CHAPTERS, start=1):
        on_page = [b for b in book.text_blocks if b.location.page == number]
        assert on_page[0].kind is BlockKind.HEADING and on_page[0].text == heading
        assert on_page[0].level == 1
        assert all(b.location.heading_path == (heading,) for b in on_page)
        assert len(on_page) == 4
    assert [b.location.paragraph for b in book.text_blocks] == list(range(1, 25))
    assert sum(b.kind is BlockKind.PAGE_BREAK for b in book.blocks) == 5
    assert stats.characters == sum(len(b.text) for b in book.text_blocks)


def test_docx_headings_lists_and_tables(notes_docx: Path):
    document = load_document(notes_docx)
    assert document.format is DocumentFormat.DOCX
    assert document.title == "Field Notes"
    shape = [(b.kind.value, b.level, b.ordered, b.text) for b in document.blocks]
    assert shape == [
        ("heading", 1, False, "Field Notes"),
        ("heading", 1, False, "Equipment"),
        ("paragraph", 0, False, "We packed light. Every item had to earn its place in the bag."),
        ("list_item", 1, False, "A compass"),
        ("list_item", 1, False, "Two maps of the valley"),
        ("list_item", 2, False, "A spare battery"),
        ("heading", 2, False, "Route"),
        ("list_item", 1, True, "Leave the car park at dawn"),
        ("list_item", 1, True, "Follow the river to the bridge"),
        ("table_row", 0, False, "Day | Distance"),
        ("table_row", 0, False, "Monday | 14 km"),
        ("heading", 1, False, "Weather"),
        ("paragraph", 0, False, "Rain arrived in the afternoon. We waited under the trees."),
    ]
    route = document.blocks[7].location
    assert route.heading_path == ("Equipment", "Route") and route.paragraph == 8
    assert document.blocks[-1].location.heading_path == ("Weather",)
    assert document.stats.pages is None
    markdown = document.to_markdown()
    assert "## Route" in markdown and "  - A spare battery" in markdown
    assert "1. Leave the car park at dawn" in markdown and "| Monday | 14 km |" in markdown


HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Tom &amp; Jerry &mdash; notes</title>
<style>body { color: red } .secret::after { content: "STYLE TEXT" }</style>
<script>document.write("SCRIPT TEXT"); if (a < b && c > d) {}</script>
<link rel="stylesheet" href="http://example.invalid/x.css">
</head><body>
<h1>Cats&nbsp;&amp; mice</h1>
<p>Use <b>&lt;script&gt;</b> tags with care &#8212; they run code.
   Caf&eacute; prices rose&hellip;</p>
<img src="http://example.invalid/cat.png" alt="a cat">
<ul><li>First item</li><li>Second <em>item</em>
  <ol><li>Nested one</li></ol></li></ul>
<noscript>NOSCRIPT TEXT</noscript>
<h2>Code</h2>
<pre>def f(x):
    return x &lt; 2</pre>
<table><tr><th>Name</th><th>Age</th></tr><tr><td>Tom</td><td>3</td></tr></table>
<blockquote><p>Quoted words.</p></blockquote>
<div>Line one<br>Line two</div>
<script type="module">import("http://example.invalid/evil.js")</script>
</body></html>"""


def test_html_strips_scripts_keeps_structure_and_fetches_nothing(
    docs_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the HTML loader tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    path = docs_dir / "page.html"
    path.write_text(HTML_PAGE, encoding="utf-8")
    document = parse_file(path)
    text = document.text
    for hidden in ("SCRIPT TEXT", "STYLE TEXT", "NOSCRIPT TEXT", "evil.js", "color: red"):
        assert hidden not in text
    assert document.title == "Tom & Jerry — notes"
    shape = [(b.kind.value, b.level, b.ordered, b.text) for b in document.blocks]
    assert shape == [
        ("heading", 1, False, "Cats & mice"),
        ("paragraph", 0, False,
         "Use <script> tags with care — they run code. Café prices rose…"),
        ("list_item", 1, False, "First item"),
        ("list_item", 1, False, "Second item"),
        ("list_item", 2, True, "Nested one"),
        ("heading", 2, False, "Code"),
        ("code", 0, False, "def f(x):\n    return x < 2"),
        ("table_row", 0, False, "Name | Age"),
        ("table_row", 0, False, "Tom | 3"),
        ("quote", 0, False, "Quoted words."),
        ("paragraph", 0, False, "Line one\nLine two"),
    ]


MARKDOWN = """---
title: Release notes
---
Verso 1.0
=========

Intro paragraph that wraps
onto a second line.

## Install

1. Download the installer
2. Run it
   - on Windows, accept the prompt
* Or build from source

```python
# not a heading
print("hi")
```

> Quoted advice
> on two lines.

| Platform | Status |
|----------|--------|
| Linux    | ok     |

Setext two
----------
Last words.
"""


def test_markdown_blocks():
    document = document_from_text(MARKDOWN, name="notes.md", markdown=True)
    assert document.title == "Release notes"
    shape = [(b.kind.value, b.level, b.ordered, b.text) for b in document.blocks]
    assert shape == [
        ("heading", 1, False, "Verso 1.0"),
        ("paragraph", 0, False, "Intro paragraph that wraps\nonto a second line."),
        ("heading", 2, False, "Install"),
        ("list_item", 1, True, "Download the installer"),
        ("list_item", 1, True, "Run it"),
        ("list_item", 2, False, "on Windows, accept the prompt"),
        ("list_item", 1, False, "Or build from source"),
        ("code", 0, False, '# not a heading\nprint("hi")'),
        ("quote", 0, False, "Quoted advice\non two lines."),
        ("table_row", 0, False, "Platform | Status"),
        ("table_row", 0, False, "Linux | ok"),
        ("heading", 2, False, "Setext two"),
        ("paragraph", 0, False, "Last words."),
    ]
    assert document.blocks[4].location.heading_path == ("Verso 1.0", "Install")


@pytest.mark.parametrize(
    ("encoding", "prefix", "expected_encoding", "noted"),
    [
        ("utf-16", b"", "utf-16-le", False),  # Python writes a BOM
        ("utf-8-sig", b"", "utf-8-sig", False),
        ("utf-16-be", b"", "utf-16-be", False),  # no BOM: recognised by its zero bytes
        ("cp1252", b"", "cp1252", True),
    ],
)
def test_text_encodings(
    docs_dir: Path, encoding: str, prefix: bytes, expected_encoding: str, noted: bool
):
    text = "Café crème — 12 €.\n\nSecond paragraph, naïve façade."
    path = docs_dir / f"notes-{encoding}.txt"
    path.write_bytes(prefix + text.encode(encoding))
    document = parse_file(path)
    assert document.encoding == expected_encoding
    assert [b.text for b in document.blocks] == [
        "Café crème — 12 €.", "Second paragraph, naïve façade."
    ]
    assert bool(document.notes) is noted
    if noted:
        assert "not valid UTF-8" in document.notes[0]


# ---------------------------------------------------------------- broken and hostile files


def _encrypted_pdf(book_pdf: Path, path: Path) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=book_pdf)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    writer.write(path)
    return path


def _scanned_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    for _ in range(2):
        pdf.add_page()
        pdf.rect(20, 20, 150, 200, style="F")
    pdf.output(str(path))
    return path


def _truncated(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _docx_bomb(notes_docx: Path, path: Path) -> Path:
    """A real .docx plus one entry that inflates to 64 MB of zeros (about 60 KB packed)."""
    with zipfile.ZipFile(notes_docx) as source, zipfile.ZipFile(
        path, "w", zipfile.ZIP_DEFLATED
    ) as bomb:
        for item in source.infolist():
            bomb.writestr(item, source.read(item))
        with bomb.open("word/media/image1.png", "w", force_zip64=True) as entry:
            zeros = bytes(1024 * 1024)
            for _ in range(64):
                entry.write(zeros)
    return path


def _not_a_docx(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "just a zip")
    return path


BAD_FILES = {
    "encrypted-pdf": (
        lambda d, pdf, docx: _encrypted_pdf(pdf, d / "locked.pdf"),
        DocumentProblem.ENCRYPTED, "password-protected",
    ),
    "scanned-pdf": (
        lambda d, pdf, docx: _scanned_pdf(d / "scan.pdf"),
        DocumentProblem.NO_TEXT_LAYER, "no text layer: this PDF looks scanned",
    ),
    "truncated-pdf": (
        lambda d, pdf, docx: _truncated(pdf, d / "cut.pdf"),
        DocumentProblem.CORRUPT, "PDF is incomplete",
    ),
    "truncated-docx": (
        lambda d, pdf, docx: _truncated(docx, d / "cut.docx"),
        DocumentProblem.CORRUPT, ".docx is damaged",
    ),
    "zip-not-docx": (
        lambda d, pdf, docx: _not_a_docx(d / "other.docx"),
        DocumentProblem.CORRUPT, "not a Word document",
    ),
    "docx-bomb": (
        lambda d, pdf, docx: _docx_bomb(docx, d / "bomb.docx"),
        DocumentProblem.ARCHIVE_BOMB, "decompression bomb",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_fail_with_a_specific_error(
    case: str, docs_dir: Path, book_pdf: Path, notes_docx: Path
):
    make, problem, words = BAD_FILES[case]
    path = make(docs_dir, book_pdf, notes_docx)
    with pytest.raises(DocumentError) as caught:
        load_document(path)
    assert caught.value.problem is problem, caught.value
    assert words in str(caught.value)
    assert str(caught.value).startswith(path.name + ": ")
    assert "Traceback" not in str(caught.value)


def test_errors_found_before_parsing(docs_dir: Path):
    (docs_dir / "empty.txt").write_bytes(b"")
    (docs_dir / "blank.md").write_text("\n   \n\t\n", encoding="utf-8")
    (docs_dir / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    (docs_dir / "image.png").write_bytes(b"\x89PNG")
    (docs_dir / "binary.txt").write_bytes(bytes(range(256)) * 4)
    cases = {
        "empty.txt": DocumentProblem.EMPTY,
        "blank.md": DocumentProblem.EMPTY,
        "old.doc": DocumentProblem.UNSUPPORTED,
        "image.png": DocumentProblem.UNSUPPORTED,
        "missing.pdf": DocumentProblem.NOT_FOUND,
        "binary.txt": DocumentProblem.NOT_TEXT,
    }
    for name, problem in cases.items():
        with pytest.raises(DocumentError) as caught:
            parse_file(docs_dir / name)
        assert caught.value.problem is problem, (name, caught.value)
    with pytest.raises(DocumentError, match=r"save it as \.docx"):
        load_document(docs_dir / "old.doc")


def test_limits_are_errors_with_the_numbers(book_pdf: Path, docs_dir: Path):
    with pytest.raises(DocumentError) as caught:
        load_document(book_pdf, max_pages=4)
    assert caught.value.problem is DocumentProblem.TOO_LARGE
    assert "6 pages; the limit is 4" in str(caught.value)

    with pytest.raises(DocumentError, match=r"the limit is 1\.0 KB"):
        load_document(book_pdf, max_bytes=1024)

    long_text = docs_dir / "long.txt"
    long_text.write_text("A sentence of text.\n\n" * 60, encoding="utf-8")  # 1,260 bytes
    with pytest.raises(DocumentError, match=r"more than 1,000 characters"):
        parse_file(long_text, Limits(max_chars=1000))
    with pytest.raises(DocumentError, match=r"more than 1,000 characters"):
        parse_file(book_pdf, Limits(max_chars=1000))


def test_html_size_is_limited_before_parsing(docs_dir: Path):
    path = docs_dir / "huge.html"
    path.write_text("<p>" + "word " * 50_000 + "</p>", encoding="utf-8")
    with pytest.raises(DocumentError) as caught:
        parse_file(path, Limits(max_html_bytes=100_000))
    assert caught.value.problem is DocumentProblem.TOO_LARGE
    assert "for HTML is 100.0 KB" in str(caught.value)


def test_timeout_kills_the_parser(book_pdf: Path):
    started = time.monotonic()
    with pytest.raises(DocumentError) as caught:
        load_document(book_pdf, timeout_s=0.05)  # less than starting a Python process
    assert caught.value.problem is DocumentProblem.TIMEOUT
    assert "longer than 0.05 s" in str(caught.value)
    assert time.monotonic() - started < 10
    assert not multiprocessing.active_children()


def test_cancel_kills_the_parser(book_pdf: Path):
    started = time.monotonic()
    with pytest.raises(DocumentError) as caught:
        load_document(book_pdf, cancel=lambda: time.monotonic() - started > 0.01)
    assert caught.value.problem is DocumentProblem.CANCELLED
    assert not multiprocessing.active_children()


def test_memory_limit_stops_the_parser(docs_dir: Path):
    path = docs_dir / "big.txt"
    path.write_bytes(b"All work and no play makes Jack a dull boy.\n\n" * 450_000)  # 20 MB
    with pytest.raises(DocumentError) as caught:
        load_document(path, max_memory_mb=30, max_chars=50_000_000)
    assert caught.value.problem is DocumentProblem.OUT_OF_MEMORY
    assert "more than 30 MB" in str(caught.value)


def test_document_error_crosses_processes_intact():
    error = DocumentError("a.pdf", DocumentProblem.ENCRYPTED, "the PDF is password-protected")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.problem, copy.name, str(copy)) == (error.problem, "a.pdf", str(error))
    assert copy.kind is ErrorKind.DOCUMENT_INVALID


# ---------------------------------------------------------------- sentences


def test_sentences_with_offsets():
    text = (
        "Dr. Smith arrived at 3.30 p.m. on Monday. He said: \"It works!\" Did it? "
        "J. R. R. Tolkien agreed... Everyone left.\n\nA new paragraph without an end"
    )
    spans = split_sentences(text)
    assert [s.text for s in spans] == [
        "Dr. Smith arrived at 3.30 p.m. on Monday.",
        'He said: "It works!"',
        "Did it?",
        "J. R. R. Tolkien agreed...",
        "Everyone left.",
        "A new paragraph without an end",
    ]
    assert all(text[s.start:s.end] == s.text for s in spans)


def test_sentences_in_scripts_without_spaces():
    chinese = split_sentences("你好，世界。这是一个测试！真的吗？是的")
    assert [s.text for s in chinese] == ["你好，世界。", "这是一个测试！", "真的吗？", "是的"]
    japanese = split_sentences("今日は晴れです。明日は雨でしょう。")
    assert [s.text for s in japanese] == ["今日は晴れです。", "明日は雨でしょう。"]
    thai = "วันนี้อากาศดี พรุ่งนี้ฝนจะตก"
    assert [s.text for s in split_sentences(thai)] == ["วันนี้อากาศดี", "พรุ่งนี้ฝนจะตก"]
    hindi = split_sentences("यह पहला वाक्य है। यह दूसरा है।")
    assert [s.text for s in hindi] == ["यह पहला वाक्य है।", "यह दूसरा है।"]


# ---------------------------------------------------------------- segmentation


def _check_chunks(document: Document, chunks: list[Chunk], count_tokens, max_tokens: int):
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert count_tokens(chunk.text) == chunk.token_count <= max_tokens
    covered = "".join(
        document.blocks[s.block].text[s.start:s.end] for c in chunks for s in c.spans
    )
    assert _squash(covered) == _squash(document.text)


def test_segment_pdf_within_budget_in_order_with_locations(book: Document, count_tokens):
    chunks = segment(book, count_tokens, max_tokens=100)
    _check_chunks(book, chunks, count_tokens, 100)
    assert _squash("".join(c.body for c in chunks)) == _squash(book.to_markdown())
    assert len(chunks) > len(CHAPTERS)
    pages = [(c.first_page, c.last_page) for c in chunks]
    assert pages[0][0] == 1 and pages[-1][1] == 6
    assert all(a <= b for a, b in pages)
    assert all(p[1] <= q[0] for p, q in pairwise(pages))
    for chunk in chunks:
        first = book.blocks[chunk.spans[0].block]
        assert chunk.first_paragraph == first.location.paragraph
        assert chunk.heading_path == first.location.heading_path


def test_segment_recounts_joined_text(book: Document):
    """Counting characters, joined pieces cost more than their parts (the spaces and blank
    lines between them), so only the final count of each chunk keeps it in the budget."""
    chunks = segment(book, len, max_tokens=300, overlap_tokens=100)
    _check_chunks(book, chunks, len, 300)
    assert max(c.token_count for c in chunks) > 250


@pytest.mark.parametrize("max_tokens", [16, 24, 60])
def test_segment_code_quotes_lists_and_tables(count_tokens, max_tokens: int):
    document = document_from_text(MARKDOWN + "\n```\n" + "x = 1\n" * 40 + "```\n",
                                  markdown=True)
    chunks = segment(document, count_tokens, max_tokens, overlap_tokens=max_tokens // 4)
    _check_chunks(document, chunks, count_tokens, max_tokens)
    assert all(c.text.count("```") % 2 == 0 for c in chunks)  # code is always fenced


def test_segment_prefers_to_split_before_headings(count_tokens):
    sections = [f"## Part {n}\n\n" + " ".join(ALL_PARAGRAPHS[n * 2: n * 2 + 2])
                for n in range(6)]
    document = document_from_text("\n\n".join(sections), markdown=True)
    section_tokens = max(count_tokens(s) for s in sections)
    max_tokens = int(section_tokens * 1.6)  # room for one section and a half
    chunks = segment(document, count_tokens, max_tokens)
    _check_chunks(document, chunks, count_tokens, max_tokens)
    assert len(chunks) == 6
    assert [c.body.split("\n")[0] for c in chunks] == [f"## Part {n}" for n in range(6)]
    # With a budget smaller than a section, cuts fall between sentences, never after a
    # heading: no chunk ends with a heading.
    small = segment(document, count_tokens, max_tokens=section_tokens // 2)
    _check_chunks(document, small, count_tokens, section_tokens // 2)
    assert all(not c.body.rstrip().split("\n")[-1].startswith("#") for c in small)
    assert all(re.search(r"[.!?]$", c.body.rstrip()) for c in small)


def test_segment_chinese_without_spaces(count_tokens):
    document = document_from_text(CHINESE)
    chunks = segment(document, count_tokens, max_tokens=160)  # sentences: 26 to 63 tokens
    _check_chunks(document, chunks, count_tokens, 160)
    assert len(chunks) > 3
    assert all(c.body.endswith("。") for c in chunks)  # cut between sentences


def test_segment_splits_an_overlong_sentence_by_tokens(count_tokens):
    run_on = CHINESE.replace("。", "，")  # one sentence far over the budget
    document = document_from_text(run_on + "。\n\nA short closing paragraph.")
    chunks = segment(document, count_tokens, max_tokens=40)
    _check_chunks(document, chunks, count_tokens, 40)
    assert len(chunks) > 5
    assert all(c.token_count > 20 for c in chunks[:-1])  # slices fill the budget
    assert chunks[-1].body.endswith("A short closing paragraph.")


def test_segment_overlap_repeats_whole_sentences(book: Document, count_tokens):
    chunks = segment(book, count_tokens, max_tokens=120, overlap_tokens=40)
    _check_chunks(book, chunks, count_tokens, 120)
    assert _squash("".join(c.body for c in chunks)) == _squash(book.to_markdown())
    overlapped = [c for c in chunks[1:] if c.overlap_chars]
    assert len(overlapped) >= len(chunks) // 2
    sentences = {s.text for b in book.text_blocks for s in split_sentences(b.markdown())}
    for chunk in overlapped:
        previous = chunks[chunk.index - 1]
        repeated = chunk.text[: chunk.overlap_chars].strip()
        assert _squash(previous.body).endswith(_squash(repeated))
        assert count_tokens(repeated) <= 40
        assert all(s.text in sentences for s in split_sentences(repeated))
    assert chunks[0].overlap_chars == 0


def test_segment_rejects_budgets_it_cannot_meet(book: Document, count_tokens):
    with pytest.raises(ValueError):
        segment(book, count_tokens, max_tokens=8)
    with pytest.raises(ValueError):
        segment(book, count_tokens, max_tokens=100, overlap_tokens=60)


def test_vocab_token_counter_is_exact_and_cached(smol_path: Path, count_tokens):
    from engine.documents.tokens import _vocabulary

    assert count_tokens("") == 0
    assert count_tokens("Hello world") == 2
    assert count_tokens("<|im_start|>") > 1  # document text never becomes a special token
    hits = _vocabulary.cache_info().hits
    again = vocab_token_counter(smol_path)
    assert again("Hello world") == 2
    assert _vocabulary.cache_info().hits == hits + 1


def test_pasted_text():
    document = document_from_text("First paragraph.\r\n\r\nSecond one.", name="Clipboard")
    assert document.format is DocumentFormat.PASTED and document.source == ""
    assert [b.text for b in document.blocks] == ["First paragraph.", "Second one."]
    with pytest.raises(DocumentError) as caught:
        document_from_text("  \n\n ")
    assert caught.value.problem is DocumentProblem.EMPTY


def _rewrite_part(source: Path, target: Path, part: str, data: bytes) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w",
                                                         zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info, data if info.filename == part else old.read(info.filename))
    return target


BILLION_LAUGHS = b"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<!DOCTYPE w:document [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
]>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
<w:body><w:p><w:r><w:t>&d;&d;&d;&d;&d;&d;&d;&d;</w:t></w:r></w:p></w:body></w:document>"""


@pytest.mark.parametrize("codec", ["utf-8", "utf-16"])
def test_docx_with_a_doctype_is_refused_before_parsing(notes_docx: Path, tmp_path: Path,
                                                       codec: str):
    data = BILLION_LAUGHS if codec == "utf-8" else BILLION_LAUGHS.decode().replace(
        'encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    bomb = _rewrite_part(notes_docx, tmp_path / "laughs.docx", "word/document.xml", data)
    with pytest.raises(DocumentError) as info:
        parse_file(bomb)
    assert info.value.problem is DocumentProblem.CORRUPT
    assert "DOCTYPE" in str(info.value) and "word/document.xml" in str(info.value)


def test_docx_xml_part_over_the_limit_is_refused_as_it_inflates(notes_docx: Path,
                                                                tmp_path: Path):
    import random

    rng = random.Random(3)  # not very compressible: passes the ratio check
    words = " ".join("".join(rng.choice("abcdefghij") for _ in range(6)) for _ in range(400_000))
    xml = (b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
           b'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>' + words.encode()
           + b"</w:t></w:r></w:p></w:body></w:document>")
    big = _rewrite_part(notes_docx, tmp_path / "big.docx", "word/document.xml", xml)
    limits = Limits(max_docx_xml_bytes=1_000_000)
    with pytest.raises(DocumentError) as info:
        parse_file(big, limits)
    assert info.value.problem is DocumentProblem.TOO_LARGE
    assert "word/document.xml" in str(info.value) and "per part" in str(info.value)
    assert parse_file(big).blocks  # under the default limit it reads
