"""The faces stage: detect every face with MTCNN, align it onto the ArcFace template, keep every labelled sample.

``run_faces(workspace, config, units)`` turns `images` rows into `faces` rows (``stage``); ``detect_and_align(image,
policy, size)`` does the same for one picture (``pipeline``, for predict); ``status_lines(workspace)`` is what
`fusekit status` prints for the stage. Modules: ``decode`` (bytes -> upright RGB), ``detect`` (batched MTCNN),
``align`` (template, similarity fit, crops), ``policies`` (per-source settings and keep rules), ``pipeline`` (a batch
of pictures -> faces), ``stage`` (the resumable chunked runner), ``summary`` (status lines).

Names are loaded on first use, so that `fusekit status` (which imports ``fusekit.faces.summary``) does not pay for
OpenCV, Pillow and the detector modules.
"""

from __future__ import annotations

from fusekit import lazy

__all__, __getattr__ = lazy.exports(__name__, {
    "AlignedFace": "fusekit.faces.pipeline",
    "detect_and_align": "fusekit.faces.pipeline",
    "DEFAULTS": "fusekit.faces.policies",
    "POLICIES": "fusekit.faces.policies",
    "FacesConfig": "fusekit.faces.policies",
    "PolicySettings": "fusekit.faces.policies",
    "FacesReport": "fusekit.faces.stage",
    "UnitReport": "fusekit.faces.stage",
    "run_faces": "fusekit.faces.stage",
    "FaceCounts": "fusekit.faces.summary",
    "counts": "fusekit.faces.summary",
    "status_lines": "fusekit.faces.summary",
})
