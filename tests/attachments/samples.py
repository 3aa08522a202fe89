"""Small real files of the kinds mail carries, built deterministically with the standard library.

Each builder returns the bytes of a complete file of its format (a few KB at most), so the
validator can be tested against what libmagic says about real content, not hand-picked
signatures. ``SAMPLES`` maps a sample's name to its bytes. To look at them with other tools::

    python tests/attachments/samples.py OUTDIR    # then: file OUTDIR/*

Zip-based files use fixed timestamps and a fixed entry order, so the bytes only depend on
the zlib in use.
"""

from __future__ import annotations

import io
import struct
import sys
import zipfile
import zlib
from pathlib import Path

_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


# --- documents ------------------------------------------------------------------------------


def pdf(text: str = "Printer on fire", *, padding: int = 0) -> bytes:
    """A one-page PDF 1.4 showing ``text``, with a correct cross-reference table.

    ``padding`` adds an unused stream of that many bytes, for files of a chosen size.
    """
    page = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        _pdf_stream(page),
    ]
    if padding:
        objects.append(_pdf_stream(b"0" * padding))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _pdf_stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data)


def _zip(entries: list[tuple[str, str | bytes]], *, stored_first: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (name, data) in enumerate(entries):
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            stored = stored_first and index == 0
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_OPC = "http://schemas.openxmlformats.org/package/2006"
_OFFICE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_OOXML = "application/vnd.openxmlformats-officedocument"


def _content_types(overrides: dict[str, str]) -> str:
    parts = "".join(
        f'<Override PartName="{part}" ContentType="{kind}"/>' for part, kind in overrides.items()
    )
    return (
        f'{_XML}<Types xmlns="{_OPC}/content-types">'
        f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package'
        f'.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        f"{parts}</Types>"
    )


def _relationships(*targets: tuple[str, str]) -> str:
    rels = "".join(
        f'<Relationship Id="rId{n}" Type="{_OFFICE_REL}/{kind}" Target="{target}"/>'
        for n, (kind, target) in enumerate(targets, start=1)
    )
    return f'{_XML}<Relationships xmlns="{_OPC}/relationships">{rels}</Relationships>'


def docx(text: str = "Printer on fire") -> bytes:
    """A Word document (Office Open XML) with one paragraph, in the part order Word writes."""
    main = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    document = (
        f'{_XML}<w:document xmlns:w="{main}"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p>'
        "</w:body></w:document>"
    )
    kind = f"{_OOXML}.wordprocessingml.document.main+xml"
    return _zip(
        [
            ("[Content_Types].xml", _content_types({"/word/document.xml": kind})),
            ("_rels/.rels", _relationships(("officeDocument", "word/document.xml"))),
            ("word/document.xml", document),
        ]
    )


def xlsx(cell: str = "Printer on fire") -> bytes:
    """An Excel workbook (Office Open XML) with one sheet holding one text cell."""
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    workbook = (
        f'{_XML}<workbook xmlns="{main}" xmlns:r="{_OFFICE_REL}"><sheets>'
        '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    sheet = (
        f'{_XML}<worksheet xmlns="{main}"><sheetData><row r="1"><c r="A1" t="inlineStr">'
        f"<is><t>{cell}</t></is></c></row></sheetData></worksheet>"
    )
    kinds = {
        "/xl/workbook.xml": f"{_OOXML}.spreadsheetml.sheet.main+xml",
        "/xl/worksheets/sheet1.xml": f"{_OOXML}.spreadsheetml.worksheet+xml",
    }
    return _zip(
        [
            ("[Content_Types].xml", _content_types(kinds)),
            ("_rels/.rels", _relationships(("officeDocument", "xl/workbook.xml"))),
            ("xl/workbook.xml", workbook),
            ("xl/_rels/workbook.xml.rels", _relationships(("worksheet", "worksheets/sheet1.xml"))),
            ("xl/worksheets/sheet1.xml", sheet),
        ]
    )


def odt(text: str = "Printer on fire") -> bytes:
    """An OpenDocument text: ``mimetype`` first and uncompressed, as the format requires."""
    office = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
    text_ns = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
    manifest_ns = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
    kind = "application/vnd.oasis.opendocument.text"
    content = (
        f'{_XML}<office:document-content xmlns:office="{office}" xmlns:text="{text_ns}"'
        ' office:version="1.2"><office:body><office:text>'
        f"<text:p>{text}</text:p></office:text></office:body></office:document-content>"
    )
    manifest = (
        f'{_XML}<manifest:manifest xmlns:manifest="{manifest_ns}" manifest:version="1.2">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{kind}"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    return _zip(
        [("mimetype", kind), ("content.xml", content), ("META-INF/manifest.xml", manifest)],
        stored_first=True,
    )


def zip_archive() -> bytes:
    """A plain zip archive holding two small text files."""
    return _zip([("notes.txt", "Toner is low.\n"), ("todo.txt", "Order toner.\n")])


# --- images ---------------------------------------------------------------------------------


def png(width: int = 16, height: int = 16) -> bytes:
    """An 8-bit RGB PNG with a colour gradient."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (x * 16 % 256, y * 16 % 256, 128))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows, 9))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def jpeg() -> bytes:
    """A baseline JFIF JPEG of one grey pixel.

    One 8x8 block whose DC difference and AC coefficients are all zero, coded with two
    one-symbol Huffman tables: the scan is the bits ``0`` (DC: category 0) and ``0`` (AC:
    end of block), padded with ones.
    """
    app0 = b"JFIF\x00" + struct.pack(">BBBHHBB", 1, 1, 0, 1, 1, 0, 0)
    quant = b"\x00" + b"\x01" * 64
    frame = struct.pack(">BHHB", 8, 1, 1, 1) + b"\x01\x11\x00"
    one_symbol = b"\x01" + b"\x00" * 15 + b"\x00"  # one code of length 1, for symbol 0
    scan = b"\x01\x01\x00\x00\x3f\x00"
    return (
        b"\xff\xd8"
        + _jpeg_segment(0xE0, app0)
        + _jpeg_segment(0xDB, quant)
        + _jpeg_segment(0xC0, frame)
        + _jpeg_segment(0xC4, b"\x00" + one_symbol)  # DC table 0
        + _jpeg_segment(0xC4, b"\x10" + one_symbol)  # AC table 0
        + _jpeg_segment(0xDA, scan)
        + b"\x3f"
        + b"\xff\xd9"
    )


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def gif() -> bytes:
    """A GIF89a of one black pixel with a two-colour global palette."""
    screen = struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + image + b";"


# --- programs and text ----------------------------------------------------------------------

_DOS_STUB = (
    b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21"
    b"This program cannot be run in DOS mode.\r\r\n$"
)


def pe_executable() -> bytes:
    """A 32-bit Windows console program (PE32) whose entry point returns 0.

    A DOS header and stub, the PE headers with one ``.text`` section, and the code
    ``xor eax, eax; ret``; 1 KiB, laid out with the usual 512-byte file alignment.
    """
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    dos[2:10] = struct.pack("<HHHH", 0x90, 3, 0, 4)  # last page, pages, relocs, header paras
    dos[0x0C:0x12] = struct.pack("<HHH", 0xFFFF, 0, 0xB8)  # max alloc, ss, sp
    dos[0x18:0x1A] = struct.pack("<H", 0x40)  # relocation table offset: a "new" executable
    dos[0x3C:0x40] = struct.pack("<I", 0x80)  # where the PE header starts
    dos[0x40 : 0x40 + len(_DOS_STUB)] = _DOS_STUB
    coff = struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x0103)  # i386, 1 section, exe
    optional = (
        struct.pack("<HBBIIIIII", 0x10B, 14, 0, 0x200, 0, 0, 0x1000, 0x1000, 0x2000)
        + struct.pack("<III", 0x400000, 0x1000, 0x200)  # image base, section/file alignment
        + struct.pack("<HHHHHHI", 6, 0, 0, 0, 6, 0, 0)  # OS, image, subsystem versions
        + struct.pack("<IIIHH", 0x2000, 0x200, 0, 3, 0x8500)  # sizes, checksum, console, flags
        + struct.pack("<IIIIII", 0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
        + bytes(16 * 8)  # no data directories: no imports, no resources
    )
    section = b".text\x00\x00\x00" + struct.pack(
        "<IIIIIIHHI", 3, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0x60000020
    )
    headers = bytes(dos) + b"PE\x00\x00" + coff + optional + section
    code = b"\x31\xc0\xc3"  # xor eax, eax; ret
    return headers.ljust(0x200, b"\x00") + code.ljust(0x200, b"\x00")


def shell_script() -> bytes:
    return b"#!/bin/sh\n# Restart the print spooler.\nset -e\nsystemctl restart cups\necho done\n"


def plain_text() -> bytes:
    return (
        b"Hello,\n\nthe printer on the third floor jams on every second page.\n"
        b"Could someone have a look?\n\nThanks, Heather\n"
    )


def csv_table() -> bytes:
    return (
        b"asset,location,status,last_service\n"
        b"PRN-0301,Floor 3,jammed,2026-01-12\n"
        b"PRN-0302,Floor 3,ok,2026-01-20\n"
        b"PRN-0401,Floor 4,toner low,2025-12-02\n"
    )


def log_file() -> bytes:
    return (
        b"2026-01-01T07:00:01Z INFO  spooler started\n"
        b"2026-01-01T07:00:05Z WARN  PRN-0301 paper jam in tray 2\n"
        b"2026-01-01T07:02:17Z ERROR PRN-0301 offline\n"
    )


def eml() -> bytes:
    """A forwarded mail, as a mail client attaches it (``message/rfc822``)."""
    return (
        b"From: Heather Lee <heather@zylker.example>\r\n"
        b"To: facilities@zylker.example\r\n"
        b"Subject: Printer on the 3rd floor\r\n"
        b"Date: Thu, 01 Jan 2026 09:00:00 +0000\r\n"
        b"Message-ID: <fwd-1@zylker.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"It jams again.\r\n"
    )


SAMPLES: dict[str, bytes] = {
    "document.pdf": pdf(),
    "picture.png": png(),
    "picture.jpg": jpeg(),
    "picture.gif": gif(),
    "letter.docx": docx(),
    "sheet.xlsx": xlsx(),
    "letter.odt": odt(),
    "archive.zip": zip_archive(),
    "program.exe": pe_executable(),
    "script.sh": shell_script(),
    "notes.txt": plain_text(),
    "table.csv": csv_table(),
    "spooler.log": log_file(),
    "forwarded.eml": eml(),
    "empty.txt": b"",
}


def write_all(folder: Path) -> list[Path]:
    """Write every sample into ``folder`` under its name; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in SAMPLES]
    for path in paths:
        path.write_bytes(SAMPLES[path.name])
    return paths


if __name__ == "__main__":
    for written in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "samples")):
        print(written)
