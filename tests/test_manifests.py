"""Manifests: every dataset of FORMATS.md is listed, every label maps to a canonical class or DROP, aliases resolve."""

from __future__ import annotations

import pytest
from helpers import call_cli

from fusekit import api
from fusekit.errors import SourceNotFound
from fusekit.manifests import DROP, all_manifests, resolve
from fusekit.taxonomy import CLASSES

FORMATS_DATASETS = {"fer2013", "affectnet", "kdef", "jaffe", "ckplus", "mmi", "rafdb", "expw", "kdrama", "folder"}


def test_every_formats_dataset_has_a_manifest_with_terms_and_citation() -> None:
    manifests = all_manifests()
    assert set(manifests) == FORMATS_DATASETS
    for m in manifests.values():
        assert m.terms.summary and m.terms.id
        if m.name != "folder":
            assert m.homepage.startswith("http") and m.citation, m.name
            assert m.terms.non_commercial, m.name  # FORMATS.md §13: all of them are


def test_every_label_maps_to_a_canonical_class_or_drop() -> None:
    for m in all_manifests().values():
        for v in m.variants.values():
            for raw, canonical in v.labels.items():
                assert canonical in CLASSES or canonical == DROP, (m.name, v.name, raw)


@pytest.mark.parametrize(
    ("alias", "name"),
    [("ck+", "ckplus"), ("CKPlus", "ckplus"), ("fer2013", "fer2013"), ("FER-2013", "fer2013"), ("fer+", "fer2013"),
     ("raf-db", "rafdb"), ("k-drama", "kdrama"), ("imagefolder", "folder"), ("KDEF", "kdef")],
)
def test_aliases(alias: str, name: str) -> None:
    assert resolve(alias).name == name


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(SourceNotFound, match="Did you mean 'kdef'"):
        resolve("kdeff")


def test_label_maps_match_formats_md() -> None:
    """Spot checks of the id tables that public code most often gets wrong (FORMATS.md §10)."""
    assert resolve("fer2013").variant("csv").canonical("1") == "disgust"
    affectnet = resolve("affectnet").variant("official")
    assert [affectnet.canonical(str(i)) for i in range(11)] == [
        "neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt", DROP, DROP, DROP]
    raf = resolve("rafdb").variant("basic")
    assert [raf.canonical(str(i)) for i in range(1, 8)] == [
        "surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    ck = resolve("ckplus").variant("sequences")
    assert [ck.canonical(str(i)) for i in range(8)] == [
        "neutral", "angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"]
    assert resolve("ckplus").variant("ck48").canonical("sadness") == "sad"
    assert resolve("kdef").variant("official").canonical("AF") == "fear"
    assert resolve("fer2013").variant("ferplus").canonical("NF") == DROP


def test_datasets_command_lists_every_variant_and_marks_unsupported(capsys) -> None:
    code, out, _ = call_cli(capsys, "datasets")
    assert code == 0
    entries = api.datasets()
    for entry in entries:
        assert entry.manifest.name in out and entry.variant in out
    supported = {(e.manifest.name, e.variant) for e in entries if e.supported}
    assert {("fer2013", "csv"), ("ckplus", "sequences"), ("kdef", "official"), ("folder", "classfolders")} <= supported
    assert ("not yet" in out) == any(not e.supported for e in entries)  # unsupported variants are marked
    assert "[NON-COMMERCIAL]" in out and "Goodfellow" in out and "https://www.kdef.se/" in out


def test_the_crawl_has_a_manifest_like_any_source_but_is_not_a_dataset_to_ingest() -> None:
    from fusekit.crawl.engines import ENGINES
    from fusekit.manifests import known_manifests

    crawl = known_manifests()["crawl"]
    assert "crawl" not in all_manifests() and crawl.terms.id == "web"
    assert {name: v.face_policy for name, v in crawl.variants.items()} == {name: "crawled" for name in ENGINES}
