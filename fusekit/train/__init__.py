"""The train stage: Keras 3 models, the shard input pipeline, the training loop, and evaluation (prediction on
new pictures, which needs the faces stage too, is ``fusekit.predict``).

Names are loaded on first use, so that ``import fusekit.train`` (and the loader's worker processes, which import
`fusekit.train.decode`) never pay for importing Keras and its backend.

    from fusekit.train import TrainConfig, run_train, EvalConfig, run_evaluate, status_lines
"""

from __future__ import annotations

from fusekit import lazy

__all__, __getattr__ = lazy.exports(__name__, {
    "TrainConfig": "fusekit.train.config",
    "PRESETS": "fusekit.train.config",
    "run_train": "fusekit.train.loop",
    "TrainReport": "fusekit.train.loop",
    "EvalConfig": "fusekit.train.evaluate",
    "EvalReport": "fusekit.train.evaluate",
    "run_evaluate": "fusekit.train.evaluate",
    "compute_metrics": "fusekit.train.evaluate",
    "build_model": "fusekit.train.models",
    "MODELS": "fusekit.train.models",
    "status_lines": "fusekit.train.status",
    "run_demo": "fusekit.train.demo",
})
