"""report/comparison.py: when each evaluation counts as finished, and the report of a
comparison directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evotune.report import write_report
from evotune.report.comparison import best_curve, comparison_figure
from evotune.report.rundata import load_run


def fake_run(folder: Path, journal: list[dict], generations: list[dict]) -> Path:
    folder.mkdir(parents=True)
    summary = {"task": "hparams", "objectives": [{"name": "val_loss", "direction": "min"}]}
    summary |= {"best": {"fitness": [min(e["fitness"][0] for e in journal)]}}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "journal.jsonl").write_text("\n".join(json.dumps(e) for e in journal))
    (folder / "generations.jsonl").write_text("\n".join(json.dumps(g) for g in generations))
    return folder


def entry(generation: int, loss: float, seconds: float, cached: bool = False) -> dict:
    return {"generation": generation, "fitness": [loss], "seconds": seconds, "cached": cached}


def test_evaluations_count_when_their_chunk_ends_after_the_generation_overhead(tmp_path):
    journal = [entry(0, 3.0, 2.0), entry(0, 2.0, 2.0), entry(1, 1.0, 1.0), entry(1, 5.0, 0.5)]
    journal.append(entry(1, 1.0, 0.0, cached=True))  # free: not on the time axis
    generations = [{"generation": 0, "seconds": 4.5}, {"generation": 1, "seconds": 1.5}]
    curve = best_curve(load_run(fake_run(tmp_path / "r", journal, generations)))
    # generation 0: one chunk of two (2 s each) after 0.5 s of overhead; generation 1:
    # two single-genome chunks, no overhead
    assert curve.tolist() == [[4.5, 1, 3.0], [4.5, 2, 2.0], [5.5, 3, 1.0], [6.0, 4, 1.0]]


def test_lower_fidelity_values_take_time_but_are_never_the_best(tmp_path):
    journal = [entry(0, 0.5, 1.0), entry(0, 2.0, 0.5), entry(1, 1.0, 3.0)]
    journal[0]["metrics"] = {"fidelity": 1 / 6}  # a first-rung loss: fewer epochs
    generations = [{"generation": 0, "seconds": 1.5}, {"generation": 1, "seconds": 3.0}]
    curve = best_curve(load_run(fake_run(tmp_path / "r", journal, generations)))
    assert curve.tolist() == [[1.0, 1, np.inf], [1.5, 2, 2.0], [4.5, 3, 1.0]]


def test_comparison_directory_report_links_each_algorithm(tmp_path):
    comparison = {}
    for i, name in enumerate(("ga", "tpe")):
        journal = [entry(0, 2.0 - i, 1.0), entry(0, 1.5 - i, 2.0)]
        fake_run(tmp_path / name, journal, [{"generation": 0, "seconds": 3.0}])
        comparison[name] = {"dir": name, "best": {"fitness": [1.5 - i]}, "evaluations": 2,
                            "wall_seconds": 3.0}  # fmt: skip
    summary = {"task": "hparams", "objectives": [{"name": "val_loss", "direction": "min"}]}
    (tmp_path / "summary.json").write_text(json.dumps(summary | {"comparison": comparison}))
    text = write_report(tmp_path).read_text()
    assert 'href="ga/report.html"' in text and 'href="tpe/report.html"' in text
    assert (tmp_path / "plots" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert np.isfinite(best_curve(load_run(tmp_path / "tpe"))[:, 2]).all()


def test_every_algorithm_stays_visible_when_their_curves_coincide(tmp_path):
    """The same seed draws the same first population: curves that coincide must not
    hide one another (the `ga` line used to vanish under the last one drawn)."""
    runs = {}
    for name in ("ga", "random", "annealing", "tpe"):
        journal = [entry(0, 2.0, 1.0), entry(0, 1.0, 1.0), entry(1, 1.0, 1.0)]
        fake_run(tmp_path / name, journal, [{"generation": g, "seconds": 2.0} for g in (0, 1)])
        runs[name] = load_run(tmp_path / name)
    for ax in comparison_figure(runs).axes:
        curves = [line for line in ax.lines if line.get_label() in runs]
        assert [line.get_label() for line in curves] == list(runs)
        styles = {(line.get_color(), line.get_linestyle()) for line in curves}
        assert len(styles) == len(runs)
        # drawn in order, each on top of the one before and narrower: the edges show
        widths = [line.get_linewidth() for line in curves]
        assert widths == sorted(widths, reverse=True) and len(set(widths)) == len(widths)
        ends = [line for line in ax.lines if line.get_marker() not in ("None", "", None)]
        assert len(ends) == len(runs)  # a marker where each curve ends


def test_comparison_page_numbers_never_break(tmp_path):
    comparison = {}
    for name in ("ga", "tpe"):
        fake_run(tmp_path / name, [entry(0, 0.883598, 1.0)], [{"generation": 0, "seconds": 1.0}])
        comparison[name] = {"dir": name, "best": {"fitness": [0.883598]}, "evaluations": 1}
    summary = {"task": "hparams", "objectives": [{"name": "val_loss", "direction": "min"}]}
    (tmp_path / "summary.json").write_text(json.dumps(summary | {"comparison": comparison}))
    page = write_report(tmp_path).read_text()
    assert '<div class="table-wrap"><table>' in page
    assert '<td class="num">0.883598</td>' in page and "white-space: nowrap" in page
