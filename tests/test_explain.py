"""`fusekit explain`: class activation maps of a trained run (issue 17 item 6).

The run is the tiny model trained on test_train's band task (class k = a bright band in the k-th seventh of the
picture's rows), so where the evidence lies is known: the map of each face must put its heat on its band.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import call_cli
from PIL import Image
from test_train import CLASSES, _train, write_shards

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    data = write_shards(root / "dataset", per_class=24, size=32)
    report = _train(root / "ws", data, run="learn")
    assert report.best_val_accuracy > 0.6
    return root


def band_share(heat: np.ndarray, label: int) -> float:
    """The share of a map's heat inside the rows of band ``label`` (rows [k S/7, (k+1) S/7), rounded outwards)."""
    side = heat.shape[0]
    lo, hi = label * side // 7, -(-(label + 1) * side // 7)
    return float(heat[lo:hi].sum() / heat.sum())


def test_maps_put_the_heat_on_the_band_that_carries_the_label(trained, capsys):
    code, out, err = call_cli(capsys, "explain", "--run", "learn", "--per-class", "3", workspace=trained / "ws")
    assert code == 0, err
    folder = trained / "ws" / "runs" / "learn" / "explain"
    assert f"written to {folder}" in out and "HiResCAM on conv2d_2" in out
    stored = np.load(folder / "heatmaps.npz")
    heat, labels = stored["heat"].astype(np.float32), stored["labels"]
    assert heat.shape == (21, 24, 24)  # 3 test faces x 7 classes, at the model's input size
    assert labels.tolist() == [k for k in range(7) for _ in range(3)]
    assert heat.min() >= 0 and np.allclose(heat.max(axis=(1, 2)), 1.0, atol=1e-3)  # each map normalised to 1
    assert (heat.std(axis=(1, 2)) > 0.08).all()  # not constant
    # the band is 1/7 of the rows (4 of 24 here, 17 %); each map puts most of its heat there
    shares = [band_share(h, k) for h, k in zip(heat, labels)]
    assert min(shares) > 0.5, shares
    info = json.loads((folder / "explain.json").read_text())
    assert info["method"] == "hirescam" and info["layer"] == "conv2d_2" and info["split"] == "test"
    assert [c["class"] for c in info["classes"]] == CLASSES
    for entry in info["classes"]:
        with Image.open(folder / entry["file"]) as grid:
            assert grid.size == (3 * 98, 194)  # three faces, each above its map
        k = CLASSES.index(entry["class"])
        for face in entry["faces"]:  # the peak is inside the band
            assert k * 24 // 7 <= face["peak"][0] < -(-(k + 1) * 24 // 7), face


def test_grad_cam_averages_the_gradients_away_on_a_flattening_head(trained):
    """The reason HiResCAM is the default: on the tiny model (conv -> flatten -> dense) Grad-CAM's spatially
    averaged gradients leave no heat at all on the band task, HiResCAM's element-wise product does."""
    from fusekit.explain.gradcam import gradcam
    from fusekit.train.data import open_shards, read_columns
    from fusekit.train.decode import decode
    from fusekit.train.models import load_model

    model = load_model(trained / "ws" / "runs" / "learn" / "best.keras", compile=False)
    meta = read_columns(open_shards(trained / "dataset").files["test"], ["label", "image"])
    x = np.stack([decode(r["bytes"], 24, 1) for r in meta["image"][:14]]).astype(np.float32) / 255
    hires = gradcam(model, x, meta["label"][:14])
    grad = gradcam(model, x, meta["label"][:14], method="gradcam")
    assert hires.layer == grad.layer == "conv2d_2"
    assert (hires.heat.max(axis=(1, 2)) > 0.99).all()
    assert grad.heat.max() < hires.heat.max()  # Grad-CAM: (almost) nothing
    assert np.allclose(hires.probabilities, model.predict_on_batch(x), atol=1e-5)


def test_on_a_globally_pooled_backbone_grad_cam_and_hirescam_agree():
    """resnet50 wraps keras.applications' model: the cut is inside it (its last block's output), and after global
    average pooling the gradient is constant over the map, so both methods give the same map."""
    from fusekit.explain.gradcam import gradcam
    from fusekit.train.models import build_model

    model = build_model("resnet50", num_classes=3, input_size=64, channels=3)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
    hires = gradcam(model, x, [0, 2])
    grad = gradcam(model, x, [0, 2], method="gradcam")
    assert hires.layer == "resnet50/conv5_block3_out" and hires.raw.shape == (2, 2, 2)
    assert np.allclose(hires.raw, grad.raw, rtol=1e-3, atol=1e-6 * float(np.abs(grad.raw).max() + 1e-12))
    assert hires.heat.shape == (2, 64, 64)


CAM_ON_BACKEND = (
    "import sys, numpy as np\n"
    "from fusekit.explain.gradcam import gradcam\n"
    "from fusekit.train.data import open_shards, read_columns\n"
    "from fusekit.train.decode import decode\n"
    "from fusekit.train.models import load_model\n"
    "model = load_model(sys.argv[1], compile=False)\n"
    "meta = read_columns(open_shards(sys.argv[2]).files['test'], ['label', 'image'])\n"
    "x = np.stack([decode(r['bytes'], 24, 1) for r in meta['image'][:14]]).astype(np.float32) / 255\n"
    "maps = gradcam(model, x, meta['label'][:14])\n"
    "np.savez(sys.argv[3], heat=maps.heat, raw=maps.raw, probabilities=maps.probabilities)\n"
    "print(maps.backend)\n")


def _maps_on(backend: str, trained, folder) -> dict[str, np.ndarray]:
    """The checkpoint's maps of 14 test faces, computed in a fresh process with Keras on ``backend``."""
    script = folder / "cam_on_backend.py"
    script.write_text(CAM_ON_BACKEND)
    out = folder / f"{backend}.npz"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(script), str(trained / "ws" / "runs" / "learn" / "best.keras"),
                           str(trained / "dataset"), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == backend
    with np.load(out) as stored:
        return dict(stored)


@pytest.fixture(scope="module")
def tensorflow_maps(trained, tmp_path_factory):
    return _maps_on("tensorflow", trained, tmp_path_factory.mktemp("tf-maps"))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_give_the_maps_tensorflow_gives(backend, trained, tensorflow_maps, tmp_path):
    """The same checkpoint explained on JAX and on PyTorch (each in a fresh process) gives TensorFlow's maps: the
    normalised heat, the raw maps (relative to their scale) and the probabilities."""
    pytest.importorskip(backend)
    maps = _maps_on(backend, trained, tmp_path)
    theirs = tensorflow_maps
    assert maps["heat"].shape == (14, 24, 24) and maps["heat"].std() > 0.05
    assert np.abs(maps["heat"] - theirs["heat"]).max() < 1e-4
    assert np.abs(maps["raw"] - theirs["raw"]).max() < 1e-4 * np.abs(theirs["raw"]).max()
    assert np.abs(maps["probabilities"] - theirs["probabilities"]).max() < 1e-5


def test_user_mistakes_exit_2_with_one_line(trained, capsys):
    ws = trained / "ws"
    for argv, says in ((["explain", "--run", "nope"], "no run 'nope'"),
                       (["explain", "--run", "learn", "--method", "lrp"], "--method must be one of"),
                       (["explain", "--run", "learn", "--per-class", "0"], "--per-class must be at least 1"),
                       (["explain", "--run", "learn", "--layer", "dense_9"], "has no 4-D layer 'dense_9'"),
                       (["explain", "--run", "learn", "--split", "holdout"], "no rows in 'holdout'")):
        code, out, err = call_cli(capsys, *argv, workspace=ws)
        assert code == 2, (argv, out, err)
        assert says in err and len(err.strip().splitlines()) == 1, err
