"""Make small PDF and Word files from plain text, with nothing but the standard library.

Used by tests/test_documents.py to make test files (an encrypted PDF, a
damaged one), and to rebuild the bundled documents' PDF and DOCX from their
text in kit/data/documents/sources/:

    python tests/document_files.py
"""
from __future__ import annotations

import textwrap
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "kit" / "data" / "documents"


def _pdf_string(line: str) -> str:
    line = line.encode("latin-1", "replace").decode("latin-1")
    return "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf_bytes(pages: list[str]) -> bytes:
    """A PDF with one page of Helvetica text per string (lines wrapped at 90)."""
    n = len(pages)
    # objects: 1 catalog, 2 page tree, 3 font, then (page, content) per page
    objs = {1: "<< /Type /Catalog /Pages 2 0 R >>",
            2: "<< /Type /Pages /Kids [%s] /Count %d >>" % (
                " ".join(f"{4 + 2 * i} 0 R" for i in range(n)), n),
            3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
               "/Encoding /WinAnsiEncoding >>"}
    for i, text in enumerate(pages):
        lines = []
        for raw in text.split("\n"):
            lines += textwrap.wrap(raw, 90) or [""]
        ops = ["BT /F1 11 Tf 14 TL 72 740 Td"]
        ops += [f"{_pdf_string(line)} Tj T*" for line in lines]
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objs[4 + 2 * i] = ("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                           f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>")
        objs[5 + 2 * i] = stream
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objs):
        offsets[number] = len(out)
        body = objs[number]
        if isinstance(body, bytes):
            out += f"{number} 0 obj\n<< /Length {len(body)} >>\nstream\n".encode()
            out += body + b"\nendstream\nendobj\n"
        else:
            out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offsets[k]:010d} 00000 n \n" for k in sorted(objs)).encode()
    out += (f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_TYPES = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
          '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
          '<Default Extension="rels" ContentType="application/'
          'vnd.openxmlformats-package.relationships+xml"/>'
          '<Default Extension="xml" ContentType="application/xml"/>'
          '<Override PartName="/word/document.xml" ContentType="application/'
          'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
          '</Types>')
_RELS = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
         '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
         '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
         '2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>')


def docx_bytes(pages: list[str]) -> bytes:
    """A Word file: one paragraph per blank-line-separated block, page breaks between pages."""
    import io

    paras = []
    for i, page in enumerate(pages):
        if i:
            paras.append('<w:p><w:r><w:br w:type="page"/></w:r></w:p>')
        for block in page.split("\n\n"):
            text = " ".join(block.split())
            paras.append(f'<w:p><w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r></w:p>')
    doc = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
           f'<w:document xmlns:w="{_W}"><w:body>{"".join(paras)}</w:body></w:document>')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        # fixed timestamps: the same text always gives the same bytes
        for name, data in [("[Content_Types].xml", _TYPES), ("_rels/.rels", _RELS),
                           ("word/document.xml", doc)]:
            z.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def pages_of(source: Path) -> list[str]:
    return source.read_text().rstrip("\n").split("\f")


# the bundled files made from sources/<name>.txt
BUNDLED = ("annual-report-2025.pdf", "local-history.docx", "research-guide.pdf",
           "strategic-plan-2026-2030.pdf", "family-history-guide.docx",
           "history-booklet-chapter-4.docx", "history-booklet-chapter-5.docx")


def rebuild_bundled() -> None:
    for name in BUNDLED:
        path = DOCS / "library" / name
        make = pdf_bytes if path.suffix == ".pdf" else docx_bytes
        path.write_bytes(make(pages_of(DOCS / "sources" / f"{path.stem}.txt")))


if __name__ == "__main__":
    rebuild_bundled()
    print("rebuilt", DOCS / "library")
