"""Progress output: a live bar on a terminal, sparse plain lines in a log, none when quiet."""

from __future__ import annotations

import io

from evotune.progress import ConsoleProgress, format_eta, format_record


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


# ---- where the run is: its search (algorithm, stage), generation i/N, ETA --------------


def plain_lines(drive_phases) -> list[str]:
    stream = io.StringIO()
    progress = ConsoleProgress(["acc", "size"], generations=3, stream=stream)
    drive_phases(progress)
    progress.close()
    return stream.getvalue().splitlines()


def test_compare_lines_name_the_algorithm_and_count_generations_of_n():
    def two_algorithms(progress):
        for i, name in enumerate(("ga", "random")):
            progress.phase_started(f"algorithm {name}", i, 2)
            for g in range(3):
                progress.generation_started(g, 10)
                progress.generation_finished(record(g))

    lines = plain_lines(two_algorithms)
    assert len(lines) == 6
    assert lines[0].startswith("[algorithm ga 1/2] gen   0/3  best acc=3")
    assert lines[5].startswith("[algorithm random 2/2] gen   2/3")
    assert all("ETA " in line for line in lines)


def test_stage_lines_count_generations_within_their_stage():
    """A staged run numbers generations across stages; each line counts its own."""

    def two_stages(progress):
        for i, stage in enumerate(("layer1", "layer2")):
            progress.phase_started(f"stage {stage}", i, 2, first_generation=3 * i)
            for g in range(3 * i, 3 * i + 3):
                progress.generation_started(g, 10)
                progress.generation_finished(record(g))
        progress.phase_started("stage sgd", 2, 3, first_generation=6, unit="epoch")
        progress.generation_finished(record(6))  # a gradient-trained stage: no bar, no N

    lines = plain_lines(two_stages)
    assert [line.split("  best")[0] for line in lines] == [
        "[stage layer1 1/2] gen   0/3",
        "[stage layer1 1/2] gen   1/3",
        "[stage layer1 1/2] gen   2/3",
        "[stage layer2 2/2] gen   0/3",
        "[stage layer2 2/2] gen   1/3",
        "[stage layer2 2/2] gen   2/3",
        "[stage sgd 3/3] epoch   0",
    ]
    assert "ETA" not in lines[-1]


def test_eta_from_the_pace_of_this_search_and_the_searches_still_to_come(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("evotune.progress.time.monotonic", lambda: clock[0])
    progress = ConsoleProgress(["acc"], generations=10, stream=io.StringIO())
    progress.phase_started("algorithm ga", 0, 3)
    for g in range(4):  # 2 s per generation
        progress.generation_started(g, 10)
        clock[0] += 2.0
        progress.generation_finished(record(g))
    # this search: 6 generations left at 2 s; then 2 more searches of about 20 s each
    assert progress.eta(record(3)) == 6 * 2.0 + 2 * 20.0
    assert format_eta(52.0) == "ETA 52s" and format_eta(3725) == "ETA 1h02m"
    budget = ConsoleProgress(["acc"], None, stream=io.StringIO(), max_evaluations=100)
    budget.generation_started(0, 10)
    assert budget._where(0) == "gen   0/~10"  # about as many as the budget allows


def test_terminal_bar_names_the_search():
    stream = FakeTerminal()
    progress = ConsoleProgress(["acc", "size"], generations=3, stream=stream)
    progress.phase_started("stage layer2", 1, 2, first_generation=3)
    progress.generation_started(4, 10)
    progress.evaluated(10)
    progress.generation_finished(record(4))
    progress.close()
    assert "[stage layer2 2/2] gen 1/3" in stream.getvalue()


def test_compare_run_announces_each_algorithm(tmp_path, capsys):
    from evotune.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(
        "task: {name: onemax, length: 12}\n"
        "search: {population: 4, generations: 2, compare: [ga, random]}\n"
        "output: {report: false}\n"
    )
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split("  best")[0] for line in err] == [
        "[algorithm ga 1/2] gen   0/2",
        "[algorithm ga 1/2] gen   1/2",
        "[algorithm random 2/2] gen   0/2",
        "[algorithm random 2/2] gen   1/2",
    ]


# ---- the result printed at the end of a run ------------------------------------------


def summary(best: dict) -> dict:
    return {
        "objectives": [{"name": "val_loss", "direction": "min"}],
        "best": best,
        "stopped_by": "generations",
        "evaluations": 12,
        "wall_seconds": 3.0,
        "pareto": [],
        "baselines": {},
    }


def test_end_of_run_prints_the_whole_best_hparams_genome(tmp_path, capsys):
    from evotune.cli import _print_result

    genome = {
        "kept": 4,
        "frozen": 1,
        "lr": 0.0119616123,
        "dropout": 0.0878278,
        "head_width": 8,
        "se_blocks": True,
        "optimizer": "adamw",
    }
    best = {"genome": genome, "fitness": [0.97], "metrics": {}, "algorithm": "ga"}
    _print_result(summary(best), tmp_path)
    out = capsys.readouterr().out
    line = "best genome (ga): kept=4, frozen=1, lr=0.0119616, dropout=0.0878278, "
    assert line + "head_width=8, se_blocks=True, optimizer=adamw\n" in out


def test_end_of_run_prints_the_test_metrics_of_a_weights_run(tmp_path, capsys):
    from evotune.cli import _print_result

    metrics = {"train_rmse": 0.35, "test_rmse": 0.349028, "test_accuracy": 0.9625}
    best = {"genome": {"file": "model.safetensors", "genes": 1728}, "fitness": [2.88]}
    _print_result(summary({**best, "metrics": metrics}), tmp_path)
    out = capsys.readouterr().out
    assert "test: rmse=0.349028, accuracy=0.9625" in out
    assert "best genome" not in out  # a file reference is not a genome to print
