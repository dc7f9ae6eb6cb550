"""`fusekit demo`: a corpus generated at run time in native layouts, then every stage that exists, end to end.

The faces come from two public-domain photos that ship inside installed packages: scikit-image's ``astronaut``
(Eileen Collins, NASA) and matplotlib's ``grace_hopper.jpg`` (US Navy). Each is cropped, turned, mirrored,
re-lit and re-sized into FER-2013's CSV, CK+'s sequence folders and KDEF's session folders, with some of each
dataset's real quirks (a cut-off CSV row, an unlabelled sequence, an all-black KDEF picture, stray .DS_Store files).
The labels are arbitrary: the demo shows the plumbing, not a model of expressions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Iterator

from fusekit.demo.corpus import FER_ROWS, PHOTOS, Photo, build_corpus, face_crop, frame, load_photos

__all__ = ["FER_ROWS", "PHOTOS", "Photo", "build_corpus", "face_crop", "frame", "load_photos", "run"]


def run(out: Path | None, echo: Callable[[str], None], train: bool = True) -> Iterator[str]:
    """Generate the corpus and run every stage on it; yields the lines to print.

    Order: a crawl of a local stand-in engine (so the crawled faces take part in dedupe and balance), then
    `fusekit build` on the bundled recipe (ingest -> faces -> dedupe -> balance), then a few epochs of a tiny model
    and its class activation maps; the last line is the path of the workspace's HTML report.
    """
    import shutil

    from fusekit import api, render
    from fusekit.build import demo_recipe_path, render_build, run_build
    from fusekit.workspace import Workspace

    root = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="fusekit-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    echo(f"demo corpus: generating FER-2013 CSV, CK+ sequences and KDEF folders under {root / 'corpus'}")
    corpus_root = root / "corpus"
    build_corpus(corpus_root)
    workspace = Workspace(root / "workspace")
    echo(f"workspace: {workspace.root}")

    from fusekit.demo.standin import demo_crawl

    echo("")
    demo_crawl(workspace, root / "crawl", echo=echo, faces=True)

    recipe = corpus_root / "recipe.yaml"
    shutil.copyfile(demo_recipe_path(), recipe)
    echo("")
    echo(f"$ fusekit build {recipe}")
    report = run_build(workspace, recipe, echo=echo)
    yield render_build(report)
    yield ""
    yield "$ fusekit status"
    yield render.status_report(api.status(workspace), str(workspace.root), api.stage_status(workspace))
    if train:
        from fusekit.train import run_demo

        yield ""
        yield f"$ fusekit train --data {workspace.root / 'dataset'} --model tiny --epochs 3  (then evaluate)"
        yield from run_demo(workspace, epochs=3, echo=None)
        from fusekit.explain import ExplainConfig, render_explain

        yield ""
        yield "$ fusekit explain --per-class 4  (the run just trained)"
        yield render_explain(api.explain(workspace, ExplainConfig(per_class=4)))
    yield ""
    yield f"workspace: {workspace.root}"
    yield f"shards: {workspace.root / 'dataset' / 'data'}"
    yield f"look at it again with: fusekit --workspace {workspace.root} status"
    yield f"report: {api.report(workspace)}"
