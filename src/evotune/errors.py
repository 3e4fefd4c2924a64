"""Errors that mean "the user's input is wrong": the CLI prints them and exits with 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(ValueError):
    """Bad input (config, data, arguments). The message names the key or file and
    what was expected; the CLI prints it without a traceback and exits with code 2."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class RunError(RuntimeError):
    """A run that cannot go on (e.g. too many evaluations failed in a row). The run
    directory stays resumable; the CLI prints the message, without a traceback, and
    exits with code 1."""
