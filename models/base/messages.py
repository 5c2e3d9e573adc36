"""Words for the user: the one way the command line speaks (:func:`note`, :func:`warn`,
:func:`error`, each a line ``mssincresnet: <kind>: <message>`` on stderr), and what a one-line
error quotes of another library's exception.

Library functions that Python callers use directly (the dataset readers, the decoded-audio cache)
report skipped files and doubtful inputs with :func:`warnings.warn` instead, so that a caller can
filter them or turn them into errors; the command line shows those as Python prints warnings.
"""
from __future__ import annotations

import sys

__all__ = ["error_detail", "speak", "note", "warn", "error"]

PROGRAM = "mssincresnet"


def speak(kind: str, message) -> None:
    """The line ``mssincresnet: <kind>: <message>`` on stderr."""
    print(f"{PROGRAM}: {kind}: {message}", file=sys.stderr)


def note(message) -> None:
    """Tell the user something worth knowing about this run (nothing for None or '')."""
    if message:
        speak("note", message)


def warn(message: str) -> None:
    """Warn the user about a run that will work but probably not as they meant."""
    speak("warning", message)


def error(message) -> None:
    """Say why the command stopped (the command line then exits with a non-zero status)."""
    speak("error", message)


def error_detail(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``error``'s message, cut to ``limit`` characters, or the name
    of its type when it has no message. Parsers (pickle, json, tomllib, onnxruntime, torch) raise
    messages of several lines or thousands of characters, and a one-line error quotes only this."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(error).__name__
