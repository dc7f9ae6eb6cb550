"""The CPU default precision: mixed_bfloat16 where the CPU has bfloat16 instructions (TensorFlow), float32 elsewhere;
an explicit --precision always wins."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("has_bf16, expected", [(True, "mixed_bfloat16"), (False, "float32")])
def test_auto_precision_follows_the_cpu(monkeypatch, has_bf16, expected):
    import keras

    from fusekit.train import loop

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the CPU bfloat16 default is TensorFlow's")
    monkeypatch.setattr(loop, "cpu_has_bfloat16", lambda: has_bf16)
    try:
        assert loop.setup_devices("auto").policy == expected
        assert loop.setup_devices("float32").policy == "float32"
        assert loop.setup_devices("mixed_bfloat16").policy == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_cpu_flags_are_read_from_proc_cpuinfo(monkeypatch, tmp_path):
    from fusekit.train import loop

    info = tmp_path / "cpuinfo"
    real_path = loop.Path

    def fake(p, *a):
        return info if str(p) == "/proc/cpuinfo" else real_path(p, *a)

    monkeypatch.setattr(loop, "Path", fake)
    info.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert loop.cpu_has_bfloat16() is False
    info.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert loop.cpu_has_bfloat16() is True
    info.unlink()
    assert loop.cpu_has_bfloat16() is False


def test_a_run_leaves_keras_global_policy_as_it_found_it(tmp_path, monkeypatch):
    """A bfloat16 CPU run must not leave Keras's global policy at bfloat16: MTCNN (TensorFlow/Keras) run later in the
    same process (`fusekit build`, the demo, a test session) would detect faces in bfloat16 (boxes off by 15 %)."""
    import keras

    from fusekit.train import loop
    from fusekit.train.config import TrainConfig
    from test_train import write_shards

    monkeypatch.setattr(loop, "cpu_has_bfloat16", lambda: True)
    data = write_shards(tmp_path / "ds", per_class=4, size=24, shards=1)
    before = keras.config.dtype_policy().name
    report = loop.run_train(tmp_path / "ws", TrainConfig(data=data, model="tiny", run="r", epochs=1, augment="none",
                                                         verbose=False))
    assert report.precision == ("mixed_bfloat16" if keras.backend.backend() == "tensorflow" else before)
    assert keras.config.dtype_policy().name == before
