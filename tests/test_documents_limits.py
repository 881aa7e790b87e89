"""Reading a learner's folder stays inside it and within limits (kit.documents.read,
notebook 08): zip bombs and oversized PDFs are skipped with the reason, links
are never followed out of the folder, odd file names print safely."""
from __future__ import annotations

import io
import os
import zipfile

import pytest

from document_files import docx_bytes, pdf_bytes
from kit.documents.read import (Skipped, Unreadable, document_files, printable,
                                read_file, read_folder)

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _docx_bomb(characters: int) -> bytes:
    """A real .docx whose XML is `characters` letters long: tiny on disk."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            f.write(f'<w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>'.encode())
            block = b"A" * 1_000_000
            for _ in range(characters // len(block)):
                f.write(block)
            f.write(b"</w:t></w:r></w:p></w:body></w:document>")
    return buf.getvalue()


def test_a_docx_zip_bomb_is_skipped_with_the_reason(tmp_path):
    bomb = _docx_bomb(60_000_000)  # 60 MB of XML in well under 1 MB
    assert len(bomb) < 1_000_000
    (tmp_path / "bomb.docx").write_bytes(bomb)
    (tmp_path / "fine.docx").write_bytes(docx_bytes(["Open at nine."]))
    with pytest.raises(Unreadable, match="unpacks to 60 MB: more than 50 MB"):
        read_file(tmp_path / "bomb.docx")
    docs, skipped = read_folder(tmp_path)
    assert [d.name for d in docs] == ["fine.docx"]
    assert [s.name for s in skipped] == ["bomb.docx"]
    assert "zip bomb" in skipped[0].reason


def test_a_docx_that_lies_about_its_size_is_cut_at_the_limit(tmp_path):
    """The zip's headers say 1 KB; the bytes actually unpacked are counted."""
    import struct

    xml = (f'<w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>'.encode()
           + b"A" * 3_000_000 + b"</w:t></w:r></w:p></w:body></w:document>")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", xml)
    data = bytearray(buf.getvalue())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 1000)  # uncompressed size: a lie
    struct.pack_into("<I", data, central + 24, 1000)
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(
        "word/document.xml").file_size == 1000
    (tmp_path / "liar.docx").write_bytes(bytes(data))
    with pytest.raises(Unreadable) as caught:
        read_file(tmp_path / "liar.docx", max_bytes=1_000_000)
    # Python's zip reader stops at the declared size and finds the CRC wrong;
    # either way nothing near 3 MB was unpacked and the reason is given
    assert "not a readable .docx" in str(caught.value) or "zip bomb" in str(caught.value)


def _compressed_pdf(pages: list[str]) -> bytes:
    """pdf_bytes with its page streams deflated, as most real PDFs are."""
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf_bytes(pages))))
    for page in writer.pages:
        page.compress_content_streams()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_pdf_with_more_text_than_the_limit_is_skipped(tmp_path):
    data = _compressed_pdf(["word " * 2000] * 5)  # 50,000 characters of text
    assert len(data) < 15_000
    (tmp_path / "long.pdf").write_bytes(data)
    with pytest.raises(Unreadable, match="first 2 page.s. hold more than 15 KB"):
        read_file(tmp_path / "long.pdf", max_bytes=15_000)
    assert len(read_file(tmp_path / "long.pdf").pages) == 5  # the default reads it


def _tree(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (outside / "notes.md").write_text("Private notes.")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "hours.md").write_text("The library opens at nine.")
    (docs / "sub" / "rules.md").write_text("Loans last 21 days.")
    os.symlink(outside / "passwd.txt", docs / "passwd.txt")
    os.symlink(outside, docs / "linked-folder")
    os.symlink(docs / "hours.md", docs / "hours-again.md")
    os.symlink(tmp_path / "nowhere.md", docs / "broken.md")
    os.symlink("../../outside/notes.md", docs / "sub" / "relative.md")
    os.mkfifo(docs / "pipe.txt")
    return docs


def test_links_are_never_followed_and_each_skip_says_why(tmp_path):
    docs = _tree(tmp_path)
    files, skipped = document_files(docs)
    assert [f.relative_to(docs).as_posix() for f in files] == ["hours.md", "sub/rules.md"]
    why = {s.name: s.reason for s in skipped}
    assert set(why) == {"passwd.txt", "linked-folder", "hours-again.md", "broken.md",
                        "sub/relative.md", "pipe.txt"}
    assert "outside the folder" in why["passwd.txt"]
    assert "outside the folder" in why["linked-folder"]
    assert "outside the folder" in why["sub/relative.md"]
    assert "link to the file hours.md inside this folder" in why["hours-again.md"]
    assert "broken link" in why["broken.md"]
    assert "not a regular file" in why["pipe.txt"]
    read, _ = read_folder(docs)
    assert not any("root:x:0:0" in p for d in read for p in d.pages)


def test_the_index_never_holds_a_file_from_outside(tmp_path, embedding_model_path):
    from kit.documents.index import index_folder

    docs = _tree(tmp_path)
    index = index_folder(docs, progress=False, home=tmp_path / "ix")
    assert index.report.files == ["hours.md", "sub/rules.md"]
    assert not index.search("root:x:0:0", method="bm25")
    assert "passwd.txt: a link to outside the folder" in str(index.report)


def test_a_file_swapped_for_a_link_after_listing_is_not_read(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("the room password")
    os.symlink(secret, docs / "late.txt")
    with pytest.raises(Unreadable, match="a link"):
        read_file(docs / "late.txt")


def test_file_names_with_control_characters_print_safely(tmp_path):
    name = "evil\x1b[31mred\nline.bin"
    (tmp_path / name).write_bytes(b"x")
    _, skipped = document_files(tmp_path)
    shown = str(skipped[0])
    assert "\x1b" not in shown and "\n" not in shown
    assert shown.startswith("evil\\x1b[31mred\\nline.bin: not a supported type")
    assert skipped[0].name == name  # kept exactly, for code that uses it
    assert printable("café – ok.md") == "café – ok.md"
    assert str(Skipped("tab\there", "why")) == "tab\\there: why"
