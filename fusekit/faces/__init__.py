"""The faces stage: detect every face with MTCNN, align it onto the ArcFace template, keep every labelled sample.

``run_faces(workspace, config, units)`` turns `images` rows into `faces` rows (``stage``); ``detect_and_align(image,
policy, size)`` does the same for one picture (``pipeline``, for predict); ``status_lines(workspace)`` is what
`fusekit status` prints for the stage. Modules: ``decode`` (bytes -> upright RGB), ``detect`` (batched MTCNN),
``align`` (template, similarity fit, crops), ``policies`` (per-source settings and keep rules), ``pipeline`` (a batch
of pictures -> faces), ``stage`` (the resumable chunked runner), ``summary`` (status lines).
"""

from fusekit.faces.pipeline import AlignedFace, detect_and_align
from fusekit.faces.policies import DEFAULTS, POLICIES, FacesConfig, PolicySettings
from fusekit.faces.stage import FacesReport, UnitReport, run_faces
from fusekit.faces.summary import FaceCounts, counts, status_lines

__all__ = ["AlignedFace", "DEFAULTS", "POLICIES", "FaceCounts", "FacesConfig", "FacesReport", "PolicySettings",
           "UnitReport", "counts", "detect_and_align", "run_faces", "status_lines"]
