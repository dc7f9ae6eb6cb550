"""The models `fusekit train --model` builds, all Keras 3 (`keras.layers` only, so every backend builds them).

- ``resnet50``, ``densenet121``: `keras.applications` with ``weights=None`` (nothing is downloaded); ``--weights FILE``
  loads a local backbone weights file (e.g. the ImageNet "notop" .h5). The classifier head is the applications' own
  (global average pool + dense softmax), added here so that the softmax runs in float32 under mixed precision.
- ``densenet40``: Huang et al.'s DenseNet for CIFAR (L = 40, k = 12): a 3x3 stem of 16 filters, three dense blocks of
  12 BN-ReLU-Conv3x3 layers, transitions BN-ReLU-Conv1x1 (no compression) + 2x2 average pool, no bottleneck,
  BN-ReLU-global pool-softmax: about 1.0 M parameters, the first paper's "DenseNet(40)".
- ``cnn1``, ``cnn2``: the second paper's Model 1 and Model 2, layer for layer from its tables (20,007,687 and 1,485,831
  parameters at 48x48x1 with 7 classes). ``cnn3``: its Model 3, from the prose only (see `_cnn3`).
- ``vgg48``: the VGG variant of Khaireddin & Chen 2021 (73.28 % on FER-2013) at 48 px with a narrower head
  (10,466,375 parameters at 48x48x1, 7 classes; see `_vgg48`): the model of ``--preset fer-strong``.

Inputs are float images in [0, 1], NHWC. Weight decay (``l2``) is a kernel regulariser on every conv and dense kernel,
kept in the layer configs so that a checkpoint reloads with it.

The second paper leaves the input scaling and the initialisation open. Its Model 2 as Keras builds it by default
(inputs in [0, 1], Glorot-uniform kernels) sits on the loss of a constant guess for the first epochs on real
FER-2013 with Adam 1e-3 (issue 14: 1.812 after 300 steps of 64, test accuracy 0.244, the share of `happy`). Measured
side by side on 12,000 real FER-2013 training faces, 300 steps (docs/reproduce-fer2013-cnn.md): He-normal kernels
for the ReLU layers 1.737, inputs centred 1.688, both 1.633, He-normal with each picture standardised to zero mean
and unit variance **1.610** (test accuracy 0.414). So the cnn models standardise each picture (``Standardize``, no
parameters: the tables' counts stand) and draw their ReLU kernels from He-normal.
"""

from __future__ import annotations

import keras
from keras import layers

from fusekit.train.config import MODELS

# ImageNet statistics, used as a fixed normalisation in front of the applications models (their ImageNet weights
# were trained on normalised inputs; with weights=None it only centres the data).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


RELU_INIT = "he_normal"  # the ReLU layers' kernels (see the module docstring)


@keras.saving.register_keras_serializable(package="fusekit")
class Standardize(layers.Layer):
    """Each picture to zero mean and unit variance over its pixels (contrast and brightness drop out); no weights."""

    def call(self, inputs):
        mean = keras.ops.mean(inputs, axis=(1, 2, 3), keepdims=True)
        std = keras.ops.std(inputs, axis=(1, 2, 3), keepdims=True)
        return (inputs - mean) / keras.ops.maximum(std, 1.0 / 255.0)


def load_model(path, compile: bool = True) -> keras.Model:
    """``keras.saving.load_model`` with fusekit's own layers registered (importing this module registers them: a
    run's .keras file names ``fusekit>Standardize``, which Keras finds only once this module is loaded)."""
    return keras.saving.load_model(path, compile=compile)


def build_model(name: str, num_classes: int = 7, input_size: int | None = None, channels: int | None = None,
                l2: float = 0.0, weights: str | None = None) -> keras.Model:
    """Build model ``name`` for ``num_classes`` classes on ``input_size`` x ``input_size`` x ``channels`` input."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    spec = MODELS[name]
    size = input_size or spec.input_size
    chans = channels or spec.channels
    reg = keras.regularizers.L2(l2) if l2 else None
    if weights and name not in ("resnet50", "densenet121"):
        raise ValueError("--weights loads keras.applications backbone weights: only for resnet50 and densenet121")
    if name in ("resnet50", "densenet121"):
        model = _application(name, size, chans, num_classes, reg, weights)
    else:
        builder = {"densenet40": _densenet40, "cnn1": _cnn1, "cnn2": _cnn2, "cnn3": _cnn3, "vgg48": _vgg48,
                   "tiny": _tiny}[name]
        model = builder(keras.Input((size, size, chans), name="image"), num_classes, reg)
    return model


def _softmax_head(x, num_classes: int, reg, name: str = "predictions"):
    logits = layers.Dense(num_classes, kernel_regularizer=reg, name=f"{name}_dense")(x)
    # float32 softmax: stable under mixed precision
    return layers.Activation("softmax", dtype="float32", name=name)(logits)


def _application(name: str, size: int, chans: int, num_classes: int, reg, weights: str | None) -> keras.Model:
    inputs = keras.Input((size, size, chans), name="image")
    x = inputs
    if chans == 3:
        x = layers.Normalization(mean=_IMAGENET_MEAN, variance=[s * s for s in _IMAGENET_STD], name="imagenet_norm")(x)
    else:
        x = layers.Normalization(mean=0.449, variance=0.226 ** 2, name="imagenet_norm")(x)
    app = {"resnet50": keras.applications.ResNet50, "densenet121": keras.applications.DenseNet121}[name]
    base = app(include_top=False, weights=weights, input_shape=(size, size, chans), pooling="avg")
    if reg is not None:
        _add_kernel_regularizer(base, reg)
    x = base(x)
    return keras.Model(inputs, _softmax_head(x, num_classes, reg), name=name)


def _add_kernel_regularizer(model: keras.Model, reg) -> None:
    """Attach ``reg`` to every built conv/dense kernel, and to the layer config so that reloads keep it."""
    for layer in model._flatten_layers(include_self=False):  # noqa: SLF001 - every nested layer, Keras 3 API
        if isinstance(layer, (layers.Conv2D, layers.Dense)) and getattr(layer, "kernel", None) is not None:
            layer.kernel_regularizer = reg
            layer.kernel.regularizer = reg


def _conv_bn_relu(x, filters: int, reg, name: str):
    x = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"{name}_conv")(x)


def _densenet40(inputs, num_classes: int, reg, depth: int = 40, growth: int = 12) -> keras.Model:
    """Huang et al. 2017, Table/Sec. 4 "DenseNet (L=40, k=12)": basic layers (no 1x1 bottleneck), no compression.

    (L - 4) / 3 = 12 layers per block; the stem has 16 filters; no dropout (the paper drops out only when training
    without augmentation). On 112 px input the feature maps are 112/56/28 px, so it costs far more per image than on
    CIFAR's 32 px.
    """
    per_block = (depth - 4) // 3
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, kernel_regularizer=reg, name="stem_conv")(inputs)
    for block in range(3):
        for i in range(per_block):
            y = _conv_bn_relu(x, growth, reg, f"block{block + 1}_{i + 1}")
            x = layers.Concatenate(name=f"block{block + 1}_{i + 1}_concat")([x, y])
        if block < 2:
            channels = x.shape[-1]
            x = layers.BatchNormalization(epsilon=1.001e-5, name=f"transition{block + 1}_bn")(x)
            x = layers.Activation("relu", name=f"transition{block + 1}_relu")(x)
            x = layers.Conv2D(channels, 1, use_bias=False, kernel_regularizer=reg, name=f"transition{block + 1}_conv")(x)
            x = layers.AveragePooling2D(2, name=f"transition{block + 1}_pool")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name="final_bn")(x)
    x = layers.Activation("relu", name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, _softmax_head(x, num_classes, reg), name="densenet40")


def _dense_stack(x, num_classes: int, reg, dropout: float):
    """The tables' classifier: Dense 1024 - Dropout - Dense 1024 - Dropout - Dense classes (softmax)."""
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dense(1024, activation="relu", kernel_initializer=RELU_INIT, kernel_regularizer=reg,
                         name=f"dense_{i}")(x)
        x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return _softmax_head(x, num_classes, reg)


def _cnn1(inputs, num_classes: int, reg) -> keras.Model:
    """Model 1 (Table "Model1"): the shapes 48 -> 48 -> 24 -> 24 -> 12 mean "same" padding.

    conv 5x5x64 (1,664 params) is the only kernel size that gives 1,664 on one input channel; conv 3x3x128 gives
    73,856. The table does not give the dropout rate: 0.5 here (the common choice after wide dense layers).
    """
    relu = dict(activation="relu", kernel_initializer=RELU_INIT, kernel_regularizer=reg)
    x = layers.Conv2D(64, 5, padding="same", **relu, name="conv2d_1")(Standardize(name="standardize")(inputs))
    x = layers.MaxPooling2D(2, name="max_pooling2d_1")(x)
    x = layers.Conv2D(128, 3, padding="same", **relu, name="conv2d_2")(x)
    x = layers.MaxPooling2D(2, name="max_pooling2d_2")(x)
    return keras.Model(inputs, _dense_stack(x, num_classes, reg, 0.5), name="cnn1")


def _cnn2(inputs, num_classes: int, reg) -> keras.Model:
    """Model 2 (Table "Model 2"): "valid" convolutions (48 -> 44 -> 18 -> 16 -> 5 -> 3).

    The pools are implied by the shapes: 44 -> 20 is a 5x5 max pool with stride 2, 16 -> 7 and 3 -> 1 are 3x3 average
    pools with stride 2. Dropout 0.2 (not in the table; the value of the widely copied Keras FER-2013 model with
    exactly this layer list).
    """
    relu = dict(activation="relu", kernel_initializer=RELU_INIT, kernel_regularizer=reg)
    x = layers.Conv2D(64, 5, **relu, name="conv2d_1")(Standardize(name="standardize")(inputs))
    x = layers.MaxPooling2D(5, strides=2, name="max_pooling2d_1")(x)
    x = layers.Conv2D(64, 3, **relu, name="conv2d_2")(x)
    x = layers.Conv2D(64, 3, **relu, name="conv2d_3")(x)
    x = layers.AveragePooling2D(3, strides=2, name="average_pooling2d_1")(x)
    x = layers.Conv2D(128, 3, **relu, name="conv2d_4")(x)
    x = layers.Conv2D(128, 3, **relu, name="conv2d_5")(x)
    x = layers.AveragePooling2D(3, strides=2, name="average_pooling2d_2")(x)
    return keras.Model(inputs, _dense_stack(x, num_classes, reg, 0.2), name="cnn2")


CNN3_FILTERS = (64, 64, 128, 128, 256, 256)
CNN3_DENSE = (1024, 512, 256)


def _cnn3(inputs, num_classes: int, reg) -> keras.Model:
    """Model 3, from the prose alone ("6 Convolution layers, 4 Maxpooling layers, 4 Dense layers, 7 Dropouts after
    each Convolution layer and dense layer, 7 Batchnormalization after each Convolution layer ... RELU after each
    Convolution and Dense layer, and Softmax at the end"). The counts do not add up (6 conv + 3 hidden dense = 9
    places for 7 dropouts and 7 batch norms), so these choices are ours (docs/reproduce-fer2013-cnn.md):

    - 3x3 "same" convolutions of 64, 64, 128, 128, 256, 256 filters, each Conv-BN-ReLU-Dropout(0.25) (6 BN, 6 dropouts);
    - the 4 max pools (2x2) after convolutions 2, 4, 5 and 6: 48 -> 24 -> 12 -> 6 -> 3;
    - the 4 dense layers are 1024, 512, 256 (ReLU) and the softmax output; the first hidden dense layer has the 7th
      batch norm and the 7th dropout (0.5).
    """
    x = Standardize(name="standardize")(inputs)
    for i, filters in enumerate(CNN3_FILTERS, start=1):
        x = layers.Conv2D(filters, 3, padding="same", kernel_initializer=RELU_INIT, kernel_regularizer=reg,
                          name=f"conv2d_{i}")(x)
        x = layers.BatchNormalization(name=f"batch_normalization_{i}")(x)
        x = layers.Activation("relu", name=f"relu_{i}")(x)
        x = layers.Dropout(0.25, name=f"dropout_{i}")(x)
        if i in (2, 4, 5, 6):
            x = layers.MaxPooling2D(2, name=f"max_pooling2d_{(2, 4, 5, 6).index(i) + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(CNN3_DENSE[0], kernel_initializer=RELU_INIT, kernel_regularizer=reg, name="dense_1")(x)
    x = layers.BatchNormalization(name="batch_normalization_7")(x)
    x = layers.Activation("relu", name="relu_7")(x)
    x = layers.Dropout(0.5, name="dropout_7")(x)
    for i, units in enumerate(CNN3_DENSE[1:], start=2):
        x = layers.Dense(units, activation="relu", kernel_initializer=RELU_INIT, kernel_regularizer=reg,
                         name=f"dense_{i}")(x)
    return keras.Model(inputs, _softmax_head(x, num_classes, reg), name="cnn3")


VGG48_FILTERS = (64, 128, 256, 512)
VGG48_DENSE = 1024
VGG48_DROPOUT = 0.2
# PyTorch's default for Conv2d and Linear kernels (kaiming_uniform with a = sqrt(5): variance 1 / (3 fan_in)), the
# initialisation of the recipe's code (see `_vgg48`)
def torch_init():
    return keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")


def _vgg48(inputs, num_classes: int, reg) -> keras.Model:
    """Khaireddin & Chen 2021, "Facial Emotion Recognition: State of the Art Performance on FER2013" (their code,
    github.com/usef-kh/fer, models/vgg.py): 4 stages of two 3x3 convolutions (64, 128, 256, 512 filters), each
    Conv-BN-ReLU, a 2x2 max pool after each stage, then two hidden dense layers with dropout (0.2, their default)
    and the softmax layer.

    Theirs sees 40 px crops (40 -> 20 -> 10 -> 5 -> 2: 2,048 features into 4,096 - 4,096 - 7, about 30 M parameters).
    Here the input is the whole 48 px face (48 -> 24 -> 12 -> 6 -> 3: 4,608 features), and the hidden dense layers are
    1,024 wide, which keeps the model at 10,466,375 parameters (4096-wide layers would put 35 M in the head alone).
    The convolutions have no bias (the batch norm's beta is one); batch norm keeps PyTorch's running-average momentum
    (0.1, Keras momentum 0.9); the picture is standardised first, as in the cnn models. The kernels are drawn as
    PyTorch draws them (`torch_init`), not He-normal: on the 4,608 -> 1,024 -> 1,024 head He-normal gives first logits
    of std ~3.4, and on the tests' band task (fer-strong, batch 16) the first epoch's loss rose to 5.64 and the
    validation loss after 21 steps was 2.38, against 1.58 and 0.78 with PyTorch's initialisation.
    """
    x = Standardize(name="standardize")(inputs)
    for stage, filters in enumerate(VGG48_FILTERS, start=1):
        for part in "ab":
            name = f"conv{stage}{part}"
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=torch_init(),
                              kernel_regularizer=reg, name=name)(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
            x = layers.Activation("relu", name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dense(VGG48_DENSE, activation="relu", kernel_initializer=torch_init(), kernel_regularizer=reg,
                         name=f"dense_{i}")(x)
        x = layers.Dropout(VGG48_DROPOUT, name=f"dropout_{i}")(x)
    return keras.Model(inputs, _softmax_head(x, num_classes, reg), name="vgg48")


def _tiny(inputs, num_classes: int, reg) -> keras.Model:
    """A few thousand parameters: learns the synthetic tasks of the tests in seconds on a CPU."""
    x = layers.Conv2D(8, 3, padding="same", activation="relu", kernel_regularizer=reg, name="conv2d_1")(inputs)
    x = layers.MaxPooling2D(2, name="max_pooling2d_1")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", kernel_regularizer=reg, name="conv2d_2")(x)
    x = layers.MaxPooling2D(2, name="max_pooling2d_2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.1, name="dropout_1")(x)
    return keras.Model(inputs, _softmax_head(x, num_classes, reg), name="tiny")


# A run's checkpoint (optimizer included) may also name fusekit>WarmupSchedule (its learning-rate schedule) and
# fusekit>SmoothedSparseCrossentropy (its loss), which live with the optimizer code in fusekit.train.loop: importing
# it here registers them too, so that `load_model(path)` with compile=True reloads a fer-strong checkpoint anywhere.
from fusekit.train import loop as _loop  # noqa: E402,F401  (loop imports this module only inside functions)
