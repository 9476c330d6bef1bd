"""Prompt sets for ``irene load`` and ``irene serve-bench``.

The default is HumanEval's 164 code prompts (shipped as ``irene/data/humaneval_prompts.jsonl.gz``,
MIT, see ``irene/data/HUMANEVAL_NOTICE.md``). A user's file is either JSONL (``.jsonl`` or
``.jsonl.gz``: one object per line with a non-empty string ``"prompt"``; other fields are kept as
the prompt's id when it is ``"task_id"`` or ``"id"``) or plain text (any other suffix: one prompt
per non-empty line, ``\\n`` written as the two characters backslash-n).
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from irene.checks import Checker, InputError

#: the name ``--prompts`` takes for the shipped set
HUMANEVAL = "humaneval"
#: the largest prompt file read (bytes, uncompressed)
MAX_PROMPT_FILE_BYTES = 64 * 2**20


class PromptFileError(InputError):
    """A prompt file that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class Prompt:
    """One prompt: ``id`` (the task id, or ``FILE:LINE``) and its ``text``."""

    id: str
    text: str


def humaneval_path() -> Path:
    """The shipped HumanEval prompt file."""
    return Path(str(resources.files("irene") / "data" / "humaneval_prompts.jsonl.gz"))


def _read_text(path: Path) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read(MAX_PROMPT_FILE_BYTES + 1)
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise PromptFileError(f"{path}: cannot read: {exc}") from exc
    if len(data) > MAX_PROMPT_FILE_BYTES:
        raise PromptFileError(f"{path}: more than {MAX_PROMPT_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from None


def _jsonl_prompts(path: Path, text: str) -> list[Prompt]:
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptFileError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise PromptFileError(f"{path}:{number}: expected a JSON object with a \"prompt\"")
        value = row.get("prompt")
        Checker(str(path), {(): number}, error=PromptFileError).text(value, ("prompt",))
        name = row.get("task_id", row.get("id", f"{path.name}:{number}"))
        prompts.append(Prompt(str(name), value))
    return prompts


def _text_prompts(path: Path, text: str) -> list[Prompt]:
    return [Prompt(f"{path.name}:{number}", line.replace("\\n", "\n"))
            for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_prompts(source: str | os.PathLike = HUMANEVAL, *,
                 limit: int | None = None) -> list[Prompt]:
    """The prompts of ``source`` (``"humaneval"`` or a file, see the module docstring), the
    first ``limit`` of them if given. PromptFileError for a bad or empty file; OSError for a
    missing one."""
    path = humaneval_path() if str(source) == HUMANEVAL else Path(source)
    text = _read_text(path)
    is_jsonl = path.name.endswith((".jsonl", ".jsonl.gz"))
    prompts = _jsonl_prompts(path, text) if is_jsonl else _text_prompts(path, text)
    if not prompts:
        raise PromptFileError(f"{path}: no prompt in the file")
    return prompts[:limit] if limit else prompts
