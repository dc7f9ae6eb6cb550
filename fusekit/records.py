"""The plain records sources yield, and the Parquet schemas of the workspace tables (defined once, here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Record:
    """One sample as a source sees it, before any image is decoded.

    ``key`` is unique within a variant and stable across runs and machines: a path relative to the layout's anchor
    (``train/angry/Training_3908.jpg``) or a row number (``row00042``), never an absolute path.
    Exactly one of ``path`` (a file the user owns, relative to the source root) or ``load`` (a callable that returns
    the encoded image bytes, for images that have no file of their own) is set, unless ``reject`` is.
    """

    key: str
    raw_label: str | None = None
    label: str | None = None  # canonical label when the source derives it itself (FER+ votes); else mapped by manifest
    label_source: str = "dataset"
    split: str | None = None
    subject: str | None = None
    group: str | None = None
    path: str | None = None
    row: int | None = None
    load: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)
    stored_name: str | None = None  # the file name an HF reader shows for stored bytes
    face_box: tuple[float, float, float, float] | None = None  # x, y, w, h in source pixels
    extra: dict[str, Any] = field(default_factory=dict)
    reject: str | None = None  # a reason, when the source already knows this entry is unusable
    reject_detail: str = ""
    check_blank: bool = False  # reject near-constant images (KDEF's all-black files)
    encoded_here: bool = False  # ``load`` returns fusekit.imageio.encode_png output: valid by construction, not re-decoded


IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
BOX_STRUCT = pa.struct([("x", pa.float32()), ("y", pa.float32()), ("w", pa.float32()), ("h", pa.float32())])

IMAGES_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("dataset", pa.string()),
        ("variant", pa.string()),
        ("source_path", pa.string()),
        ("source_row", pa.int64()),
        ("image", IMAGE_STRUCT),
        ("split", pa.string()),
        ("subject", pa.string()),
        ("group", pa.string()),
        ("raw_label", pa.string()),
        ("label", pa.string()),
        ("label_id", pa.int8()),
        ("label_source", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),
        ("sha256", pa.string()),
        ("face_box", BOX_STRUCT),
        ("terms", pa.string()),
        ("extra", pa.string()),
    ]
)

REJECTS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("stage", pa.string()),
        ("dataset", pa.string()),
        ("variant", pa.string()),
        ("source_path", pa.string()),
        ("source_row", pa.int64()),
        ("raw_label", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

# Reasons a stage may give for a rejected entry; a closed list keeps summaries and tests honest.
REJECT_REASONS = {
    "empty_file": "the file has zero bytes",
    "not_an_image": "the content is not an image format Pillow knows (e.g. HTML or text with an image extension)",
    "truncated": "the image data ends early",
    "undecodable": "the image could not be decoded",
    "decompression_bomb": "the declared pixel count exceeds the safety limit",
    "unreadable": "the file could not be read (or a folder could not be listed)",
    "not_a_file": "a named pipe (FIFO), socket, device or folder where a file was expected: never opened",
    "file_too_large": "the file is larger than the image size limit (64 MiB; FUSEKIT_MAX_IMAGE_BYTES): not read",
    "link_loop": "a symbolic link to a folder above it, or to a folder another link already led to: not walked again",
    "too_deep": "a folder below the depth a layout's walk looks at: not walked",
    "not_created": "an archive member that is a symbolic link, hard link or device: never created (a link can point "
                   "outside the dataset); the detail names its kind and target",
    "unknown_label": "the label is not in the dataset's label map",
    "dropped_label": "the label has no canonical class (e.g. FER+ unknown / non-face, AffectNet none)",
    "unlabelled": "no label file or an empty label for this sample",
    "malformed_row": "a label-file or CSV row that cannot be parsed",
    "stray_file": "a file that is not part of the dataset (.DS_Store, Thumbs.db, README, ...)",
    "unrecognised_name": "a file whose name does not follow the dataset's naming scheme",
    "excluded": "a file the dataset ships that is not a sample (e.g. KDEF's averaged AKDEF faces)",
    "blank_image": "a (near-)constant image, e.g. KDEF's all-black files",
    "missing_file": "a label row whose image file is missing",
    "duplicate_entry": "the same entry appears twice in the layout (e.g. extracted twice)",
    "low_confidence": "the dataset's own confidence in the label is below the threshold asked for (AffectNet Kaggle "
                      "relFCs, -o min_relfcs=)",
    "empty_face_box": "a label file's face box with no area inside the image (outside it, or right <= left)",
    "multiple_labels": "the sample carries several positive labels at once (K-drama multi-hot rows); only single-label "
                       "rows are kept",
}


def dumps_extra(extra: dict[str, Any]) -> str | None:
    """Deterministic JSON for the ``extra`` column."""
    return json.dumps(extra, sort_keys=True, separators=(",", ":")) if extra else None


# -- later stages ------------------------------------------------------------------------------------------------------
# Defined here, once, so that the stage that writes a table and the stages that read it agree on its columns.

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# `faces`: one row per face found (or kept unaligned) in an `images` row. Written by the faces stage, unit per
# images unit (tables/faces/<dataset>--<variant>/). Rows carry copies of the image row's label facts so that dedupe
# and balance never join back to `images` for them; `image_id` is the join key when they need more.
FACES_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # f"{image_id}#{face_index}"
        ("image_id", pa.string()),
        ("face_index", pa.int16()),
        ("dataset", pa.string()),
        ("variant", pa.string()),
        ("split", pa.string()),
        ("subject", pa.string()),
        ("group", pa.string()),
        ("label", pa.string()),
        ("label_id", pa.int8()),
        ("label_source", pa.string()),
        ("terms", pa.string()),
        ("image", IMAGE_STRUCT),  # the aligned crop, PNG bytes; path = f"{id}.png"
        ("size", pa.int32()),  # side of the aligned crop in pixels
        ("aligned", pa.bool_()),  # False: no landmarks, the crop is the (padded) whole image or the given box
        ("policy", pa.string()),  # given_box | precropped | full_frame | crawled
        ("method", pa.string()),  # detected | known_face | given_box | whole_image
        ("box", BOX_STRUCT),  # in source-image pixels (after EXIF orientation)
        ("landmarks", pa.list_(pa.float32(), 10)),  # x, y for LANDMARK_NAMES, source pixels
        ("score", pa.float32()),
        ("transform", pa.list_(pa.float32(), 6)),  # 2x3 affine, source -> aligned crop, row-major
        ("source_width", pa.int32()),
        ("source_height", pa.int32()),
        ("face_width", pa.int32()),  # the source face's size: the box clipped to the image, in source pixels
        ("face_height", pa.int32()),
        ("pixel_sha256", pa.string()),  # sha256 of the source face region's decoded RGB pixels (exact duplicates)
        ("outside_fraction", pa.float32()),  # share of the crop outside the source picture (constant fill)
        ("detail_px", pa.float32()),  # the face's shorter side / its enlargement (fusekit.faces.detail); nan: flat
        # what dedupe's minimum face size is judged on: the picture's shorter side for a dataset distributed as face
        # crops (a manifest's precropped policy: the benchmark's own resolution), else min(face side, detail_px)
        ("resolution", pa.float32()),
        ("detector", pa.string()),  # e.g. "mtcnn 1.0.0 thresholds=0.6,0.7,0.7 min_face=20"
        ("extra", pa.string()),
        # every canonical label the source gives the picture when it gives more than one (the crawl found it under
        # two emotions' keywords: images.extra label_conflict), copied here for dedupe; null otherwise
        ("labels", pa.list_(pa.string())),
    ]
)

# `decisions`: the dedupe stage's verdict on every faces row (one unit, `all`, rewritten as a whole on each run).
DECISIONS_SCHEMA = pa.schema(
    [
        ("face_id", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("label", pa.string()),
        ("decision", pa.string()),  # keep | drop | review
        ("reason", pa.string()),  # null for a plain keep; too_small, blank, dark, blurred, exact_duplicate,
        # near_duplicate, label_conflict, test_leakage, review_rejected (a person's verdict, fusekit.reviews)
        ("detail", pa.string()),
        ("dup_group", pa.string()),  # duplicate group id (the smallest face id in the group), null if alone
        ("kept_id", pa.string()),  # the group member that was kept
        ("kept_why", pa.string()),  # e.g. "lab dataset before crawl", "larger source face", "official test split"
        ("conflict", pa.bool_()),  # the group's members carry different canonical labels
        ("flags", pa.list_(pa.string())),  # never null ([] when nothing): what would have removed an official test
        # member, which is always kept: too_small, blank, dark, blurred, undecodable, exact_duplicate_of:<kept id>,
        # near_duplicate_of:<kept id>, label_conflict, review_rejected, review_relabel:<class> (non-test faces carry [])
        ("phash", pa.string()),  # 16 hex chars, the 64-bit pHash of the aligned grey face
        ("hash_version", pa.string()),  # e.g. "imagehash 4.3.2 phash 8x8"
    ]
)



def flag_kind(flag: str) -> str:
    """A decisions ``flags`` entry's kind: ``near_duplicate_of:<id>`` -> ``near_duplicate_of``; other flags are their
    own kind (read by dedupe's report and by balance, so it lives with the schema, not in either stage)."""
    return flag.split(":", 1)[0]


REJECT_REASONS.update(
    {
        "no_face": "no face was found where the source's policy requires one (full frames, crawled pictures)",
        "too_small": "the image or face is below the minimum size the stage works with",
    }
)

# `crawl` rejects: a URL that was not fetched or whose answer was not kept (see fusekit/crawl/politeness.py).
REJECT_REASONS.update(
    {
        "http_error": "the server answered with an HTTP error status (after the allowed retries)",
        "timeout": "no complete answer within the time limit (after the allowed retries)",
        "connection_failed": "the host could not be resolved or reached, or the connection broke",
        "too_many_redirects": "more redirects than allowed (a redirect loop)",
        "too_large": "the body exceeds the size limit",
        "robots_disallowed": "the site's robots.txt disallows the URL for fusekit",
        "opted_out": "the answer carries X-Robots-Tag noai / noimageai",
        "address_refused": "the host is a private, loopback or otherwise non-public address (or outside the allowed networks)",
        "unsupported_scheme": "not an http(s) URL",
    }
)

# Reasons the faces stage adds (table `face_rejects`; it also uses the decode reasons above, no_face and too_small).
REJECT_REASONS.update(
    {
        "source_changed": "the file differs from the one ingested (its sha256 changed): ingest the dataset again",
        "detector_error": "the face detector failed on this picture (retried on the next run)",
    }
)

# `review_queue`: what `fusekit audit` asks a person to look at (one unit, `all`, rewritten as a whole on each run).
# One row per face; ``reason`` is the first of ``reasons`` in REVIEW_REASONS order, ``rank`` the face's place in the
# queue (1 = look at first: by reason in that order, then by ``score``, then by id).
REVIEW_REASONS = ("label_issue", "low_score", "keyword_rejected", "label_conflict", "review")
REVIEW_QUEUE_SCHEMA = pa.schema(
    [
        ("face_id", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("label", pa.string()),  # the face's label when the queue was made
        ("reason", pa.string()),  # label_issue (cleanlab) | low_score (``--issues N`` filling up to N by score) |
        # keyword_rejected | label_conflict | review (another dedupe review)
        ("reasons", pa.list_(pa.string())),  # every reason that holds, in REVIEW_REASONS order
        ("rank", pa.int32()),
        ("score", pa.float32()),  # out-of-sample probability of the face's own label (self-confidence); low = suspect
        ("top_classes", pa.list_(pa.string())),  # the model's 3 most likely classes, most likely first
        ("top_probs", pa.list_(pa.float32())),
        ("features", pa.string()),  # what the probabilities came from: "run:<name>" or "builtin:hog-pca"
    ]
)

# `reviews`: every verdict a person gave, in the order the server received them (unit `all`; compacted from the
# append-only journal ``tables/reviews/all/_journal.jsonl`` that the review server fsyncs before it answers "saved").
# The verdict that counts for a face is its last one that no later ``undo`` took back (``fusekit.reviews``).
REVIEW_VERDICTS = ("accept", "reject", "relabel", "undo")
REVIEWS_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),  # 1, 2, ... in arrival order
        ("face_id", pa.string()),
        ("verdict", pa.string()),  # accept | reject | relabel | undo
        ("label", pa.string()),  # relabel: the new class; accept: the label accepted; undo/reject: null
        ("was_label", pa.string()),  # the face's label as the page showed it
        ("reason", pa.string()),  # the queue reason the face was shown for
        ("undoes", pa.int64()),  # undo: the seq it takes back
        ("tab", pa.string()),  # the browser tab (page load) that sent it
        ("at", pa.string()),  # UTC time the server received it, ISO 8601
    ]
)
