"""Document loaders: text, Markdown, HTML and PDF files to :class:`~ragloom.types.Document`.

``load_file`` loads one file, ``load_folder`` walks a folder and ``load_paths`` takes a mix; the last two
return a :class:`LoadReport`, so one bad file is reported instead of aborting an ingest. Importing this
package is cheap: pypdfium2 and selectolax load only when a PDF or HTML file is read. PDFs and HTML pages are
parsed in a worker process under time and memory limits (see :func:`configure_parsing`); text and Markdown are
decoded here, in linear time.
"""

from __future__ import annotations

from ragloom.loaders._isolation import ParserLimits, configure_parsing
from ragloom.loaders.files import DEFAULT_MAX_BYTES, SUPPORTED_SUFFIXES, format_for, load_file
from ragloom.loaders.folder import LoadFailure, LoadReport, load_folder, load_paths

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SUPPORTED_SUFFIXES",
    "LoadFailure",
    "LoadReport",
    "ParserLimits",
    "configure_parsing",
    "format_for",
    "load_file",
    "load_folder",
    "load_paths",
]
