"""Documents for the summarize and translate tasks: loading (in a child process with
limits), a block structure with locations for citations, sentences, and segmentation by
the model's own tokens. Format parsers are imported only in the parser process."""

from engine.documents.errors import DocumentError, DocumentProblem
from engine.documents.limits import Limits
from engine.documents.model import (
    Block,
    BlockKind,
    Document,
    DocumentFormat,
    DocumentStats,
    Location,
)
from engine.documents.parse import SUPPORTED_EXTENSIONS, parse_file
from engine.documents.pasted import document_from_text
from engine.documents.sandbox import load_document
from engine.documents.segment import BlockSpan, Chunk, CountTokens, segment
from engine.documents.sentences import Span, split_sentences
from engine.documents.tokens import vocab_token_counter

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Block",
    "BlockKind",
    "BlockSpan",
    "Chunk",
    "CountTokens",
    "Document",
    "DocumentError",
    "DocumentFormat",
    "DocumentProblem",
    "DocumentStats",
    "Limits",
    "Location",
    "Span",
    "document_from_text",
    "load_document",
    "parse_file",
    "segment",
    "split_sentences",
    "vocab_token_counter",
]
