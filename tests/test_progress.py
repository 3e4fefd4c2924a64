"""Progress output: a live bar on a terminal, sparse plain lines in a log, none when quiet."""

from __future__ import annotations

import io

from evotune.progress import ConsoleProgress, format_record


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(generation: int) -> dict:
    return {
        "generation": generation,
        "best": [3.0, 0.5],
        "mean": [2.0, 0.7],
        "hypervolume": 0.42,
        "evaluations": 10 * (generation + 1),
        "cached": 0,
        "seconds": 0.01,
    }


def drive(progress: ConsoleProgress, generations: int) -> None:
    for g in range(generations):
        progress.generation_started(g, 10)
        progress.evaluated(6)
        progress.evaluated(4)
        progress.generation_finished(record(g))
    progress.close()


def test_log_output_is_about_twenty_lines_whatever_the_generations():
    stream = io.StringIO()
    drive(ConsoleProgress(["acc", "size"], generations=200, stream=stream), 200)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 20 and lines[0].startswith("gen   0")


def test_quiet_prints_nothing():
    stream = io.StringIO()
    drive(ConsoleProgress(["acc", "size"], generations=5, quiet=True, stream=stream), 5)
    assert stream.getvalue() == ""


def test_terminal_shows_a_live_bar_with_the_last_generation_line():
    stream = FakeTerminal()
    drive(ConsoleProgress(["acc", "size"], generations=3, stream=stream), 3)
    shown = stream.getvalue()
    assert "\x1b[" in shown  # rendered live, with terminal control codes
    assert "gen 2" in shown and "best acc=3 size=0.5" in shown


def test_record_line_names_objectives():
    line = format_record(record(4), ["acc", "size"])
    assert line.startswith("gen   4") and "best acc=3 size=0.5" in line and "hv 0.42" in line
