"""report: fake run directories in tmp_path -> report.html + plots/*.png."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evotune.errors import UserError
from evotune.report import load_run, write_report
from evotune.report.genome_plots import layer_map_figure
from evotune.report.html import (
    format_genome,
    format_seconds,
    plot_caption,
    sort_by_first_objective,
)
from evotune.report.plots import fitness_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OBJECTIVES = {
    1: [{"name": "accuracy", "direction": "max"}],
    2: [{"name": "accuracy", "direction": "max"}, {"name": "active_fraction", "direction": "min"}],
    3: [
        {"name": "accuracy", "direction": "max"},
        {"name": "active_fraction", "direction": "min"},
        {"name": "ood_auroc", "direction": "max"},
    ],
}


def _fitness(n_obj: int, g: int, i: int) -> list[float]:
    return [0.5 + 0.04 * g + 0.01 * i, 1.0 - 0.1 * i, 0.6 + 0.02 * i][:n_obj]


def make_run(
    root: Path,
    n_obj: int,
    *,
    task: str = "prune",
    generations: int = 4,
    population: int = 5,
    hypervolume: bool = False,
    baselines: dict | None = None,
    pareto_size: int = 3,
    genome: object = "0110" * 20,
) -> Path:
    """A small, self-consistent run directory with `n_obj` objectives."""
    run = root / f"run_{n_obj}obj"
    run.mkdir()
    journal, gens = [], []
    for g in range(generations):
        rows = [_fitness(n_obj, g, i) for i in range(population)]
        for i, fit in enumerate(rows):
            journal.append(
                {
                    "generation": g,
                    "index": i,
                    "hash": f"h{g}_{i}",
                    "genome": genome,
                    "fitness": fit,
                    "metrics": {"loss": 0.3},
                    "seconds": 0.1,
                    "cached": i == 0 and g,
                }
            )
        gens.append(
            {
                "generation": g,
                "best": [_best(OBJECTIVES[n_obj][k], [r[k] for r in rows]) for k in range(n_obj)],
                "mean": [sum(r[k] for r in rows) / population for k in range(n_obj)],
                "hypervolume": 0.1 * (g + 1) if hypervolume else None,
                "evaluations": population * (g + 1),
                "cached": 0,
                "seconds": 0.5,
            }
        )
    best = {
        "hash": "hbest",
        "genome": genome,
        "fitness": [0.875, 0.25, 0.75][:n_obj],
        "metrics": {"val_loss": 0.4125, "params": 1234},
    }
    pareto = [
        {"hash": f"p{i}", "genome": genome, "fitness": _fitness(n_obj, 3, i), "metrics": {}}
        for i in range(pareto_size)
    ]
    summary = {
        "task": task,
        "objectives": OBJECTIVES[n_obj],
        "best": best,
        "pareto": pareto if n_obj > 1 else [best],
        "evaluations": len(journal),
        "generations": generations,
        "wall_seconds": 754.25,
        "stopped_by": "generations",
        "baselines": baselines or {},
        "algorithm": "nsga2" if n_obj > 1 else "ga",
        "seed": 7,
    }
    _write_jsonl(run / "journal.jsonl", journal)
    _write_jsonl(run / "generations.jsonl", gens)
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text(yaml.safe_dump({"task": task, "search": {"seed": 7}}))
    return run


def _best(objective: dict, values: list[float]) -> float:
    return max(values) if objective["direction"] == "max" else min(values)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path.name} missing"
    data = path.read_bytes()
    assert len(data) > len(PNG_MAGIC) and data.startswith(PNG_MAGIC)


def test_single_objective_with_baselines(tmp_path: Path) -> None:
    baselines = {
        "full_finetune": {"fitness": [0.81], "metrics": {"val_loss": 0.5}},
        "linear_probe": {"fitness": [0.7], "metrics": {}},
    }
    run = make_run(tmp_path, 1, task="layers", baselines=baselines)
    report = write_report(run)
    assert report == run / "report.html"
    text = report.read_text(encoding="utf-8")
    for expected in (
        "layers",
        "0.875",
        "accuracy (max)",
        "full_finetune",
        "linear_probe",
        "val_loss",
        'src="plots/fitness.png"',
        "754.2 s (12m 34s)",
    ):
        assert expected in text, expected
    assert_png(run / "plots" / "fitness.png")
    assert not (run / "plots" / "pareto.png").exists()
    assert not (run / "plots" / "hypervolume.png").exists()
    assert "Pareto front" not in text  # a single objective's "front" is just the best


def test_two_objectives_with_hypervolume(tmp_path: Path) -> None:
    run = make_run(tmp_path, 2, hypervolume=True)
    text = write_report(run).read_text(encoding="utf-8")
    for name in ("fitness", "hypervolume", "pareto"):
        assert_png(run / "plots" / f"{name}.png")
        assert f'src="plots/{name}.png"' in text
    for expected in ("prune", "nsga2", "0.875", "accuracy (max)", "active_fraction (min)"):
        assert expected in text, expected
    assert "Pareto front" in text


def test_three_objectives_scatter_matrix(tmp_path: Path) -> None:
    run = make_run(tmp_path, 3)
    text = write_report(run).read_text(encoding="utf-8")
    assert_png(run / "plots" / "fitness.png")
    assert_png(run / "plots" / "pareto.png")
    assert not (run / "plots" / "hypervolume.png").exists()
    assert "ood_auroc (max)" in text


def test_nonfinite_fitness_and_truncated_journal(tmp_path: Path) -> None:
    run = make_run(tmp_path, 2, hypervolume=True)
    bad = [
        {
            "generation": 4,
            "index": i,
            "hash": f"bad{i}",
            "genome": "01",
            "fitness": fit,
            "metrics": {"error": "CUDA OOM"},
            "seconds": 0.0,
            "cached": False,
        }
        for i, fit in enumerate([[math.nan, 0.5], [math.inf, -math.inf], [None, 0.2]])
    ]
    with (run / "journal.jsonl").open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in bad))  # json writes NaN/Infinity
        fh.write('{"generation": 4, "index": 3, "fitn')  # killed mid-write
    with (run / "generations.jsonl").open("a") as fh:
        fh.write(
            json.dumps(
                {
                    "generation": 4,
                    "best": [math.nan, math.inf],
                    "mean": [math.nan, math.nan],
                    "hypervolume": math.nan,
                }
            )
            + "\n"
        )
    summary = json.loads((run / "summary.json").read_text())
    summary["pareto"].append({"hash": "x", "genome": "1", "fitness": [math.nan, 1.0]})
    (run / "summary.json").write_text(json.dumps(summary))

    data = load_run(run)
    assert data.skipped_journal_lines == 1
    assert len(data.journal) == 4 * 5 + 3
    text = write_report(run).read_text(encoding="utf-8")
    for name in ("fitness", "hypervolume", "pareto"):
        assert_png(run / "plots" / f"{name}.png")
    assert "1 unreadable journal line" in text


def test_all_failed_generations_still_report(tmp_path: Path) -> None:
    run = make_run(tmp_path, 1, generations=2)
    rows = [
        {"generation": g, "best": [math.nan], "mean": [None], "hypervolume": None} for g in range(2)
    ]
    _write_jsonl(run / "generations.jsonl", rows)
    write_report(run)
    assert_png(run / "plots" / "fitness.png")


def test_missing_summary_names_the_file(tmp_path: Path) -> None:
    run = make_run(tmp_path, 1)
    (run / "summary.json").unlink()
    with pytest.raises(UserError, match=r"summary\.json not found: is this an evotune run"):
        write_report(run)


@pytest.mark.parametrize(
    ("filename", "content", "match"),
    [
        ("generations.jsonl", None, r"generations\.jsonl not found"),
        (
            "generations.jsonl",
            '{"generation": 0}\nnot json\n{"generation": 2}\n',
            r"generations\.jsonl, line 2",
        ),
        ("summary.json", "{not json", r"summary\.json is not valid JSON"),
        (
            "summary.json",
            '{"task": "t", "objectives": [{"name": "a", "direction": "up"}]}',
            r"summary\.json: objectives\[0\]",
        ),
        ("config.yaml", "task: [unclosed", r"config\.yaml is not valid YAML"),
    ],
)
def test_malformed_files_raise_user_error(
    tmp_path: Path, filename: str, content: str | None, match: str
) -> None:
    run = make_run(tmp_path, 1)
    if content is None:
        (run / filename).unlink()
    else:
        (run / filename).write_text(content)
    with pytest.raises(UserError, match=match):
        load_run(run)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a directory"):
        load_run(tmp_path / "nope")


def test_text_is_escaped(tmp_path: Path) -> None:
    run = make_run(
        tmp_path, 1, task="<script>alert(1)</script>", genome={"head": "<b>", "lr": 0.0003125}
    )
    text = write_report(run).read_text(encoding="utf-8")
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "head=&lt;b&gt;" in text


def test_pareto_table_capped_and_sorted(tmp_path: Path) -> None:
    run = make_run(tmp_path, 2, pareto_size=60)
    text = write_report(run).read_text(encoding="utf-8")
    assert "showing the first 50 of 60" in text
    pareto_html = text.split("<h2>Pareto front</h2>")[1].split("</table>")[0]
    assert pareto_html.count("<tr>") == 1 + 50  # header + capped rows
    front = [{"fitness": [0.2]}, {"fitness": [math.nan]}, {"fitness": [0.9]}]
    assert [p["fitness"][0] for p in sort_by_first_objective(front, "max")][:2] == [0.9, 0.2]
    assert [p["fitness"][0] for p in sort_by_first_objective(front, "min")][:2] == [0.2, 0.9]


def test_rerun_removes_stale_plots_and_temp_files(tmp_path: Path) -> None:
    run = make_run(tmp_path, 2, hypervolume=True)
    write_report(run)
    rows = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    _write_jsonl(run / "generations.jsonl", [{**r, "hypervolume": None} for r in rows])
    write_report(run)
    assert not (run / "plots" / "hypervolume.png").exists()
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["fitness.png", "pareto.png"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_format_genome() -> None:
    bits = "1" * 70 + "0" * 30
    assert format_genome(bits) == "1" * 64 + "… (70 ones of 100)"
    assert format_genome("0101") == "0101 (2 ones of 4)"
    assert format_genome({"lr": 0.000312, "opt": "adam", "blocks": 3}) == (
        "lr=0.000312, opt=adam, blocks=3"
    )
    assert format_genome([0.5, 1.0]) == "[0.5, 1]"
    summary = format_genome([1.0, 2.0, 3.0] * 10 + [math.nan])
    assert summary == "31 floats: mean=2 min=1 max=3 (1 non-finite)"
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(3723) == "3723.0 s (1h 02m 03s)"


def test_report_does_not_import_pyplot(tmp_path: Path) -> None:
    """The report must not pick a process-wide backend for the user (no pyplot)."""
    run = make_run(tmp_path, 2)
    code = (
        "import sys; from evotune.report import write_report; "
        f"write_report({str(run)!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---- reports a user can read (issue 13, point 6) ----------------------------------------


def _css_rules(page: str) -> dict[str, str]:
    """selector -> declarations of the page's inline <style>."""
    css = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    return {sel.strip(): body for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)}


def _assert_numbers_never_break(page: str) -> None:
    rules = _css_rules(page)
    assert re.search(r"white-space:\s*nowrap", rules["td.num"])
    for selector, body in rules.items():  # the cause: cells allowed to break anywhere
        if "anywhere" in body:
            assert selector == "td.wrap", selector
    assert re.search(r"overflow-x:\s*auto", rules[".table-wrap"])
    cells = re.findall(r"<td([^>]*)>([^<]*)</td>", page)
    numeric = [(attrs, text) for attrs, text in cells if _is_number(text)]
    assert numeric and all('class="num"' in attrs for attrs, _ in numeric)
    assert page.count("<table") == page.count('<div class="table-wrap"><table')


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_numbers_in_table_cells_never_break_inside(tmp_path: Path) -> None:
    baselines = {"full": {"fitness": [0.883598], "metrics": {"val_loss": 0.3125}}}
    run = make_run(tmp_path, 2, baselines=baselines, genome="01" * 200)
    section = {"title": "Ensembles", "table": {"headers": ["k", "acc"], "rows": [[3, "0.883598"]]}}
    (run / "analysis.json").write_text(json.dumps({"sections": [section]}))
    page = write_report(run).read_text(encoding="utf-8")
    _assert_numbers_never_break(page)
    assert '<td class="wrap">0101' in page  # long bit strings may break (they scroll too)
    (tmp_path / "mapped").mkdir()
    mapped = make_run(tmp_path / "mapped", 2, genome={"lr": 0.000312, "dropout": 0.25})
    page = write_report(mapped).read_text(encoding="utf-8")
    _assert_numbers_never_break(page)
    assert "lr=0.000312, dropout=0.25" in page and 'class="wrap"' not in page


def _reference(name: str) -> dict:
    return {"file": f"stages/{name}/genomes/{name}.npy", "genes": 1536}


def make_weights_run(root: Path, baselines: dict | None = None) -> Path:
    """A staged run (task `weights`: stages layer1, layer2) whose genomes are file
    references, as the run loop journals large genomes."""
    run = make_run(root, 1, task="weights", generations=6, genome={"file": "x", "genes": 9})
    journal = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]
    gens = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    for row in journal + gens:
        row["stage"] = "layer1" if row["generation"] < 3 else "layer2"
    for entry in journal:
        entry["genome"] = _reference(f"h{entry['generation']}")
    _write_jsonl(run / "journal.jsonl", journal)
    _write_jsonl(run / "generations.jsonl", gens)
    summary = json.loads((run / "summary.json").read_text())
    summary["best"]["genome"] = {"file": "model.safetensors", "genes": 1728}
    summary["best"]["metrics"] = {"test_rmse": 0.349028, "test_accuracy": 0.96}
    summary["baselines"] = baselines or {}
    summary["stages"] = {
        name: {
            "best": {"fitness": [f], "metrics": {"rmse": 1 / f}},
            "generations": 3,
            "evaluations": 15,
            "wall_seconds": 1.5,
            "stopped_by": "generations",
        }
        for name, f in (("layer1", 4.125), ("layer2", 2.75))
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_weights_report_has_stages_and_no_per_gene_plots_of_file_genomes(tmp_path: Path) -> None:
    run = make_weights_run(tmp_path)
    page = write_report(run).read_text(encoding="utf-8")
    # a genome kept in a file is not two genes named "file" and "genes"
    assert not (run / "plots" / "parallel.png").exists()
    assert not (run / "plots" / "gene_importance.png").exists()
    assert "1728 values, in model.safetensors" in page
    assert "baseline" not in page.lower()  # this run has none
    stages = page.split("<h2>Stages</h2>")[1].split("</table>")[0]
    assert "<td>layer1</td>" in stages and "<td>layer2</td>" in stages
    assert '<td class="num">3–5</td>' in stages and '<td class="num">4.125</td>' in stages
    assert "vertical lines mark where a stage ends" in page

    ax = fitness_figure(load_run(run)).axes[0]
    boundaries = [line.get_xdata()[0] for line in ax.lines if len(set(line.get_xdata())) == 1]
    assert boundaries == [2.5]  # between generation 2 (layer1) and 3 (layer2)
    curves = [line.get_xdata() for line in ax.lines if len(set(line.get_xdata())) > 1]
    assert len(curves) == 4  # best and mean of each stage, never joined across stages
    assert all(max(x) <= 2 or min(x) >= 3 for x in curves)
    top = ax.child_axes[0]  # the stages' names, above the plot
    assert [t.get_text() for t in top.get_xticklabels()] == ["layer1", "layer2"]


def test_weights_report_mentions_only_baselines_that_exist(tmp_path: Path) -> None:
    run = make_weights_run(tmp_path, baselines={"sgd": {"fitness": [3.5], "metrics": {}}})
    page = write_report(run).read_text(encoding="utf-8")
    assert "Dotted lines: baselines." in page and "<h2>Baselines</h2>" in page


def _bits_run(root: Path, task: str, genes: list[str] | None = None, mode: str = "") -> Path:
    root.mkdir()
    run = make_run(root, 1, task=task, genome="0110")
    gens = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    _write_jsonl(run / "generations.jsonl", [{**g, "best_hash": "h0_1"} for g in gens])
    if genes:
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "genes": genes}))
    if mode:
        config = {"task": {"name": task, "mode": mode}, "fitness": {"hidden": 2}}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def test_layer_map_names_the_layers_and_captions_say_what_a_gene_is(tmp_path: Path) -> None:
    names = ["block1.conv", "block1.bn", "block2.conv", "head.fc"]
    run = _bits_run(tmp_path / "layers", "layers", genes=names)
    fig = layer_map_figure(load_run(run))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == names
    page = write_report(run).read_text(encoding="utf-8")
    assert "Trainable layers (dark) of each generation" in page

    pruned = _bits_run(tmp_path / "prune", "prune", mode="features")
    page = write_report(pruned).read_text(encoding="utf-8")
    assert "Kept input features (dark)" in page and "rainable" not in page
    both = load_run(_bits_run(tmp_path / "both", "prune", mode="both"))
    assert plot_caption("layer_map", both).startswith("Kept input features, then kept hidden")
    neurons = load_run(_bits_run(tmp_path / "n", "prune", mode="neurons"))
    assert plot_caption("layer_map", neurons).startswith("Kept hidden neurons")


def test_a_layers_run_names_its_genes_for_the_layer_map(tmp_path: Path) -> None:
    """The run directory holds the genes' names (summary.json `genes`): the layer map
    labels its rows with them, not with gene numbers."""
    from evotune.config import resolve
    from evotune.runner import start

    config = resolve(
        {
            "task": {"name": "layers", "baselines": []},
            "data": {"source": "digits", "classes": [0, 1], "max_per_class": 6,
                     "split": {"val_fraction": 0.3, "test_fraction": 0.3}},
            "model": {"backbone": "builtin:small_cnn", "channels": "keep",
                      "normalize": "none", "granularity": "leaf"},
            "search": {"population": 3, "generations": 2},
            "fitness": {"epochs": 1, "batch_size": 8, "device": "cpu"},
        }
    )  # fmt: skip
    summary = start(config, tmp_path / "run")
    task = config.task_class.from_config(config)
    names = [gene.name for gene in task.template.genes]
    assert summary["genes"] == names
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["genes"] == names
    fig = layer_map_figure(load_run(tmp_path / "run"))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == names


def test_data_notes_of_the_summary_are_in_the_report(tmp_path: Path) -> None:
    run = make_run(tmp_path, 1, task="layers")
    summary = json.loads((run / "summary.json").read_text())
    summary["data_notes"] = ["skipped 2 bad files (first: a/x.png: cannot identify image)"]
    (run / "summary.json").write_text(json.dumps(summary))
    text = write_report(run).read_text(encoding="utf-8")
    assert "data: skipped 2 bad files (first: a/x.png: cannot identify image)" in text
