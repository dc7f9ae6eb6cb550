"""Feature visualisation (the first paper's §4.6): Grad-CAM maps of a run's model over sample faces of each class.

    from fusekit.explain import gradcam, split, explain_faces, ExplainConfig

Names load on first use (Keras is imported only by `gradcam`).
"""

from __future__ import annotations

from fusekit import lazy

__all__, __getattr__ = lazy.exports(__name__, {
    "gradcam": "fusekit.explain.gradcam",
    "split": "fusekit.explain.gradcam",
    "Maps": "fusekit.explain.gradcam",
    "ExplainConfig": "fusekit.explain.stage",
    "ExplainReport": "fusekit.explain.stage",
    "explain_faces": "fusekit.explain.stage",
    "choose": "fusekit.explain.stage",
    "render_explain": "fusekit.explain.stage",
})
