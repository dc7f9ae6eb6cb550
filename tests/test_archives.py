"""Datasets given as the archive their owners distribute: the rows of the extracted folder; unsafe or bad refused."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers import call_cli, image_bytes

from fusekit import archives
from fusekit.archives import ExtractLimits, extract, safe_relpath
from fusekit.config import IngestConfig
from fusekit.errors import ArchiveError
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.workspace import Workspace

KDEF_FILES = ["AF01/AF01ANS.JPG", "AF01/AF01HAS.JPG", "AF01/AF01SUHL.JPG", "BM02/BM02SAS.JPG", "BM02/BM02DIFR.JPG"]


def kdef_tree(root: Path) -> Path:
    """KDEF_and_AKDEF/KDEF/<session>/<file>.JPG: the layout of the zip kdef.se distributes (small, generated)."""
    for i, rel in enumerate(KDEF_FILES):
        path = root / "KDEF_and_AKDEF" / "KDEF" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(i + 1, (40, 52), "JPEG", "RGB"))
    return root


def _members(root: Path) -> list[tuple[str, bytes | None]]:
    """(archive name, bytes or None for a folder) for every entry under ``root``, sorted."""
    out: list[tuple[str, bytes | None]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out.append((rel, None if path.is_dir() else path.read_bytes()))
    return out


def make_archive(root: Path, target: Path, fmt: str, extra: list[tuple[str, bytes]] = ()) -> Path:
    members = _members(root) + [(n, b) for n, b in extra]
    if fmt == "zip":
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                if data is None:
                    zf.writestr(name + "/", b"")
                else:
                    zf.writestr(name, data)
        return target
    mode = {"tar": "w", "tar.gz": "w:gz", "tgz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}[fmt]
    with tarfile.open(target, mode) as tf:
        _add_tar_members(tf, members)
    return target


def _add_tar_members(tf: tarfile.TarFile, members) -> None:
    """Folders (data None) and files, in the order given."""
    for name, data in members:
        info = tarfile.TarInfo(name)
        if data is None:
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        else:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _rows(ws: Workspace, unit: str) -> tuple[list[dict], list[dict]]:
    images = ws.read("images", IMAGES_SCHEMA, units=[unit]).to_pylist()
    rejects = ws.read("rejects", REJECTS_SCHEMA, units=[unit]).to_pylist()
    return images, rejects


def _comparable(rows: list[dict]) -> list[tuple]:
    return sorted((r["id"], r["source_path"], r["label"], r["subject"], r["sha256"]) for r in rows)


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz", "tgz", "tar.bz2", "tar.xz"])
def test_archive_ingests_like_the_extracted_folder(tmp_path, fmt):
    folder = kdef_tree(tmp_path / "dl")
    archive = make_archive(folder, tmp_path / f"KDEF_and_AKDEF.{fmt}", fmt)
    ws_folder, ws_archive = Workspace(tmp_path / "ws1"), Workspace(tmp_path / "ws2")
    from_folder = run_ingest(ws_folder, IngestConfig(name="kdef", source=folder, faces=False))
    report = run_ingest(ws_archive, IngestConfig(name="kdef", source=archive, faces=False))
    images, rejects = _rows(ws_archive, report.unit)
    assert report.images == from_folder.images == 5 and not rejects
    assert _comparable(images) == _comparable(_rows(ws_folder, from_folder.unit)[0])
    assert {r["id"] for r in images} == {f"kdef/official/{rel}" for rel in KDEF_FILES}
    # The rows point into the extraction, which the faces stage reads through the unit's source_root.
    root = Path(ws_archive.unit_info("images", report.unit)["source_root"])
    assert root.is_relative_to(ws_archive.root / "sources")
    assert (root / images[0]["source_path"]).is_file()
    assert any("extracted 5 files" in n for n in report.notes)


def test_rerun_reuses_the_extraction_and_macos_junk_is_a_stray(tmp_path, capsys):
    folder = kdef_tree(tmp_path / "dl")
    junk = [("__MACOSX/KDEF_and_AKDEF/KDEF/AF01/._AF01ANS.JPG", b"\x00\x05\x16\x07"),
            ("KDEF_and_AKDEF/KDEF/AF01/.DS_Store", b"\x00\x00\x00\x01Bud1")]
    archive = make_archive(folder, tmp_path / "KDEF_and_AKDEF.zip", "zip", junk)
    ws = Workspace(tmp_path / "ws")
    first = run_ingest(ws, IngestConfig(name="kdef", source=archive, faces=False))
    images, rejects = _rows(ws, first.unit)
    assert len(images) == 5 and {r["reason"] for r in rejects} == {"stray_file"} and len(rejects) == 1
    code, out, _ = call_cli(capsys, "ingest", "kdef", "--source", str(archive), "--no-faces", workspace=ws.root)
    assert code == 0 and "reused the extraction" in out
    assert _comparable(_rows(ws, first.unit)[0]) == _comparable(images)
    extracted = [p.name for p in (ws.root / "sources").iterdir() if p.is_dir()]
    assert len(extracted) == 1 and extracted[0].startswith("KDEF_and_AKDEF-")


def test_fer2013_folders_from_a_tgz(tmp_path):
    root = tmp_path / "fer"
    for i, rel in enumerate(["train/angry/Training_10.jpg", "train/happy/Training_11.jpg",
                             "test/sad/PublicTest_12.jpg", "test/sad/PrivateTest_13.jpg"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(image_bytes(i, (48, 48), "JPEG"))
    archive = make_archive(root, tmp_path / "fer2013.tgz", "tgz")
    ws = Workspace(tmp_path / "ws")
    report = run_ingest(ws, IngestConfig(name="fer2013", source=archive, faces=False))
    images, _ = _rows(ws, report.unit)
    assert report.variant == "folders"
    assert {r["id"]: r["split"] for r in images} == {
        "fer2013/folders/train/angry/Training_10.jpg": "train", "fer2013/folders/train/happy/Training_11.jpg": "train",
        "fer2013/folders/test/sad/PublicTest_12.jpg": "val", "fer2013/folders/test/sad/PrivateTest_13.jpg": "test"}


def _assert_refused(capsys, tmp_path: Path, archive: Path, *needles: str) -> str:
    ws = tmp_path / "ws-refused"
    code, out, err = call_cli(capsys, "ingest", "kdef", "--source", str(archive), "--no-faces", workspace=ws)
    assert code == 2, (out, err)
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert not (ws / "tables").exists() or not any((ws / "tables").rglob("*.parquet"))
    sources = ws / "sources"
    assert not sources.exists() or not [p for p in sources.iterdir() if p.is_dir()]  # no extraction, no temp
    return err


def test_zip_slip_and_absolute_members_are_refused(tmp_path, capsys):
    kdef_tree(tmp_path / "dl")
    slip = make_archive(tmp_path / "dl", tmp_path / "slip.zip", "zip", [("../../evil.txt", b"owned")])
    _assert_refused(capsys, tmp_path, slip, "slip.zip", "'..'")
    absolute = make_archive(tmp_path / "dl", tmp_path / "abs.tar", "tar", [("/tmp/fusekit-evil.txt", b"owned")])
    _assert_refused(capsys, tmp_path, absolute, "absolute path")
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/fusekit-evil.txt").exists()
    for bad in ("a/../../b", "..\\x", "C:\\windows\\x", "/etc/passwd"):
        with pytest.raises(ArchiveError):
            safe_relpath(bad)
    assert safe_relpath("./a//b/./c.jpg") == "a/b/c.jpg" and safe_relpath("./") is None


def test_links_and_devices_are_not_created(tmp_path):
    folder = kdef_tree(tmp_path / "dl")
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tf:
        _add_tar_members(tf, _members(folder))
        for name, kind, target in [("KDEF_and_AKDEF/KDEF/AF01/AF01NES.JPG", tarfile.SYMTYPE, "/etc/passwd"),
                                   ("KDEF_and_AKDEF/KDEF/AF01/AF01AFS.JPG", tarfile.LNKTYPE, "/etc/passwd"),
                                   ("KDEF_and_AKDEF/dev", tarfile.CHRTYPE, "")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    result = extract(archive, tmp_path / "sources")
    assert result.skipped == {"symlink": 1, "hardlink": 1, "special file": 1} and result.members == 5
    files = [p for p in result.folder.rglob("*")]
    assert not any(p.is_symlink() for p in files) and len([p for p in files if p.is_file()]) == 5
    assert "not created: 1 hardlink, 1 special file, 1 symlink" in result.note()
    zpath = make_archive(folder, tmp_path / "links.zip", "zip")
    with zipfile.ZipFile(zpath, "a") as zf:
        info = zipfile.ZipInfo("KDEF_and_AKDEF/KDEF/AF01/AF01NES.JPG")
        info.create_system, info.external_attr = 3, (0o120777 << 16)  # a Unix symlink, as `zip -y` stores it
        zf.writestr(info, "/etc/passwd")
    result = extract(zpath, tmp_path / "sources")
    assert result.skipped == {"symlink": 1} and result.members == 5
    assert not any(p.is_symlink() for p in result.folder.rglob("*"))


@pytest.mark.parametrize("fmt", ["zip", "tgz"])
def test_a_bomb_is_refused_before_it_fills_the_disk(tmp_path, capsys, monkeypatch, fmt):
    monkeypatch.setenv("FUSEKIT_ARCHIVE_MAX_BYTES", "1M")
    kdef_tree(tmp_path / "dl")
    bomb = make_archive(tmp_path / "dl", tmp_path / f"bomb.{fmt}", fmt, [("KDEF_and_AKDEF/zeros.bin", bytes(8 << 20))])
    assert bomb.stat().st_size < 200_000  # highly compressible: small archive, 8 MB inside
    _assert_refused(capsys, tmp_path, bomb, "more than 1,048,576 bytes", "FUSEKIT_ARCHIVE_MAX_BYTES")


def test_member_count_is_bounded(tmp_path):
    kdef_tree(tmp_path / "dl")
    archive = make_archive(tmp_path / "dl", tmp_path / "many.tar", "tar")
    with pytest.raises(ArchiveError, match="more than 3 members"):
        extract(archive, tmp_path / "sources", ExtractLimits(max_members=3))
    assert ExtractLimits.from_env({"FUSEKIT_ARCHIVE_MAX_MEMBERS": "10", "FUSEKIT_ARCHIVE_MAX_BYTES": "2G"}) == \
        ExtractLimits(max_bytes=2 << 30, max_members=10)


@pytest.mark.parametrize("fmt", ["zip", "tar", "tgz"])
def test_a_truncated_archive_is_refused_and_writes_nothing(tmp_path, capsys, fmt):
    folder = kdef_tree(tmp_path / "dl")
    archive = make_archive(folder, tmp_path / f"KDEF.{fmt}", fmt)
    data = archive.read_bytes()
    if fmt == "tar":  # cut exactly at a member header: only the missing end marker tells
        with tarfile.open(archive) as tf:
            cut = tf.getmembers()[-1].offset
    else:
        cut = len(data) * 2 // 3
    archive.write_bytes(data[:cut])
    err = _assert_refused(capsys, tmp_path, archive, "KDEF." + fmt)
    assert "truncated" in err or "damaged" in err


def test_a_zip_with_a_bad_crc_is_refused(tmp_path, capsys):
    folder = kdef_tree(tmp_path / "dl")
    archive = make_archive(folder, tmp_path / "crc.zip", "zip")
    data = bytearray(archive.read_bytes())
    info = zipfile.ZipFile(archive).getinfo("KDEF_and_AKDEF/KDEF/BM02/BM02SAS.JPG")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    _assert_refused(capsys, tmp_path, archive, "Bad CRC-32", "download it again")


@pytest.mark.parametrize(
    ("name", "command"),
    [("ExpW.7z.001", "cat ExpW.7z.0* > ExpW.7z && 7z x ExpW.7z"), ("data.7z", "7z x data.7z"),
     ("Manually_Annotated.part1.rar", "unrar x Manually_Annotated.part1.rar"), ("x.zip.001", "7z x x.zip.001")],
)
def test_7z_and_rar_are_refused_with_the_command_that_extracts_them(tmp_path, capsys, name, command):
    path = tmp_path / name
    path.write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(64))
    err = _assert_refused(capsys, tmp_path, path, command)
    assert "does not read" in err or "Join" in err


def test_an_interrupted_extraction_never_looks_complete(tmp_path, monkeypatch):
    folder = kdef_tree(tmp_path / "dl")
    archive = make_archive(folder, tmp_path / "k.zip", "zip")
    sources = tmp_path / "sources"
    calls = {"n": 0}
    real_copy = archives._copy

    def dying_copy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a kill in the middle of the third member
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(archives, "_copy", dying_copy)
    with pytest.raises(KeyboardInterrupt):
        extract(archive, sources)
    assert not [p for p in sources.iterdir() if p.is_dir()]  # the temp folder was removed; no final folder
    (sources / f".tmp-k-{archives.archive_digest(archive, sources / '_archives.json')[:12]}-dead").mkdir()  # SIGKILL
    monkeypatch.setattr(archives, "_copy", real_copy)
    result = extract(archive, sources)
    assert not result.reused and result.members == 5
    assert [p.name for p in sources.iterdir() if p.is_dir()] == [result.folder.name]
    assert extract(archive, sources).reused


def test_a_plain_file_is_not_an_archive(tmp_path):
    csv_file = tmp_path / "fer2013.csv"
    csv_file.write_text("emotion,pixels,Usage\n")
    assert archives.archive_kind(csv_file) is None and archives.archive_kind(tmp_path) is None
    assert archives.stem(Path("a.b.tar.gz")) == "a.b" and archives.stem(Path("x.tgz")) == "x"
    assert os.path.exists(csv_file)
