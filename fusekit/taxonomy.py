"""The canonical expression classes and the normalisation of class names.

Ids follow FER-2013's order, which most of the field uses; ``contempt`` is optional and comes last.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
BASIC_CLASSES: tuple[str, ...] = CLASSES[:7]
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

# Folder and label spellings seen in the public datasets (FORMATS.md §10) -> canonical name.
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "mad": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "afraid": "fear",
    "fearful": "fear",
    "scared": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "suprise": "surprise",  # hcai-datasets' typo
    "neutral": "neutral",
    "neutrality": "neutral",
    "contempt": "contempt",
}


def normalise(name: str) -> str | None:
    """Map a class name as found in a folder or a label file to its canonical name, or None.

    >>> normalise(" Sadness ")
    'sad'
    """
    return SYNONYMS.get(name.strip().lower().replace("-", "_"))
