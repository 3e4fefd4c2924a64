"""`evotune predict`: exports record their input pipeline, and predict applies exactly
that pipeline to new data (layers on digits as npz and as an image folder, audio on a
WAV folder, prune and weights exports), with labels (metrics) or without. Bad input
exits 2 with one message."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import confusion_matrix

from evotune.cli import main
from evotune.config import load_config
from evotune.data import load_data
from evotune.exported import load_exported
from evotune.predict import load_model, predict, read_data
from evotune.tasks.weights_base import MODEL_FILE, SVM_FILE, read_model
from evotune.train.autoencoder import TiedStack
from evotune.train.svm import svm_predict
from tiny_configs import tiny_layers

LAYERS = tiny_layers(search={"population": 2, "generations": 1}, output={"report": False})
TONES = {"0": 300.0, "1": 900.0, "2": 2000.0}
AUDIO = {"sample_rate": 8000, "duration": 0.3, "n_mels": 16, "n_fft": 256, "hop_length": 128}


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    # Never touch the user's ~/.cache (spectrograms, features) from a test.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVOTUNE_CACHE", str(tmp_path_factory.mktemp("evotune-cache")))
        yield


def run_and_export(folder, raw, name, *export_args):
    config = folder / f"{name}.yaml"
    config.write_text(json.dumps(raw))  # JSON is YAML
    run = folder / name
    assert main(["run", str(config), "--out", str(run), "-q"]) == 0
    model = folder / f"{name}.safetensors"
    assert main(["export", str(run), "--out", str(model), *export_args]) == 0
    return run, model


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    return run_and_export(tmp_path_factory.mktemp("layers"), LAYERS, "run")


def digits_012():
    bunch = load_digits()
    keep = bunch.target < 3
    return (bunch.images[keep] / 16.0).astype(np.float32), bunch.target[keep]


def direct(model_path, x):
    """The exported model applied by hand: softmax probabilities (N, classes)."""
    net = load_model(model_path)
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(x)).double(), dim=1).numpy()


def assert_metrics(metrics, y, predicted, classes):
    confusion = confusion_matrix(y, predicted, labels=list(range(len(classes))))
    assert metrics["classes"] == classes
    assert metrics["confusion"] == confusion.tolist()
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == y))
    support = confusion.sum(axis=1)
    for i, name in enumerate(classes):
        expected = confusion[i, i] / support[i] if support[i] else None
        assert metrics["per_class"][name] == pytest.approx(expected)


# ---- layers: the recorded pipeline, npz and image folders ---------------------------


def test_a_layers_export_records_its_input_pipeline(layers):
    _, model = layers
    exported = load_exported(model)
    assert exported.pipeline == {
        "version": 1,
        "kind": "image",
        "source": "digits",
        "input_shape": [1, 8, 8],
        "classes": ["0", "1", "2"],
        "audio": None,
        "label": None,
        "image": {"color": "gray", "size": [8, 8], "resize": False},
        "input_map": None,
    }
    assert json.loads(model.with_suffix(".json").read_text())["pipeline"] == exported.pipeline
    assert not exported.model.training


def test_predict_on_an_npz_with_labels_equals_a_direct_computation(layers, tmp_path):
    _, model = layers
    x, y = digits_012()
    np.savez(tmp_path / "new.npz", x=x, y=y)
    out = tmp_path / "p.csv"
    result = predict(model, {"path": str(tmp_path / "new.npz")}, out=out)
    probabilities = direct(model, x[:, None])
    predicted = probabilities.argmax(axis=1)
    assert [r["predicted"] for r in result.rows] == [str(p) for p in predicted]
    assert [r["probability"] for r in result.rows] == pytest.approx(probabilities.max(axis=1))
    assert [r["label"] for r in result.rows] == [str(v) for v in y]
    assert_metrics(result.metrics, y, predicted, ["0", "1", "2"])
    with out.open() as stream:
        rows = list(csv.DictReader(stream))
    assert rows[0] == {
        "item": "new.npz[0]",
        "predicted": str(predicted[0]),
        "probability": f"{probabilities[0].max():.6f}",
        "label": str(y[0]),
    }
    saved = json.loads((tmp_path / "p.metrics.json").read_text())
    assert saved["accuracy"] == result.metrics["accuracy"]
    assert saved["confusion"] == result.metrics["confusion"]


def write_pngs(root, x, y, labelled=True):
    pixels = np.round(x * 255).astype(np.uint8)
    for i, (image, label) in enumerate(zip(pixels, y)):
        folder = root / str(label) if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"img{i:03d}.png")
    return pixels.astype(np.float32) / 255.0


def test_an_image_folder_and_a_run_directory_predict_the_same(layers, tmp_path, capsys):
    run, model = layers
    x, y = digits_012()
    x, y = x[:60], y[:60]
    seen = write_pngs(tmp_path / "new", x, y)
    (tmp_path / "data.yaml").write_text(json.dumps({"data": {"path": str(tmp_path / "new")}}))
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    assert (
        main(["predict", str(model), str(tmp_path / "data.yaml"), "--out", str(tmp_path / "a.csv")])
        == 0
    )
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "confusion" in printed
    # the run directory: its best exported on the fly, retrained exactly as `export`
    assert (
        main(["predict", str(run), str(tmp_path / "data.yaml"), "--out", str(tmp_path / "b.csv")])
        == 0
    )
    assert "exported on the fly for this prediction only" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    a, b = ((tmp_path / f"{n}.csv").read_text() for n in "ab")
    assert a == b
    rows = list(csv.DictReader(a.splitlines()))
    order = np.argsort([f"{label}/img{i:03d}.png" for i, label in enumerate(y)], kind="stable")
    predicted = direct(model, seen[:, None]).argmax(axis=1)
    assert [r["item"] for r in rows] == [f"{y[i]}/img{i:03d}.png" for i in order]
    assert [r["predicted"] for r in rows] == [str(predicted[i]) for i in order]


def test_loose_images_are_predicted_without_labels(layers, tmp_path):
    _, model = layers
    x, y = digits_012()
    write_pngs(tmp_path / "loose", x[:5], y[:5], labelled=False)
    result = predict(model, {"source": "imagefolder", "path": str(tmp_path / "loose")})
    assert result.metrics is None and len(result.rows) == 5
    assert {r["label"] for r in result.rows} == {None}
    assert any("no class sub-folders" in note for note in result.notes)


def test_hparams_and_pretrain_checkpoints_record_their_pipeline_and_predict(tmp_path):
    x, y = digits_012()
    np.savez(tmp_path / "new.npz", x=x[:30], y=y[:30])
    raw = json.loads(json.dumps(LAYERS))
    raw["task"] = {"name": "hparams", "genes": {"kept": [1, None], "lr": [1e-3, 1e-2]}}
    _, model = run_and_export(tmp_path, raw, "hparams")
    pretrain = {key: LAYERS[key] for key in ("data", "model")}
    pretrain["pretrain"] = {"epochs": 1, "out": str(tmp_path / "pre.safetensors")}
    (tmp_path / "pre.yaml").write_text(json.dumps(pretrain))
    assert main(["pretrain", str(tmp_path / "pre.yaml")]) == 0
    for path in (model, tmp_path / "pre.safetensors"):
        assert load_exported(path).pipeline["classes"] == ["0", "1", "2"]
        result = predict(path, {"source": "npz", "path": str(tmp_path / "new.npz")})
        predicted = direct(path, x[:30, None]).argmax(axis=1)
        assert [r["predicted"] for r in result.rows] == [str(p) for p in predicted]


# ---- audio: the same spectrogram pipeline as the run's --------------------------------


def write_wavs(root, speakers=("ann", "bob", "cid", "dan"), indices=range(4)):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(0.25 * 8000)) / 8000
    for label, frequency in TONES.items():
        for k, speaker in enumerate(speakers):
            for i in indices:
                # each speaker a little off pitch: held-out speakers are harder
                wave = 0.5 * np.sin(2 * np.pi * frequency * (1 + 0.05 * k) * t)
                wave += 0.05 * rng.standard_normal(len(t))
                soundfile.write(root / f"{label}_{speaker}_{i}.wav", wave.astype(np.float32), 8000)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    write_wavs(folder / "recordings")
    raw = json.loads(json.dumps(LAYERS))
    raw["data"] = {
        "source": "audio",
        "path": str(folder / "recordings"),
        "label": {"pattern": "{label}_{speaker}_{index}.wav"},
        "audio": AUDIO,
        "split": {"val_fraction": 0.3, "test_where": {"speaker": ["dan"]}, "group_by": "speaker"},
    }
    run, model = run_and_export(folder, raw, "run")
    return folder, run, model


def test_audio_predictions_equal_the_model_on_the_runs_own_preprocessing(audio, tmp_path):
    folder, run, model = audio
    pipeline = load_exported(model).pipeline
    assert pipeline["kind"] == "audio" and pipeline["input_shape"] == [1, 16, 19]
    assert pipeline["audio"] == {**AUDIO, "trim_db": 60.0, "pad": "zeros", "scale": "unit"}
    assert pipeline["label"] == {"from": "pattern", "pattern": "{label}_{speaker}_{index}.wav"}
    new = tmp_path / "dan"
    new.mkdir()
    for path in sorted((folder / "recordings").glob("*_dan_*.wav")):
        shutil.copy(path, new / path.name)
    result = predict(model, {"data": {"path": str(new)}})  # labels from the recorded pattern
    test = load_data(load_config(run / "config.yaml").data).test  # the run's own test split
    probabilities = direct(model, test.x.numpy())
    assert [r["item"] for r in result.rows] == sorted(p.name for p in new.iterdir())
    assert [r["label"] for r in result.rows] == [str(v) for v in test.y.tolist()]
    assert [r["predicted"] for r in result.rows] == [str(p) for p in probabilities.argmax(1)]
    assert [r["probability"] for r in result.rows] == pytest.approx(probabilities.max(axis=1))
    assert_metrics(result.metrics, test.y.numpy(), probabilities.argmax(1), ["0", "1", "2"])
    tested = json.loads(model.with_suffix(".json").read_text())["metrics"]["test_accuracy"]
    assert result.metrics["accuracy"] == pytest.approx(tested)


def test_audio_files_named_otherwise_are_predicted_without_labels(audio, tmp_path):
    folder, _, model = audio
    (tmp_path / "clips").mkdir()
    shutil.copy(folder / "recordings" / "2_dan_0.wav", tmp_path / "clips" / "hello.wav")
    result = predict(model, {"path": str(tmp_path / "clips")})
    assert result.metrics is None and [r["item"] for r in result.rows] == ["hello.wav"]
    assert "no labels" in result.notes[0]


# ---- prune and weights exports --------------------------------------------------------


def bright_npz(path, n=90, classes=3, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.random((n, 8, 8)).astype(np.float32) * 0.5 + 0.4 * y[:, None, None] + shift
    np.savez(path, x=x, y=y)
    return x.astype(np.float32), y  # the npz source reads float32


def test_a_pruned_export_loads_and_predicts(tmp_path):
    x, y = bright_npz(tmp_path / "in.npz")
    bright_npz(tmp_path / "ood.npz", seed=1, shift=0.2)
    raw = {
        "task": {
            "name": "prune",
            "ood": [{"source": "npz", "path": str(tmp_path / "ood.npz")}],
            "analysis": False,
            "input_range": [0, 1],
        },
        "data": {
            "source": "npz",
            "path": str(tmp_path / "in.npz"),
            "split": {"val_fraction": 0.25, "test_fraction": 0.25},
        },
        "model": {"backbone": "builtin:small_cnn", "channels": "keep", "normalize": "none"},
        "search": {"preset": "seed", "population": 4, "max_evaluations": 8},
        "fitness": {"hidden": 16, "epochs": 4, "lr": 0.5, "batch_size": 8, "device": "cpu"},
        "output": {"report": False},
    }
    _, model = run_and_export(tmp_path, raw, "prune", "--pick", "accuracy")
    pipeline = load_exported(model).pipeline
    assert set(pipeline["input_map"]) == {"subtract", "multiply", "add"}
    result = predict(model, {"path": str(tmp_path / "in.npz")})
    m = pipeline["input_map"]
    mapped = (x - np.float32(m["subtract"])) * np.float32(m["multiply"]) + np.float32(m["add"])
    predicted = direct(model, mapped[:, None]).argmax(axis=1)
    assert [r["predicted"] for r in result.rows] == [str(p) for p in predicted]
    assert_metrics(result.metrics, y, predicted, ["0", "1", "2"])


@pytest.mark.parametrize("kind", ["autoencoder", "module"])
def test_a_weights_export_is_one_file_that_loads_and_predicts(kind, tmp_path):
    x, y = bright_npz(tmp_path / "bars.npz", n=120)
    raw = {
        "task": {"name": "weights", "sizes": [64, 24, 8], "mode": "ga_assisted"},
        "data": {"source": "npz", "path": str(tmp_path / "bars.npz")},
        "search": {"preset": "seed", "generations": 2},
        "fitness": {"examples": 64, "steps_per_generation": 5, "epochs": 1},
        "output": {"report": False},
    }
    raw["data"]["split"] = {"test_fraction": 0.25}
    if kind == "module":
        raw["model"] = {"kind": "module", "hidden": [16]}
    run, model = run_and_export(tmp_path, raw, "weights")
    assert not (tmp_path / "weights.svm.npz").exists()  # the SVM is inside the file
    result = predict(model, {"path": str(tmp_path / "bars.npz")})
    spec, tensors = read_model(run / MODEL_FILE)
    inputs = torch.from_numpy(x[:, None])
    if kind == "autoencoder":
        stack = TiedStack([tensors["layer1"], tensors["layer2"]], spec["output"])
        with np.load(run / SVM_FILE) as arrays:
            svm = {name: arrays[name] for name in arrays.files}
        predicted = svm_predict(svm, stack.encode(inputs.flatten(1)).numpy())
    else:
        predicted = direct(model, x[:, None]).argmax(axis=1)
    assert [r["predicted"] for r in result.rows] == [str(p) for p in predicted]
    assert_metrics(result.metrics, y, predicted, ["0", "1", "2"])


def test_the_example_data_sections_validate():
    folder = Path(__file__).parents[1] / "examples" / "predict"
    for path in sorted(folder.glob("*.yaml")):
        assert read_data(path, []).path


# ---- bad input: exit 2, one message --------------------------------------------------


def refused(capsys, *args):
    assert main(["predict", *map(str, args)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_exits_2_naming_what_differs(layers, audio, tmp_path, capsys):
    _, model = layers
    x, y = digits_012()
    cases = {
        "classes.npz": (x, np.where(y == 2, 7, y)),  # a class the model does not know
        "rgb.npz": (np.repeat(x[:, None], 3, axis=1), y),
        "big.npz": (np.zeros((4, 16, 16), np.float32), y[:4]),
    }
    for name, (images, labels) in cases.items():
        np.savez(tmp_path / name, x=images, y=labels)
    data = tmp_path / "data.yaml"

    def with_data(**section):
        data.write_text(json.dumps(section))
        return data

    out = ["--out", tmp_path / "p.csv"]
    err = refused(capsys, model, with_data(path=str(tmp_path / "classes.npz")), *out)
    assert "class '7' not among the model's classes (0, 1, 2)" in err
    err = refused(capsys, model, with_data(path=str(tmp_path / "rgb.npz")), *out)
    assert "(3, 8, 8), the model takes (1, 8, 8): the channels differ" in err
    err = refused(capsys, model, with_data(path=str(tmp_path / "big.npz")), *out)
    assert "the height x width differ" in err
    err = refused(capsys, model, with_data(path="x", split={"test_fraction": 0.5}), *out)
    assert "data.split: predict applies the model to every example" in err
    err = refused(capsys, model, with_data(path="nowhere"), *out)
    assert "data.path: 'nowhere' does not exist" in err
    np.save(tmp_path / "x.npy", x)
    err = refused(capsys, model, with_data(path=str(tmp_path / "x.npy"), source="npz"), *out)
    assert "x.npy: not a readable .npz file" in err
    err = refused(capsys, model, with_data(path=str(tmp_path), source="audio"), *out)
    assert "the model takes images" in err

    _, _, audio_model = audio
    err = refused(capsys, audio_model, with_data(path=str(tmp_path)), "--set", "audio.n_mels=32")
    assert "data.audio.n_mels: the model was trained on n_mels 16, got 32" in err

    (tmp_path / "notes.txt").write_text("not a model")
    err = refused(capsys, tmp_path / "notes.txt", data, *out)
    assert "notes.txt is not a model written by `evotune export`" in err
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    err = refused(capsys, tmp_path / "plain.safetensors", data, *out)
    assert "is a safetensors file but not a model written by `evotune export`" in err
    err = refused(capsys, tmp_path, data, *out)
    assert "is a folder but no run directory" in err

    np.savez(tmp_path / "ok.npz", x=x[:3], y=y[:3])
    (tmp_path / "p.csv").write_text("mine")
    err = refused(capsys, model, with_data(path=str(tmp_path / "ok.npz")), *out)
    assert "the file exists" in err and (tmp_path / "p.csv").read_text() == "mine"
