"""The command line: exact exit codes and one-line errors for user mistakes, status output."""

from __future__ import annotations

from pathlib import Path

from helpers import call_cli, run_cli, write_image


def test_help_and_version(capsys) -> None:
    code, out, _ = call_cli(capsys, "--version")
    assert code == 0 and out.strip() == "fusekit 0.1.0"
    code, out, _ = call_cli(capsys, "--help")
    assert code == 0
    for command in ("datasets", "ingest", "status", "demo", "remove"):
        assert command in out


def test_unknown_dataset_is_exit_2_one_line(tmp_path: Path, capsys) -> None:
    code, _, err = call_cli(capsys, "ingest", "ck++", "--source", str(tmp_path), workspace=tmp_path / "ws")
    assert code == 2
    assert err.strip() == ("Error: unknown dataset 'ck++'. Did you mean 'ckplus'? Valid datasets (see `fusekit "
                           "datasets`): affectnet, ckplus, expw, fer2013, folder, jaffe, kdef, kdrama, mmi, rafdb")


def test_missing_source_is_exit_2(tmp_path: Path, capsys) -> None:
    code, _, err = call_cli(capsys, "ingest", "kdef", "--source", str(tmp_path / "nope"), workspace=tmp_path / "ws")
    assert code == 2 and err.strip() == f"Error: --source {tmp_path / 'nope'} does not exist"


def test_bad_flag_is_exit_2(tmp_path: Path, capsys) -> None:
    code, _, err = call_cli(capsys, "ingest", "kdef", "--sauce", "x")
    assert code == 2 and "No such option" in err


def test_bad_option_syntax(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "d" / "happy" / "a.png", 1)
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(tmp_path / "d"), "-o", "novalue",
                            workspace=tmp_path / "ws")
    assert code == 2 and err.strip() == "Error: --option takes KEY=VALUE, got 'novalue'"


def test_folder_name_that_clashes_with_a_dataset(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "d" / "happy" / "a.png", 1)
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(tmp_path / "d"), "--name", "kdef",
                            workspace=tmp_path / "ws")
    assert code == 2 and "is the name of a dataset fusekit knows" in err


def test_status_and_remove(tmp_path: Path, capsys) -> None:
    ws = tmp_path / "ws"
    code, _, err = call_cli(capsys, "status", workspace=ws)  # no workspace yet: said, and nothing created
    assert code == 2 and err.strip() == f"Error: no workspace at {ws} (run fusekit ingest first)" and not ws.exists()
    for i in range(3):
        write_image(tmp_path / "d" / "train" / "Happy" / f"{i}.png", i)
    write_image(tmp_path / "d" / "test" / "sadness" / "x.png", 9)
    (tmp_path / "d" / "test" / "sadness" / "bad.png").write_bytes(b"")
    code, out, err = call_cli(capsys, "ingest", "folder", "--source", str(tmp_path / "d"), "--name", "mine",
                              "--no-faces", workspace=ws)
    assert code == 0, err
    code, out, _ = call_cli(capsys, "status", workspace=ws)
    lines = out.splitlines()
    assert "mine (classfolders): 4 images" in lines
    assert any(line.split() == ["happy", "3", "0", "3"] for line in lines)
    assert any(line.split() == ["sad", "0", "1", "1"] for line in lines)
    assert "rejected 1: empty_file 1" in lines
    code, out, _ = call_cli(capsys, "remove", "mine", "--variant", "classfolders", workspace=ws)
    assert code == 0
    assert "holds no data yet" in call_cli(capsys, "status", workspace=ws)[1]


def test_console_script_runs_as_a_subprocess(tmp_path: Path) -> None:
    code, out, err = run_cli("ingest", "jaffe", "--source", str(tmp_path), workspace=tmp_path / "ws")
    assert code == 2 and "Traceback" not in err and err.startswith("Error: ")


def test_an_option_a_source_does_not_read_is_refused_not_ignored(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "d" / "happy" / "a.png", 1)
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(tmp_path / "d"), "-o", "angels=S",
                            workspace=tmp_path / "ws")
    assert code == 2 and err.strip() == ("Error: folder variant 'classfolders' takes the options name; "
                                         "got angels")
    (tmp_path / "fer").mkdir()
    (tmp_path / "fer" / "fer2013.csv").write_text("emotion,pixels,Usage\n0," + " ".join(["7"] * 2304)
                                                  + ",Training\n")
    code, _, err = call_cli(capsys, "ingest", "fer2013", "--source", str(tmp_path / "fer"), "-o", "apex=middle",
                            workspace=tmp_path / "ws")
    assert code == 2 and err.strip() == "Error: fer2013 variant 'csv' takes no options; got apex"
    assert not (tmp_path / "ws" / "images").exists() or not any((tmp_path / "ws" / "images").rglob("*.parquet"))


def test_remove_takes_the_unit_out_of_every_table_and_its_extracted_archive(tmp_path: Path, capsys) -> None:
    import zipfile

    import pyarrow as pa

    from fusekit.records import FACES_SCHEMA
    from fusekit.workspace import Workspace, write_parquet_atomic

    ws = tmp_path / "ws"
    for name in ("mine", "theirs"):
        folder = tmp_path / name
        for i in range(3):
            write_image(folder / "happy" / f"{i}.png", i + (10 if name == "theirs" else 0))
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as archive:
            for path in sorted(folder.rglob("*.png")):
                archive.write(path, path.relative_to(folder).as_posix())
        code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(tmp_path / f"{name}.zip"), "--name", name,
                                "--no-faces", workspace=ws)
        assert code == 0, err
    w = Workspace(ws)
    for table in ("faces", "face_rejects", "dedupe_hashes"):  # what `fusekit faces` and `fusekit dedupe` leave
        for unit in ("mine--classfolders", "theirs--classfolders"):
            write_parquet_atomic(FACES_SCHEMA.empty_table(), w.unit_dir(table, unit) / "part-00000.parquet")
    write_parquet_atomic(pa.table({"x": [1]}), w.unit_dir("decisions", "all") / "part-00000.parquet")
    extracted = sorted(p.name for p in (ws / "sources").iterdir() if p.is_dir())
    assert len(extracted) == 2

    code, out, err = call_cli(capsys, "remove", "mine", "--variant", "classfolders", workspace=ws)
    assert code == 0, err
    mine = next(name for name in extracted if name.startswith("mine"))
    assert out.splitlines() == [
        f"removed mine/classfolders from dedupe_hashes, face_rejects, faces, images, rejects, sources/{mine}",
        "its faces were part of the last dedupe: run `fusekit dedupe` (and `fusekit balance`) again"]
    for table in ("images", "faces", "face_rejects", "dedupe_hashes"):
        assert w.units(table) == ["theirs--classfolders"], table
    assert w.units("decisions") == ["all"]
    assert sorted(p.name for p in (ws / "sources").iterdir() if p.is_dir()) == [n for n in extracted if n != mine]
