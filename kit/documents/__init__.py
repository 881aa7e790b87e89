"""Stage 08, asking questions about your own documents (notebook 08).

>>> from kit.documents import index_folder, answer
>>> index = index_folder(bundled_folder())        # read, chunk, embed, save
>>> print(index.search("Can I renew a DVD?"))     # the 3 closest chunks
>>> print(answer("Can I renew a DVD?", index))    # an answer with its sources

read      a folder of .txt, .md, .pdf, .html, .docx into pages; skipped files and why
chunk     overlapping chunks that remember file, page and position
bm25      keyword search (BM25)
index     embeddings on disk, reused when files are unchanged; cosine search
ask       a prompt from the best chunks, the chat model's answer, its citations checked
measure   the bundled library documents and questions, hit rate @k
"""
from __future__ import annotations


def index_folder(folder, **options):
    """Read, chunk and embed a folder; see kit.documents.index.index_folder."""
    from kit.documents.index import index_folder as _index_folder

    return _index_folder(folder, **options)


def answer(question, index, **options):
    """Answer from the best chunks with sources; see kit.documents.ask.answer."""
    from kit.documents.ask import answer as _answer

    return _answer(question, index, **options)


def bundled_folder():
    """The folder of the kit's own library documents (public domain, CC0)."""
    from kit.documents.measure import bundled_folder as _bundled_folder

    return _bundled_folder()
