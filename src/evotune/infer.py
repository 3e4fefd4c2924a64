"""`evotune infer RUN_DIR IMAGE`: one image through a `weights` run's trained model.

The image (PNG, JPEG, BMP; any size) is read as the training data was: converted to
the data's channels, resized to its height x width, values / 255 (the seed's inference
forgot that scaling). An autoencoder run predicts the class with its SVM and saves the
input beside its reconstruction as a PNG; a module run prints the class probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from evotune.data.imagefolder import to_array
from evotune.errors import UserError
from evotune.tasks.weights_base import MODEL_FILE, SVM_FILE, WeightsModel, read_model
from evotune.tasks.weights_module import build_module
from evotune.train.autoencoder import TiedStack
from evotune.train.svm import svm_predict, svm_votes

SCALE = 8  # pixels per input pixel in the comparison image


def infer(run_dir: Path, image: Path, out: Path | None = None, invert: bool = False) -> dict:
    """Predict the class of `image`; returns class, label and (autoencoder) the PNG path."""
    spec, tensors = read_model(Path(run_dir) / MODEL_FILE)
    x = load_image(Path(image), spec["input_shape"], invert)
    if spec["kind"] == "module":
        return _infer_module(spec, tensors, x)
    stack = TiedStack([tensors[f"layer{i + 1}"] for i in range(len(tensors))], spec["output"])
    with torch.no_grad():
        codes = stack.encode(x.flatten(1))
        recon = stack.decode(codes).view(x.shape)
    label = int(svm_predict(_read_svm(Path(run_dir) / SVM_FILE), codes.numpy())[0])
    out = Path(out) if out else Path(run_dir) / "infer" / f"{Path(image).stem}-reconstruction.png"
    save_comparison(x[0].numpy(), recon[0].numpy(), out)
    rmse = float(torch.sqrt((recon - x).pow(2).mean()))
    return {"class": spec["classes"][label], "label": label, "rmse": rmse, "image": str(out)}


def load_image(path: Path, input_shape: list[int], invert: bool = False) -> torch.Tensor:
    """(1, C, H, W) float32 in [0, 1], as the training data was scaled."""
    channels, height, width = input_shape
    try:
        with Image.open(path) as image:
            array = to_array(image, "rgb" if channels == 3 else "gray", (height, width))
    except FileNotFoundError:
        raise UserError(f"image {path} not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: not a readable image ({err})") from None
    if invert:  # dark strokes on a light page -> MNIST's light strokes on black
        array = 1.0 - array
    return torch.from_numpy(np.ascontiguousarray(array))[None]


def _read_svm(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UserError(f"{path} not found: the run did not finish")
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _infer_module(spec: dict[str, Any], tensors: dict[str, torch.Tensor], x: torch.Tensor):
    classes = spec["classes"]
    module = build_module(WeightsModel(**spec["module"]), tuple(spec["input_shape"]), len(classes))
    module.load_state_dict(tensors)
    with torch.no_grad():
        probabilities = torch.softmax(module.eval()(x), dim=1)[0]
    label = int(probabilities.argmax())
    return {
        "class": classes[label],
        "label": label,
        "probabilities": {c: round(float(p), 4) for c, p in zip(classes, probabilities)},
    }


def save_comparison(image: np.ndarray, recon: np.ndarray, out: Path) -> None:
    """Input (left) and reconstruction (right), each (C, H, W) in [0, 1], upscaled."""
    panels = [_to_pil(a) for a in (image, recon)]
    width, height = panels[0].width * SCALE, panels[0].height * SCALE
    gray = 128 if panels[0].mode == "L" else (128, 128, 128)  # the gap between the two
    canvas = Image.new(panels[0].mode, (2 * width + SCALE, height), color=gray)
    for i, panel in enumerate(panels):
        big = panel.resize((width, height), Image.Resampling.NEAREST)
        canvas.paste(big, (i * (width + SCALE), 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)


def _to_pil(array: np.ndarray) -> Image.Image:
    pixels = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    if pixels.shape[0] == 1:
        return Image.fromarray(pixels[0])  # uint8 2-D: mode L
    return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))  # RGB


# ---- an exported `weights` model as one nn.Module (evotune predict) -----------------


class AutoencoderClassifier(nn.Module):
    """A `weights` autoencoder and its SVM as one module. forward(x) gives, per class,
    the share of the SVM's one-vs-one votes the class won (the SVM has no
    probabilities): its argmax is the SVM's prediction, ties to the lower class."""

    returns_probabilities = True  # forward's rows are already shares that sum to 1

    def __init__(
        self, layers: list[torch.Tensor], output: str, svm: dict[str, np.ndarray], n_classes: int
    ) -> None:
        super().__init__()
        for i, weight in enumerate(layers):
            self.register_buffer(f"layer{i + 1}", weight)
        self.depth, self.output, self.svm, self.n_classes = len(layers), output, svm, n_classes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        weights = [getattr(self, f"layer{i + 1}") for i in range(self.depth)]
        return TiedStack(weights, self.output).encode(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        votes = svm_votes(self.svm, self.encode(x).detach().cpu().numpy())
        shares = np.zeros((len(votes), self.n_classes), dtype=np.float32)
        k = len(self.svm["classes"])
        shares[:, self.svm["classes"]] = votes / max(1, k * (k - 1) // 2)
        return torch.from_numpy(shares).to(x.device)


def load_weights_model(spec: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The module an exported `weights` file holds (spec and tensors: `read_model`)."""
    classes = spec["classes"]
    if spec["kind"] == "module":
        module = build_module(
            WeightsModel(**spec["module"]), tuple(spec["input_shape"]), len(classes)
        )
        module.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("svm.")})
        return module.eval()
    svm = {k.removeprefix("svm."): v.numpy() for k, v in tensors.items() if k.startswith("svm.")}
    if not svm:
        raise UserError("the exported autoencoder has no SVM (its run did not finish)")
    layers = [tensors[f"layer{i + 1}"] for i in range(len(spec["sizes"]) - 1)]
    return AutoencoderClassifier(layers, spec["output"], svm, len(classes)).eval()
