"""Archives bounded by ratio as well as size, limits as flags, every member not created a reject (issue 15, 5 and 8).

Bombs are built at test time: tens of MB of zeros deflate to tens of KB.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers import call_cli, image_bytes
from test_archives import KDEF_FILES, _add_tar_members, _members, _rows, kdef_tree, make_archive

from fusekit import archives
from fusekit.archives import ExtractLimits, extract
from fusekit.config import IngestConfig
from fusekit.errors import ArchiveError
from fusekit.ingest import run_ingest
from fusekit.records import REJECT_REASONS
from fusekit.workspace import Workspace

MB = 1 << 20


def _refused(capsys, tmp_path: Path, archive: Path, *flags: str, dataset: str = "kdef") -> str:
    ws = tmp_path / "ws"
    code, out, err = call_cli(capsys, "ingest", dataset, "--source", str(archive), "--no-faces", *flags, workspace=ws)
    assert code == 2, (out, err)
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err and "bug" not in err
    return err.strip()[len("Error: "):]


def _nothing_extracted(ws: Path) -> None:
    sources = ws / "sources"
    assert not sources.exists() or not [p for p in sources.iterdir() if p.is_dir()]  # no extraction, no temp folder
    assert not (ws / "tables").exists() or not any((ws / "tables").rglob("*.parquet"))


# -- ratio ----------------------------------------------------------------------------------------------------------

def test_a_zip_bomb_is_refused_at_the_default_settings_before_anything_is_written(tmp_path, capsys):
    kdef_tree(tmp_path / "dl")
    bomb = make_archive(tmp_path / "dl", tmp_path / "bomb.zip", "zip", [("KDEF_and_AKDEF/zeros.bin", bytes(64 * MB))])
    assert bomb.stat().st_size < 200_000  # 64 MiB inside: far below the size limit, ~1,000x its compressed size
    message = _refused(capsys, tmp_path, bomb)
    assert message.startswith("bomb.zip: member 'KDEF_and_AKDEF/zeros.bin' inflates to 67,108,864 bytes from ")
    assert "more than the 100x limit): a decompression bomb; refused before anything was written" in message
    assert message.endswith("(if it is genuine: --max-extract-ratio N or FUSEKIT_ARCHIVE_MAX_RATIO)")
    assert not (tmp_path / "ws" / "sources").exists()  # judged by the central directory: not even sources/


def test_a_zip_of_many_small_compressible_members_is_judged_as_a_whole(tmp_path, capsys):
    members = [(f"KDEF_and_AKDEF/pad/{i:02d}.bin", bytes(MB)) for i in range(24)]  # each under the ratio floor
    kdef_tree(tmp_path / "dl")
    bomb = make_archive(tmp_path / "dl", tmp_path / "many.zip", "zip", members)
    message = _refused(capsys, tmp_path, bomb)
    assert message.startswith("many.zip: the archive inflates to ") and "decompression bomb" in message
    assert not (tmp_path / "ws" / "sources").exists()


def _tar_with(path: Path, mode: str, members: list[tuple[str, bytes]], **kw) -> Path:
    with tarfile.open(path, mode, **kw) as tf:
        _add_tar_members(tf, members)
    return path


def test_a_tar_gz_bomb_is_refused_at_its_header_at_the_default_settings(tmp_path, capsys):
    kdef_tree(tmp_path / "dl")
    bomb = _tar_with(tmp_path / "bomb.tar.gz", "w:gz", _members(tmp_path / "dl")
                     + [("KDEF_and_AKDEF/zeros.bin", bytes(64 * MB))], compresslevel=1)
    message = _refused(capsys, tmp_path, bomb)
    assert message.startswith("bomb.tar.gz: the archive inflates to ") and "decompression bomb" in message
    _nothing_extracted(tmp_path / "ws")


@pytest.mark.parametrize(("suffix", "mode", "kw"), [("tar.gz", "w:gz", {"compresslevel": 1}),
                                                    ("tar.xz", "w:xz", {"preset": 0}),
                                                    ("tar.bz2", "w:bz2", {"compresslevel": 1})])
def test_a_tar_stream_is_stopped_mid_stream_by_the_running_ratio(tmp_path, capsys, monkeypatch, suffix, mode, kw):
    """24 MiB of zeros, then 4 MiB of noise: 7x as a whole (within --max-extract-ratio 20, so every header passes),
    but ~100x while the zeros are read: extraction stops there and its temp folder is removed."""
    kdef_tree(tmp_path / "dl")
    noise = os.urandom(4 * MB)
    archive = _tar_with(tmp_path / f"stream.{suffix}", mode, _members(tmp_path / "dl") + [
        ("KDEF_and_AKDEF/zeros.bin", bytes(24 * MB)), ("KDEF_and_AKDEF/noise.bin", noise)], **kw)
    written = {"bytes": 0}
    real_copy = archives._copy

    def counting_copy(source, target, budget, declared, name):
        try:
            return real_copy(source, target, budget, declared, name)
        finally:
            written["bytes"] = budget.bytes

    monkeypatch.setattr(archives, "_copy", counting_copy)
    message = _refused(capsys, tmp_path, archive, "--max-extract-ratio", "20")
    assert message.startswith(f"stream.{suffix}: the stream inflates to ")
    assert "more than the 20x limit): a decompression bomb; extraction stopped and its folder removed" in message
    assert 16 * MB < written["bytes"] < 24 * MB  # stopped inside the zeros, after the ratio floor
    _nothing_extracted(tmp_path / "ws")
    assert not list((tmp_path / "ws" / "sources").glob(".tmp-*"))


def test_honest_archives_pass_the_ratio_limit(tmp_path):
    folder = kdef_tree(tmp_path / "dl")
    (folder / "KDEF_and_AKDEF" / "fer2013.csv").write_bytes(b"0,1 2 3 4 5,Training\n" * 200_000)  # 4 MB, ~100x
    archive = make_archive(folder, tmp_path / "ok.tar.gz", "tar.gz")
    result = extract(archive, tmp_path / "sources")  # under the 16 MiB floor a small CSV is never judged by ratio
    assert result.members == 6


# -- the limits as flags ------------------------------------------------------------------------------------------

def test_flags_override_the_environment(tmp_path, capsys, monkeypatch):
    kdef_tree(tmp_path / "dl")
    archive = make_archive(tmp_path / "dl", tmp_path / "KDEF.zip", "zip")
    monkeypatch.setenv("FUSEKIT_ARCHIVE_MAX_BYTES", "1K")
    monkeypatch.setenv("FUSEKIT_ARCHIVE_MAX_MEMBERS", "3")
    message = _refused(capsys, tmp_path, archive, "--max-members", "100")
    assert "unpacks to more than 1,024 bytes" in message and "--max-extract-bytes" in message
    message = _refused(capsys, tmp_path, archive, "--max-extract-bytes", "10M")
    assert "more than 3 members" in message and "--max-members" in message
    code, out, err = call_cli(capsys, "ingest", "kdef", "--source", str(archive), "--no-faces", "--max-members", "100",
                              "--max-extract-bytes", "10M", workspace=tmp_path / "ws")
    assert code == 0, err
    assert "5 images" in out

    bomb = make_archive(tmp_path / "dl", tmp_path / "bomb.zip", "zip", [("KDEF_and_AKDEF/zeros.bin", bytes(20 * MB))])
    monkeypatch.setenv("FUSEKIT_ARCHIVE_MAX_BYTES", "1G")
    monkeypatch.delenv("FUSEKIT_ARCHIVE_MAX_MEMBERS")
    monkeypatch.setenv("FUSEKIT_ARCHIVE_MAX_RATIO", "5000")
    message = _refused(capsys, tmp_path, bomb, "--max-extract-ratio", "100")
    assert "more than the 100x limit" in message
    monkeypatch.setenv("FUSEKIT_ARCHIVE_MAX_RATIO", "10")
    code, _, err = call_cli(capsys, "ingest", "kdef", "--source", str(bomb), "--no-faces", "--max-extract-ratio", "5000",
                            workspace=tmp_path / "ws2")
    assert code == 0, err


def test_limits_from_the_environment_and_bad_values(tmp_path, capsys):
    limits = ExtractLimits.from_env({"FUSEKIT_ARCHIVE_MAX_RATIO": "50x", "FUSEKIT_ARCHIVE_MAX_BYTES": "2G"})
    assert (limits.max_ratio, limits.max_bytes) == (50.0, 2 << 30)
    assert limits.overridden(max_ratio=7, max_members=None) == ExtractLimits(max_bytes=2 << 30, max_ratio=7)
    assert ExtractLimits().max_ratio == 100
    kdef_tree(tmp_path / "dl")
    archive = make_archive(tmp_path / "dl", tmp_path / "KDEF.zip", "zip")
    assert "must be at least 1" in _refused(capsys, tmp_path, archive, "--max-extract-ratio", "0.5")
    assert "expected a number" in _refused(capsys, tmp_path, archive, "--max-extract-bytes", "lots")


# -- members not created are rejects ----------------------------------------------------------------------------------

def _links_tar(folder: Path, path: Path) -> Path:
    with tarfile.open(path, "w") as tf:
        _add_tar_members(tf, _members(folder))
        for name, kind, target in [("KDEF_and_AKDEF/KDEF/AF01/AF01NES.JPG", tarfile.SYMTYPE, "/etc/passwd"),
                                   ("KDEF_and_AKDEF/KDEF/AF01/AF01AFS.JPG", tarfile.LNKTYPE,
                                    "KDEF_and_AKDEF/KDEF/AF01/AF01ANS.JPG"),
                                   ("KDEF_and_AKDEF/KDEF/tty0", tarfile.CHRTYPE, "")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return path


def test_links_and_devices_in_a_tar_become_reject_rows(tmp_path, capsys):
    archive = _links_tar(kdef_tree(tmp_path / "dl"), tmp_path / "links.tar")
    ws = Workspace(tmp_path / "ws")
    report = run_ingest(ws, IngestConfig(name="kdef", source=archive, faces=False))
    images, rejects = _rows(ws, report.unit)
    assert len(images) == 5
    got = {r["id"]: (r["reason"], r["source_path"], r["detail"]) for r in rejects if r["reason"] == "not_created"}
    assert got == {
        "kdef/official/not_created/KDEF_and_AKDEF/KDEF/AF01/AF01NES.JPG": (
            "not_created", "KDEF_and_AKDEF/KDEF/AF01/AF01NES.JPG",
            "a symbolic link to '/etc/passwd' in links.tar: not created (a link can point outside the dataset)"),
        "kdef/official/not_created/KDEF_and_AKDEF/KDEF/AF01/AF01AFS.JPG": (
            "not_created", "KDEF_and_AKDEF/KDEF/AF01/AF01AFS.JPG",
            "a hard link to 'KDEF_and_AKDEF/KDEF/AF01/AF01ANS.JPG' in links.tar: not created (a link can point "
            "outside the dataset)"),
        "kdef/official/not_created/KDEF_and_AKDEF/KDEF/tty0": (
            "not_created", "KDEF_and_AKDEF/KDEF/tty0", "a character device in links.tar: not created"),
    }
    assert report.rejects["not_created"] == 3 and "not_created" in REJECT_REASONS
    # a rerun reuses the extraction and records the same rows (the marker beside the folder lists them)
    code, out, err = call_cli(capsys, "ingest", "kdef", "--source", str(archive), "--no-faces", workspace=ws.root)
    assert code == 0 and "reused the extraction" in out and "not created: 1 hardlink" in out, err
    again = {r["id"] for r in _rows(ws, report.unit)[1] if r["reason"] == "not_created"}
    assert again == set(got)


def test_a_symlink_in_a_zip_becomes_a_reject_row(tmp_path):
    folder = kdef_tree(tmp_path / "dl")
    zpath = make_archive(folder, tmp_path / "links.zip", "zip")
    with zipfile.ZipFile(zpath, "a") as zf:
        info = zipfile.ZipInfo("KDEF_and_AKDEF/KDEF/AF01/AF01NES.JPG")
        info.create_system, info.external_attr = 3, (0o120777 << 16)
        zf.writestr(info, "../../../etc/passwd")
    ws = Workspace(tmp_path / "ws")
    report = run_ingest(ws, IngestConfig(name="kdef", source=zpath, faces=False))
    rows = [r for r in _rows(ws, report.unit)[1] if r["reason"] == "not_created"]
    assert [(r["source_path"], r["detail"]) for r in rows] == [
        ("KDEF_and_AKDEF/KDEF/AF01/AF01NES.JPG",
         "a symbolic link to '../../../etc/passwd' in links.zip: not created (a link can point outside the dataset)")]


def test_a_folder_source_gets_no_archive_rejects(tmp_path):
    folder = kdef_tree(tmp_path / "dl")
    assert list(archives.not_created(folder, tmp_path / "ws" / "sources")) == []


# -- a zip named .tar.gz, class folders under one top folder ------------------------------------------------------------

def test_a_zip_named_tar_gz_is_extracted_as_a_zip(tmp_path, capsys):
    folder = kdef_tree(tmp_path / "dl")
    archive = make_archive(folder, tmp_path / "KDEF.zip", "zip").rename(tmp_path / "KDEF.tar.gz")
    assert archives.archive_kind(archive) == "zip"
    code, out, err = call_cli(capsys, "ingest", "kdef", "--source", str(archive), "--no-faces",
                              workspace=tmp_path / "ws")
    assert code == 0, err
    assert "a zip archive named .tar.gz: extracted as zip" in out and "5 images" in out
    tar = make_archive(folder, tmp_path / "K.tar", "tar").rename(tmp_path / "K.zip")
    assert archives.archive_kind(tar) == "tar" and extract(tar, tmp_path / "s2").members == 5


def test_class_folders_under_one_top_folder_of_a_zip(tmp_path, capsys):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, rel in enumerate(["happy/a.png", "happy/b.png", "sad/c.png", "angry/d.png"]):
            zf.writestr(f"my-faces/{rel}", image_bytes(i + 1))
        zf.writestr("__MACOSX/my-faces/._a.png", b"\x00\x05\x16\x07")
        zf.writestr("my-faces/README.txt", b"four faces")
    archive = tmp_path / "my-faces.zip"
    archive.write_bytes(buf.getvalue())
    code, out, err = call_cli(capsys, "ingest", "folder", "--source", str(archive), "--no-faces",
                              workspace=tmp_path / "ws")
    assert code == 0, err
    ws = Workspace(tmp_path / "ws")
    assert ws.units("images") == ["my-faces--classfolders"]
    images, _ = _rows(ws, "my-faces--classfolders")
    assert sorted((r["source_path"], r["label"]) for r in images) == [
        ("angry/d.png", "angry"), ("happy/a.png", "happy"), ("happy/b.png", "happy"), ("sad/c.png", "sad")]


def test_a_folder_that_holds_one_folder_of_class_folders(tmp_path, capsys):
    for i, rel in enumerate(["happy/a.png", "sad/b.png"]):
        path = tmp_path / "dl" / "inner" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(i + 1))
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(tmp_path / "dl"), "--no-faces",
                            workspace=tmp_path / "ws")
    assert code == 0, err
    assert Workspace(tmp_path / "ws").units("images") == ["inner--classfolders"]


def test_kdef_members_are_unchanged_by_the_new_checks(tmp_path):
    folder = kdef_tree(tmp_path / "dl")
    for fmt in ("zip", "tar.gz"):
        result = extract(make_archive(folder, tmp_path / f"K.{fmt}", fmt), tmp_path / f"s-{fmt}")
        assert result.members == len(KDEF_FILES) and not result.not_created and result.kind_note is None
    with pytest.raises(ArchiveError, match="more than the 2x limit"):
        extract(make_archive(folder, tmp_path / "Z.zip", "zip", [("z.bin", bytes(17 * MB))]), tmp_path / "s-z",
                ExtractLimits(max_ratio=2))
