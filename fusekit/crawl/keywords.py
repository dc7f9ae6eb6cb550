"""The keyword list (`keywords.yaml`): search keywords per canonical emotion and per-engine query templates.

The file is validated from its YAML nodes, so every complaint names the line it is about. Which file is read:
``--keywords FILE`` when given, else ``./keywords.yaml`` when the current folder has one (a checkout of the
repository, or a user's edited copy), else the copy shipped inside the package (``fusekit/crawl/keywords.yaml``,
kept identical to the repository-root file by a test).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fusekit.errors import ConfigError
from fusekit.taxonomy import CLASSES, normalise

PACKAGED = Path(__file__).with_name("keywords.yaml")
DEFAULT_TEMPLATE = "{keyword}"


@dataclass(frozen=True)
class Keywords:
    """Keywords per canonical emotion (in file order, de-duplicated) and query templates per engine."""

    emotions: dict[str, tuple[str, ...]]
    templates: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def query(self, engine: str, keyword: str) -> str:
        template = self.templates.get(engine) or self.templates.get("default") or DEFAULT_TEMPLATE
        return template.replace("{keyword}", keyword)

    def for_emotion(self, emotion: str) -> tuple[str, ...]:
        return self.emotions.get(emotion, ())


def resolve_path(path: str | Path | None) -> Path:
    """The file to read: the given one, else ./keywords.yaml, else the packaged copy."""
    if path is not None:
        chosen = Path(path)
        if not chosen.is_file():
            raise ConfigError(f"--keywords {path} does not exist")
        return chosen
    local = Path.cwd() / "keywords.yaml"
    return local if local.is_file() else PACKAGED


def load_keywords(path: str | Path | None = None) -> Keywords:
    chosen = resolve_path(path)
    try:
        text = chosen.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{chosen}: cannot read the keyword file ({exc})") from None
    return parse_keywords(text, str(chosen))


def _where(name: str, node: yaml.Node) -> str:
    return f"{name}, line {node.start_mark.line + 1}"


def _scalar(name: str, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag.endswith((":null", ":map", ":seq")):
        raise ConfigError(f"{_where(name, node)}: {what} must be a plain text value")
    return str(node.value).strip()


def parse_keywords(text: str, name: str = "keywords.yaml") -> Keywords:
    """Parse and validate the text of a keyword file; a mistake raises ConfigError naming the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{name}{line}: not valid YAML ({problem})") from None
    if root is None:
        raise ConfigError(f"{name}: the file is empty; it needs an `emotions:` mapping")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{_where(name, root)}: the file must be a mapping with an `emotions:` key")
    emotions: dict[str, tuple[str, ...]] = {}
    templates: dict[str, str] = {}
    seen_top = set()
    for key_node, value_node in root.value:
        key = _scalar(name, key_node, "a top-level key")
        if key in seen_top:
            raise ConfigError(f"{_where(name, key_node)}: {key!r} appears twice")
        seen_top.add(key)
        if key == "version":
            if _scalar(name, value_node, "version") != "1":
                raise ConfigError(f"{_where(name, value_node)}: version must be 1")
        elif key == "templates":
            templates = _templates(name, value_node)
        elif key == "emotions":
            emotions = _emotions(name, value_node)
        else:
            raise ConfigError(f"{_where(name, key_node)}: unknown key {key!r} (expected version, templates, emotions)")
    if "emotions" not in seen_top:
        raise ConfigError(f"{name}: no `emotions:` mapping (emotion name -> list of keywords)")
    return Keywords(emotions={c: emotions.get(c, ()) for c in CLASSES}, templates=templates, path=name)


def _templates(name: str, node: yaml.Node) -> dict[str, str]:
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{_where(name, node)}: templates must map an engine name (or default) to a template")
    templates = {}
    for key_node, value_node in node.value:
        engine = _scalar(name, key_node, "an engine name")
        template = _scalar(name, value_node, f"the template for {engine}")
        fields = {f for _, f, _, _ in string.Formatter().parse(template.replace("{{", "").replace("}}", "")) if f}
        if fields != {"keyword"}:
            raise ConfigError(f"{_where(name, value_node)}: the template {template!r} must contain {{keyword}} and no "
                              f"other {{field}}")
        templates[engine] = template
    return templates


def _emotions(name: str, node: yaml.Node) -> dict[str, tuple[str, ...]]:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{_where(name, node)}: emotions must map an emotion name to a list of keywords")
    emotions: dict[str, tuple[str, ...]] = {}
    for key_node, value_node in node.value:
        raw = _scalar(name, key_node, "an emotion name")
        emotion = normalise(raw)
        if emotion is None:
            raise ConfigError(f"{_where(name, key_node)}: unknown emotion {raw!r} (expected one of "
                              f"{', '.join(CLASSES)})")
        if emotion in emotions:
            raise ConfigError(f"{_where(name, key_node)}: {emotion!r} is listed twice")
        if isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null"):
            emotions[emotion] = ()
            continue
        if not isinstance(value_node, yaml.SequenceNode):
            raise ConfigError(f"{_where(name, value_node)}: the keywords of {emotion} must be a list, "
                              f"e.g. [{emotion}, ...]")
        words: list[str] = []
        for item in value_node.value:
            word = " ".join(_scalar(name, item, f"a keyword of {emotion}").split())
            if not word:
                raise ConfigError(f"{_where(name, item)}: an empty keyword under {emotion}")
            if word.lower() in (w.lower() for w in words):
                raise ConfigError(f"{_where(name, item)}: {word!r} is listed twice under {emotion}")
            words.append(word)
        emotions[emotion] = tuple(words)
    return emotions
