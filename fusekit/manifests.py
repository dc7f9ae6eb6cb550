"""Dataset manifests: the facts about each dataset (homepage, terms, citation, variants, label maps) as data.

They live in ``fusekit/manifests/<dataset>.yaml`` so that an installed package carries them; code never hard-codes a
label table. ``load_manifest`` validates each file once, so a typo in a label map fails loudly at start-up.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from fusekit.errors import ConfigError, SourceNotFound
from fusekit.taxonomy import CLASSES, normalise

DROP = "DROP"  # a label map value: the native label exists but has no canonical class
FACE_POLICIES = ("given_box", "precropped", "full_frame", "crawled", "auto")  # auto: chosen per unit by the faces stage


@dataclass(frozen=True)
class Terms:
    id: str
    summary: str
    non_commercial: bool
    url: str = ""


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    layout: str
    supported: bool
    face_policy: str
    labels: dict[str, str]
    splits: dict[str, str]
    expected: dict[str, Any]
    terms: Terms
    extra: dict[str, Any] = field(default_factory=dict)

    def canonical(self, raw: str) -> str | None:
        """Canonical class for a native label, ``DROP`` for a known label with no class, None if unknown."""
        value = self.labels.get(raw)
        if value is None and self.extra.get("labels_case_insensitive"):
            value = self.labels.get(raw.strip().lower())
        if value is None and self.extra.get("labels_from_class_names"):
            value = normalise(raw)
        return value


@dataclass(frozen=True)
class Manifest:
    name: str
    title: str
    aliases: tuple[str, ...]
    homepage: str
    get: str
    terms: Terms
    citation: str
    variants: dict[str, Variant]
    variants_overlap: bool
    notes: str = ""
    ingested: bool = True  # False: a manifest of units no `fusekit ingest` reads (the crawl's), not in the registry

    @property
    def supported(self) -> bool:
        return any(v.supported for v in self.variants.values())

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise ConfigError(_unknown("variant", name, list(self.variants), f"{self.name} variants"))
        return self.variants[name]


def _unknown(kind: str, name: str, valid: list[str], what: str) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Valid {what}: {', '.join(valid)}"


def _terms(data: dict[str, Any], where: str) -> Terms:
    try:
        return Terms(
            id=str(data["id"]),
            summary=str(data["summary"]),
            non_commercial=bool(data["non_commercial"]),
            url=str(data.get("url", "")),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: terms need id, summary and non_commercial ({exc})") from None


def _variant(name: str, data: dict[str, Any], default_terms: Terms, where: str) -> Variant:
    labels = {str(k): str(v) for k, v in (data.get("labels") or {}).items()}
    for raw, canonical in labels.items():
        if canonical != DROP and canonical not in CLASSES:
            raise ConfigError(f"{where}: variant {name}: label {raw!r} maps to {canonical!r}, not a canonical class")
    policy = data.get("face_policy", "full_frame")
    if policy not in FACE_POLICIES:
        raise ConfigError(f"{where}: variant {name}: face_policy {policy!r} is not one of {FACE_POLICIES}")
    known = {"description", "layout", "supported", "face_policy", "labels", "splits", "expected", "terms"}
    return Variant(
        name=name,
        description=str(data.get("description", "")),
        layout=str(data.get("layout", "")),
        supported=bool(data.get("supported", False)),
        face_policy=policy,
        labels=labels,
        splits={str(k): str(v) for k, v in (data.get("splits") or {}).items()},
        expected=dict(data.get("expected") or {}),
        terms=_terms(data["terms"], where) if "terms" in data else default_terms,
        extra={k: v for k, v in data.items() if k not in known},
    )


def _parse(text: str, where: str) -> Manifest:
    data = yaml.safe_load(text)
    terms = _terms(data.get("terms") or {}, where)
    variants = {str(k): _variant(str(k), v or {}, terms, where) for k, v in (data.get("variants") or {}).items()}
    if not variants:
        raise ConfigError(f"{where}: no variants")
    return Manifest(
        name=str(data["name"]),
        title=str(data["title"]),
        aliases=tuple(str(a).lower() for a in data.get("aliases") or ()),
        homepage=str(data.get("homepage", "")),
        get=str(data.get("get", "")),
        terms=terms,
        citation=" ".join(str(data.get("citation", "")).split()),
        variants=variants,
        variants_overlap=bool(data.get("variants_overlap", True)),
        notes=" ".join(str(data.get("notes", "")).split()),
        ingested=bool(data.get("ingest", True)),
    )


@functools.cache
def known_manifests() -> dict[str, Manifest]:
    """Every manifest shipped with fusekit, by dataset name, sorted: the datasets `fusekit ingest` reads and the
    sources that other stages bring in (the crawl's ``crawl.yaml``, ``ingest: false``)."""
    found: dict[str, Manifest] = {}
    folder = resources.files("fusekit") / "manifests"
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            manifest = _parse(entry.read_text(encoding="utf-8"), f"manifests/{entry.name}")
            found[manifest.name] = manifest
    return found


@functools.cache
def all_manifests() -> dict[str, Manifest]:
    """Every dataset `fusekit ingest` knows, by name, sorted (what `fusekit datasets` lists)."""
    return {name: m for name, m in known_manifests().items() if m.ingested}


def unit_facts(manifest: Manifest, variant: Variant, dataset: str) -> dict[str, Any]:
    """What the later stages need to know of a unit's source, recorded once in its ``_unit.json`` by the stage that
    read the source (ingest, crawl): the manifest, the face policy, the title, the terms and the citations. The
    faces stage reads the policy from there and copies the rest into its own unit for balance's dataset card, so
    neither looks the manifest up again (nor knows how a class-folder or a crawled unit is named).

    ``dataset``: the unit's dataset name, which for a class-folder tree is the user's (``--name``), not the manifest's.
    """
    citations = [c for c in (" ".join(str(variant.extra.get("citation", "")).split()), manifest.citation) if c]
    return {
        "manifest": manifest.name,
        "face_policy": variant.face_policy,
        "title": manifest.title if dataset == manifest.name else dataset,
        "terms": {"id": variant.terms.id, "summary": variant.terms.summary,
                  "non_commercial": variant.terms.non_commercial, "url": variant.terms.url or manifest.homepage},
        "citation": citations,
    }


def _alias_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for manifest in all_manifests().values():
        for alias in (manifest.name, *manifest.aliases):
            key = _alias_key(alias)
            if table.get(key, manifest.name) != manifest.name:
                raise ConfigError(f"alias {alias!r} is claimed by both {table[key]} and {manifest.name}")
            table[key] = manifest.name
    return table


def _alias_key(name: str) -> str:
    return name.strip().lower()


def resolve(name: str) -> Manifest:
    """The manifest for a dataset name or alias (``ck+``, ``ckplus``, ``fer-2013``...).

    >>> resolve("CK+").name
    'ckplus'
    """
    table = _alias_table()
    key = _alias_key(name)
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.6)
        hint = f" Did you mean {table[close[0]]!r}?" if close else ""
        valid = ", ".join(sorted(all_manifests()))
        raise SourceNotFound(f"unknown dataset {name!r}.{hint} Valid datasets (see `fusekit datasets`): {valid}")
    return all_manifests()[table[key]]
