"""File-name patterns such as "{label}_{speaker}_{index}.wav" turned into regexes.

`{name}` captures one or more characters other than "/", as few as possible, and
`*` matches anything within one path segment. A pattern with "/" is matched
against the file's path relative to the data folder (e.g.
"fold{fold}/{id}-{label}-*.wav"), otherwise against the file name; a pattern whose
last segment has no "." is matched against the name without its extension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class FilePattern:
    text: str
    regex: re.Pattern[str]
    fields: tuple[str, ...]
    on_path: bool  # match the relative path, not just the file name
    on_stem: bool  # match the name without its extension

    def match(self, relative: PurePosixPath) -> dict[str, str] | None:
        """The fields of a file (path relative to the data folder), or None."""
        if self.on_path:
            target = str(relative.with_suffix("") if self.on_stem else relative)
        else:
            target = relative.stem if self.on_stem else relative.name
        found = self.regex.fullmatch(target)
        return None if found is None else found.groupdict()


def compile_pattern(text: str) -> FilePattern:
    """Parse `text`; raises ValueError (turned into a config error) when malformed."""
    parts: list[str] = []
    fields: list[str] = []
    position = 0
    for found in _FIELD.finditer(text):
        parts.append(_literal(text, text[position : found.start()]))
        name = found.group(1)
        if not name.isidentifier():
            raise ValueError(f"pattern {text!r}: {{{name}}} is not a field name like {{speaker}}")
        if name in fields:
            raise ValueError(f"pattern {text!r}: field {{{name}}} appears twice")
        fields.append(name)
        parts.append(f"(?P<{name}>[^/]+?)")
        position = found.end()
    parts.append(_literal(text, text[position:]))
    if not fields:
        raise ValueError(f"pattern {text!r} has no {{field}}; e.g. '{{label}}_{{speaker}}.wav'")
    last_segment = text.rsplit("/", 1)[-1]
    return FilePattern(
        text=text,
        regex=re.compile("".join(parts)),
        fields=tuple(fields),
        on_path="/" in text,
        on_stem="." not in _FIELD.sub("", last_segment),
    )


def _literal(text: str, chunk: str) -> str:
    if "{" in chunk or "}" in chunk:
        raise ValueError(f"pattern {text!r}: unbalanced brace in {chunk!r}")
    return "[^/]*?".join(re.escape(piece) for piece in chunk.split("*"))
