"""Grad-CAM (Selvaraju et al. 2017) and HiResCAM (Draelos & Carin 2020) for fusekit's Keras 3 models, on every
backend Keras runs on.

A model is cut at its last convolutional feature map A (H' x W' x K): ``body`` maps the image to A, ``head`` maps
A to the class logits (the float32 softmax layer left off, so that the score of a class is its logit, as in the
paper). With G = d logit_c / d A:

- ``gradcam``: ``relu(sum_k alpha_k A_k)``, ``alpha_k`` the spatial mean of G_k;
- ``hirescam`` (the default): ``relu(sum_k G_k * A_k)``, element-wise.

Each map is upsampled to the input and divided by its maximum (a map that is 0 everywhere stays 0).

The two are the same map for a head that pools globally and then is linear (resnet50, densenet121, densenet40: G is
then constant over the map, a test checks it), which is what the first paper's §4.6 shows. On a head that flattens
the map into dense layers (cnn1-cnn3, vgg48, tiny) the evidence is in position-specific weights that Grad-CAM's
average throws away: on the tests' band task (the class is a bright band's row) the tiny model is right on every
test face, and its Grad-CAM map is 0 everywhere for all of them, while the HiResCAM map puts more than twice the mean
heat inside the band than outside on every face (42 of 42). So HiResCAM is the default, and ``--method gradcam``
gives the original.

Only the gradient of ``head`` at A needs the backend, and ``head`` takes A as its input, so that gradient is an
ordinary input gradient on each backend (`_gradients`):

- TensorFlow: ``tf.GradientTape`` watching A;
- JAX: ``jax.grad`` of the summed class logits as a function of A (the Keras layers are traced with their
  weights as constants, training=False);
- PyTorch: A as a leaf tensor with ``requires_grad``, ``backward()`` on the summed class logits, ``A.grad``.

The three are tested against each other (tests/test_explain.py, each backend in a fresh process on one TensorFlow-
trained checkpoint of the tiny model, 14 test faces): with torch 2.13 (CPU) the maps equal TensorFlow's (largest
difference 0.0 in the normalised heat and the raw maps, 1.2e-7 in the probabilities), with JAX 0.10 they differ by at
most 1.8e-7. The torch path has run on the CPU only.

Where the cut is: the last layer (scanning back from the output) whose output is 4-D and that is not a pooling
layer (the last convolution's activations, as in the paper), or, in a model that wraps a
backbone (resnet50, densenet121 wrap `keras.applications`), the last 4-D layer inside that backbone. The layers after
the cut must form a chain (each takes the one before it), which holds for every model of `fusekit.train.models`;
`gradcam` checks on every batch that ``head(body(x))`` equals the model's own output and refuses the cut otherwise
(name another layer with ``layer=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from fusekit.errors import UserError


@dataclass
class Split:
    layer: str  # the feature map's layer ("resnet50/conv5_block3_out" inside a wrapped backbone)
    body: Callable  # image batch -> feature map
    head: Callable  # feature map -> logits (softmax left off)
    softmax: bool  # the model ends with a softmax that head leaves off


def _is_pool(layer) -> bool:
    import keras

    return isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D))


def _is_4d(layer) -> bool:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # a layer used more than once has no single output
        return False
    return len(shape) == 4


def _chain(layers) -> Callable:
    def apply(x):
        for layer in layers:
            x = layer(x, training=False) if _takes_training(layer) else layer(x)
        return x

    return apply


def _takes_training(layer) -> bool:
    import keras

    return isinstance(layer, (keras.layers.Dropout, keras.layers.BatchNormalization, keras.Model))


def _ends_with_softmax(model) -> bool:
    import keras

    last = model.layers[-1]
    return isinstance(last, keras.layers.Activation) and getattr(last.activation, "__name__", "") == "softmax"


def split(model, layer: str | None = None) -> Split:
    """Cut ``model`` at ``layer`` (a top-level layer name, or ``backbone/inner``), or at its last 4-D feature map."""
    import keras

    top = list(model.layers)
    softmax = _ends_with_softmax(model)
    tail_end = len(top) - 1 if softmax else len(top)
    wanted_outer, _, wanted_inner = (layer or "").partition("/")
    for i in range(tail_end - 1, 0, -1):
        candidate = top[i]
        if wanted_outer and candidate.name != wanted_outer:
            continue
        if isinstance(candidate, keras.Model) and (wanted_inner or not wanted_outer or not _is_4d(candidate)):
            inner = [l for l in candidate.layers if _is_4d(l) and (wanted_inner or not _is_pool(l))]
            if wanted_inner:
                inner = [l for l in inner if l.name == wanted_inner]
            if not inner:
                continue
            target = inner[-1]
            after = candidate.layers[candidate.layers.index(target) + 1:]
            inner_body = keras.Model(candidate.input, target.output)
            x = model.input
            for prior in top[1:i]:
                x = prior(x)
            body = keras.Model(model.input, inner_body(x))
            return Split(f"{candidate.name}/{target.name}", body, _chain([*after, *top[i + 1:tail_end]]), softmax)
        if _is_4d(candidate) and not wanted_inner and (wanted_outer or not _is_pool(candidate)):
            body = keras.Model(model.input, candidate.output)
            return Split(candidate.name, body, _chain(top[i + 1:tail_end]), softmax)
    if layer:
        names = ", ".join(l.name for l in top if _is_4d(l))
        raise UserError(f"model {model.name!r} has no 4-D layer {layer!r} to explain (4-D layers: {names})")
    raise UserError(f"model {model.name!r} has no convolutional feature map to explain")


def _gradients(head: Callable, features: np.ndarray, class_ids: np.ndarray,
               classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(d logit_c / d A, logits) for each row, on the backend Keras runs on."""
    import keras

    backend = keras.backend.backend()
    onehot = np.eye(classes, dtype=np.float32)[class_ids]
    if backend == "tensorflow":
        import tensorflow as tf

        a = tf.convert_to_tensor(features)
        with tf.GradientTape() as tape:
            tape.watch(a)
            logits = tf.cast(head(a), tf.float32)  # a mixed_bfloat16 model's head computes in bfloat16
            score = tf.reduce_sum(logits * onehot)
        return tf.cast(tape.gradient(score, a), tf.float32).numpy(), logits.numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def score(a):
            logits = head(a).astype(jnp.float32)
            return jnp.sum(logits * onehot), logits

        grads, logits = jax.grad(score, has_aux=True)(jnp.asarray(features))
        return np.asarray(grads, np.float32), np.asarray(logits)
    if backend == "torch":
        import torch

        a = torch.tensor(features, requires_grad=True)  # a leaf on the CPU; the layers move it where they run
        logits = head(a).float()  # numpy has no bfloat16: a mixed_bfloat16 model's head computes in it
        (logits * torch.as_tensor(onehot, device=logits.device)).sum().backward()
        return a.grad.detach().float().cpu().numpy(), logits.detach().cpu().numpy()
    raise UserError(f"Grad-CAM needs gradients: backend {backend!r} is not supported (tensorflow, jax, torch)")


@dataclass
class Maps:
    heat: np.ndarray  # N x S x S float32 in [0, 1]: each row's map upsampled to the input
    raw: np.ndarray  # N x H' x W' the maps at the feature map's resolution (before normalising)
    probabilities: np.ndarray  # N x classes, the model's softmax
    layer: str
    backend: str
    method: str


METHODS = ("hirescam", "gradcam")


def gradcam(model, images: np.ndarray, class_ids: Sequence[int], layer: str | None = None,
            batch_size: int = 64, method: str = "hirescam") -> Maps:
    """Class activation maps of ``images`` (N x S x S x C floats in [0, 1], the model's input) for ``class_ids``."""
    import keras

    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    images = np.asarray(images, np.float32)
    ids = np.asarray(class_ids, np.int64)
    cut = split(model, layer)
    heats, raws, probs = [], [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        features = np.asarray(keras.ops.convert_to_numpy(cut.body(x, training=False)), np.float32)
        grads, logits = _gradients(cut.head, features, ids[start:start + batch_size], int(model.output.shape[-1]))
        own = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), np.float64)
        mine = _softmax(logits) if cut.softmax else np.asarray(logits, np.float64)
        if not np.allclose(own, mine, atol=1e-4):
            raise UserError(f"cannot cut model {model.name!r} at {cut.layer}: the layers after it are not a chain "
                            f"(name another layer with --layer)")
        if method == "gradcam":
            cam = np.einsum("nhwk,nk->nhw", features, grads.mean(axis=(1, 2)))
        else:
            cam = (features * grads).sum(axis=-1)
        cam = np.maximum(cam, 0.0)
        raws.append(cam)
        heats.append(_upsample(cam, x.shape[1]))
        probs.append(own)
    return Maps(np.concatenate(heats), np.concatenate(raws), np.concatenate(probs), cut.layer,
                keras.backend.backend(), method)


def _softmax(logits) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _upsample(cam: np.ndarray, side: int) -> np.ndarray:
    """Each map to side x side (bilinear, PIL's float mode), divided by its maximum."""
    from PIL import Image

    out = np.zeros((len(cam), side, side), np.float32)
    for i, m in enumerate(cam):
        big = np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((side, side), Image.BILINEAR))
        top = float(big.max())
        out[i] = np.clip(big / top, 0.0, 1.0) if top > 0 else 0.0
    return out
