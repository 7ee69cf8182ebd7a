"""Hostile documents: truncated, encrypted and decompression-bomb PDFs, PDFs whose page tree
or outline loops, DOCX zip bombs, DOCX that lie about their sizes or carry a DOCTYPE, a
500 MB text file, a 50 MB single line, invalid UTF-8, folders, FIFOs and devices. Each
ends in a one-line error naming the file (or, for text that only has bad bytes, a document)
within the parser's time limit; the time and the peak memory of the parser process are
recorded per case."""

from __future__ import annotations

import os
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.documents import DocumentError, DocumentProblem, load_document
from engine.documents.sandbox import load_document as sandboxed
from tests.test_documents import (
    BILLION_LAUGHS,
    _docx_bomb,
    _encrypted_pdf,
    _make_docx,
    _make_pdf,
    _rewrite_part,
)

FAMILY = "Hostile documents"
TIMEOUT_S = 60.0  # load_document's default
MEMORY_MB = 1024  # its memory cap
assert sandboxed is load_document


def _cut(fraction: float) -> Callable[[Path, Path, Path], Path]:
    def make(d: Path, pdf: Path, docx: Path) -> Path:
        data = pdf.read_bytes()
        out = d / f"cut-{int(fraction * 100)}.pdf"
        out.write_bytes(data[: int(len(data) * fraction)])
        return out
    return make


def _raw_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF from object bodies (1-based), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, root, xref)
    return bytes(out)


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _stream(data: bytes, compress: bool = True) -> bytes:
    body = zlib.compress(data, 9) if compress else data
    extra = b" /Filter /FlateDecode" if compress else b""
    return b"<< /Length %d%s >>\nstream\n" % (len(body), extra) + body + b"\nendstream"


def _pdf_bomb(d: Path, pdf: Path, docx: Path) -> Path:
    """A page whose content stream inflates to 1 GiB (about 1 MB on disk)."""
    comp = zlib.compressobj(9)
    chunk = b"BT /F1 12 Tf 72 720 Td (boom) Tj ET\n" * 30_000
    packed = b"".join(comp.compress(chunk) for _ in range((1 << 30) // len(chunk)))
    packed += comp.flush()
    content = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + \
        b"\nendstream"
    out = d / "bomb.pdf"
    out.write_bytes(_raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        content, _FONT]))
    return out


def _page(parent: int, contents: int) -> bytes:
    return (b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 9 0 R >> >> >>" % (parent, contents))


def _text(words: str) -> bytes:
    return _stream(b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % words.encode(), compress=False)


def _pdf_page_tree_loop(d: Path, pdf: Path, docx: Path) -> Path:
    """The page tree's /Kids contains the tree itself (and a second node pointing back)."""
    out = d / "kids-loop.pdf"
    out.write_bytes(_raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 2 0 R 5 0 R] /Count 3 >>",
        _page(2, 4), _text("A page in a looping tree."),
        b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R 5 0 R] /Count 2 >>",
        b"null", b"null", b"null", _FONT]))
    return out


def _pdf_outline_loop(d: Path, pdf: Path, docx: Path) -> Path:
    """Outline items whose /Next and /First point back at each other."""
    out = d / "outline-loop.pdf"
    out.write_bytes(_raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R /Outlines 5 0 R /PageMode /UseOutlines >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        _page(2, 4), _text("The only page. Its outline loops."),
        b"<< /Type /Outlines /First 6 0 R /Last 7 0 R /Count 2 >>",
        b"<< /Title (One) /Parent 5 0 R /Next 7 0 R /First 7 0 R /Dest [3 0 R /Fit] >>",
        b"<< /Title (Two) /Parent 5 0 R /Next 6 0 R /Prev 6 0 R /First 6 0 R >>",
        b"null", _FONT]))
    return out


def _pdf_xref_loop(d: Path, pdf: Path, docx: Path) -> Path:
    """Two cross-reference sections whose /Prev point at each other."""
    body = _raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>",
                     b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", _page(2, 4),
                     _text("Cross references that loop."), b"null", b"null", b"null",
                     b"null", _FONT])
    xref = body.rindex(b"xref")
    body = body.replace(b"trailer\n<< /Size 10 /Root 1 0 R >>",
                        b"trailer\n<< /Size 10 /Root 1 0 R /Prev %d >>" % xref)
    out = d / "xref-loop.pdf"
    out.write_bytes(body)
    return out


def _pdf_many_pages(d: Path, pdf: Path, docx: Path) -> Path:
    """A page tree claiming 10^9 pages with one real page repeated 5,000 times."""
    out = d / "many-pages.pdf"
    kids = b" ".join(b"3 0 R" for _ in range(5000))
    out.write_bytes(_raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count 1000000000 >>",
        _page(2, 4), _text("Repeated page."), b"null", b"null", b"null", b"null", _FONT]))
    return out


def _docx_lying(d: Path, pdf: Path, docx: Path) -> Path:
    """A .docx whose zip directory says document.xml is 1 KB; it inflates to 200 MB."""
    big = (b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
           b'wordprocessingml/2006/main"><w:body>' + b"<w:p><w:r><w:t>spam</w:t></w:r></w:p>"
           * 5_000_000 + b"</w:body></w:document>")
    out = _rewrite_part(docx, d / "lying.docx", "word/document.xml", big)
    data = bytearray(out.read_bytes())
    name = b"word/document.xml"
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:  # central directory entries
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + n] == name:
            struct.pack_into("<I", data, at + 24, 1000)  # uncompressed size
        at += 4
    at = 0
    while (at := data.find(b"PK\x03\x04", at)) >= 0:  # local headers
        n = struct.unpack_from("<H", data, at + 26)[0]
        if data[at + 30:at + 30 + n] == name:
            struct.pack_into("<I", data, at + 22, 1000)
        at += 4
    out.write_bytes(bytes(data))
    return out


def _docx_entities(d: Path, pdf: Path, docx: Path) -> Path:
    return _rewrite_part(docx, d / "laughs.docx", "word/document.xml", BILLION_LAUGHS)


def _docx_external_entity(d: Path, pdf: Path, docx: Path) -> Path:
    xml = (b'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY x SYSTEM "file:///etc/passwd">'
           b']><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/'
           b'main"><w:body><w:p><w:r><w:t>&x;</w:t></w:r></w:p></w:body></w:document>')
    return _rewrite_part(docx, d / "xxe.docx", "word/document.xml", xml)


def _docx_many_entries(d: Path, pdf: Path, docx: Path) -> Path:
    out = d / "entries.docx"
    with zipfile.ZipFile(docx) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            new.writestr(info, old.read(info.filename))
        for i in range(20_000):
            new.writestr(f"word/media/x{i}.bin", b"")
    return out


def _big_text(mb: int) -> Callable[[Path, Path, Path], Path]:
    def make(d: Path, pdf: Path, docx: Path) -> Path:
        out = d / f"big-{mb}.txt"
        line = b"All work and no play makes a dull summary. " * 20 + b"\n"
        block = line * (1 << 20 // len(line) + 1)
        with out.open("wb") as f:
            while f.tell() < mb << 20:
                f.write(block)
        return out
    return make


def _one_line(mb: int, suffix: str) -> Callable[[Path, Path, Path], Path]:
    def make(d: Path, pdf: Path, docx: Path) -> Path:
        out = d / f"line-{mb}{suffix}"
        word = b"word "
        with out.open("wb") as f:
            if suffix == ".html":
                f.write(b"<html><body><p>")
            f.write(word * ((mb << 20) // len(word)))
        return out
    return make


def _invalid_utf8(d: Path, pdf: Path, docx: Path) -> Path:
    out = d / "bad-bytes.txt"
    out.write_bytes(b"Hello \xff\xfe world. This text has bytes that are not UTF-8: \xc3\x28 "
                    b"and \xed\xa0\x80 (a surrogate).\n" * 50)
    return out


def _folder(d: Path, pdf: Path, docx: Path) -> Path:
    out = d / "folder.txt"
    out.mkdir()
    return out


def _unreadable(d: Path, pdf: Path, docx: Path) -> Path:
    out = d / "secret.txt"
    out.write_text("You may not read this.\n")
    out.chmod(0)
    return out


def _unreadable_dir(d: Path, pdf: Path, docx: Path) -> Path:
    folder = d / "locked"
    folder.mkdir()
    out = folder / "inside.txt"
    out.write_text("Behind a locked folder.\n")
    folder.chmod(0)
    return out


def _fifo(d: Path, pdf: Path, docx: Path) -> Path:
    out = d / "pipe.txt"
    os.mkfifo(out)
    return out


def _dev_zero(d: Path, pdf: Path, docx: Path) -> Path:
    out = d / "zero.txt"
    out.symlink_to("/dev/zero")
    return out


def _symlink_loop(d: Path, pdf: Path, docx: Path) -> Path:
    a, b = d / "a.txt", d / "b.txt"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _pdf_named_docx(d: Path, pdf: Path, docx: Path) -> Path:
    out = d / "really-a-pdf.docx"
    out.write_bytes(pdf.read_bytes())
    return out


CASES: dict[str, tuple[Callable[[Path, Path, Path], Path], bool]] = {
    # name: (maker, long)
    "PDF cut at 10 %": (_cut(0.1), False),
    "PDF cut at 50 %": (_cut(0.5), True),
    "PDF cut at 95 %": (_cut(0.95), True),
    "encrypted PDF": (lambda d, pdf, docx: _encrypted_pdf(pdf, d / "locked.pdf"), False),
    "PDF decompression bomb (1 GiB page)": (_pdf_bomb, True),
    "PDF page tree loop": (_pdf_page_tree_loop, False),
    "PDF outline loop": (_pdf_outline_loop, False),
    "PDF cross-reference loop": (_pdf_xref_loop, True),
    "PDF claiming 10^9 pages": (_pdf_many_pages, True),
    "PDF named .docx": (_pdf_named_docx, True),
    "DOCX zip bomb": (lambda d, pdf, docx: _docx_bomb(docx, d / "bomb.docx"), False),
    "DOCX lying about its sizes": (_docx_lying, True),
    "DOCX with entities (billion laughs)": (_docx_entities, False),
    "DOCX with an external entity": (_docx_external_entity, True),
    "DOCX with 20,000 entries": (_docx_many_entries, True),
    "500 MB text file": (_big_text(500), True),
    "50 MB single line (.txt)": (_one_line(50, ".txt"), True),
    "50 MB single line (.html)": (_one_line(50, ".html"), True),
    "invalid UTF-8": (_invalid_utf8, False),
    "a folder": (_folder, False),
    "unreadable file": (_unreadable, True),
    "file in an unreadable folder": (_unreadable_dir, True),
    "FIFO": (_fifo, True),
    "/dev/zero": (_dev_zero, True),
    "symlink loop": (_symlink_loop, True),
}


EXPECTED = {
    "encrypted PDF": DocumentProblem.ENCRYPTED,
    "PDF decompression bomb (1 GiB page)": DocumentProblem.ARCHIVE_BOMB,
    "PDF claiming 10^9 pages": DocumentProblem.TOO_LARGE,
    "DOCX zip bomb": DocumentProblem.ARCHIVE_BOMB,
    "DOCX with 20,000 entries": DocumentProblem.ARCHIVE_BOMB,
    "500 MB text file": DocumentProblem.TOO_LARGE,
    "50 MB single line (.txt)": DocumentProblem.TOO_LARGE,
    "50 MB single line (.html)": DocumentProblem.TOO_LARGE,
}


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("originals")
    return _make_pdf(d / "printing.pdf"), _make_docx(d / "notes.docx")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=(pytest.mark.long,) if long else ()) for name, (_, long)
    in CASES.items()])
def test_hostile_document_ends_in_a_clear_error_within_the_limits(
        name: str, tmp_path: Path, originals: tuple[Path, Path], record_property) -> None:
    make, _ = CASES[name]
    path = make(tmp_path, *originals)
    start = time.monotonic()
    try:
        document = load_document(path, timeout_s=TIMEOUT_S, max_memory_mb=MEMORY_MB)
    except DocumentError as exc:
        message = str(exc)
        assert message.startswith(path.name + ": "), message
        assert "\n" not in message and "Traceback" not in message, message
        assert exc.problem is EXPECTED.get(name, exc.problem), exc.problem
        record_property("result", f"{exc.problem}: {message[len(path.name) + 2:][:150]}")
    else:
        # Only text with a few bad bytes, or a PDF whose loop is harmless, may be read.
        assert name in {"invalid UTF-8", "PDF outline loop", "PDF page tree loop",
                        "PDF cross-reference loop", "PDF claiming 10^9 pages",
                        "unreadable file", "file in an unreadable folder"}, name
        text = " ".join(b.text for b in document.blocks)
        assert text.strip()
        record_property("result", f"read: {len(text):,} characters, "
                                  f"{len(document.blocks)} blocks")
    took = time.monotonic() - start
    record_property("seconds_in_parser", round(took, 2))
    assert took < TIMEOUT_S + 10, took
    for p in (tmp_path / "locked",):
        if p.exists():
            p.chmod(0o700)
