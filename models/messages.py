"""Words for the user: what a one-line error quotes of another library's exception."""
from __future__ import annotations

__all__ = ["error_detail"]


def error_detail(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``error``'s message, cut to ``limit`` characters, or the name
    of its type when it has no message. Parsers (pickle, json, tomllib, onnxruntime, torch) raise
    messages of several lines or thousands of characters, and a one-line error quotes only this."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(error).__name__
