"""`fusekit build RECIPE.yaml`: every stage in order from one recipe file, doing only what changed.

A recipe names the sources to ingest, an optional crawl, and the faces, dedupe and balance settings::

    seed: 0
    sources:
      - {name: fer2013, source: data/fer2013, variant: csv}
      - {name: ckplus, source: data/CK+}
    crawl: {emotions: [disgust, fear], engine: bing, max_per_keyword: 100}   # optional
    faces: {}                                                                # FacesConfig settings (optional)
    dedupe: {}                                                               # DedupeConfig settings, or false
    balance: {strategy: median, classes: 7, split: 80/10/10}

Relative paths are relative to the recipe's folder (or ``base``). Each step has a fingerprint: its settings, the
files it reads (a source folder's listing, or the workspace tables it reads as (file, size, mtime)) and the files
it wrote last time. A step whose fingerprint is unchanged is skipped, so a rerun with nothing changed does nothing,
and a changed source reruns its ingest and every step after it.

The build is an ordered list of ``Step`` values (``steps``), each naming its stage, the tables it reads and the
tables it writes, run by one loop; the stages never call each other (the ingest and crawl steps do not run faces:
the faces step does, with the recipe's settings). A stage is imported when its step runs, so a recipe that needs a
stage this install lacks fails with one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

from fusekit import __version__, locks
from fusekit.errors import ConfigError, UserError
from fusekit.sources.base import PATH_OPTIONS
from fusekit.workspace import Workspace, digest, write_json_atomic
from fusekit.workspace import tree_listing as workspace_tree_listing

RECIPE_KEYS = ("name", "seed", "sources", "crawl", "faces", "dedupe", "balance", "description", "runner", "address")
SOURCE_KEYS = ("name", "source", "variant", "options", "labels")
STATE_FILE = ".build-state.json"


@dataclass
class StepResult:
    name: str
    ran: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class BuildReport:
    recipe: Path
    workspace: Path
    steps: list[StepResult] = field(default_factory=list)
    balance: Any = None  # BalanceReport when balance ran
    summary: list[str] = field(default_factory=list)  # the dataset's summary lines (also when balance was skipped)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ran(self) -> list[str]:
        return [s.name for s in self.steps if s.ran]

    def render(self) -> str:
        return render_build(self)


@dataclass(frozen=True)
class SourceEntry:
    name: str
    source: Path
    variant: str | None
    options: dict[str, Any]


@dataclass(frozen=True)
class Recipe:
    path: Path
    text: str
    seed: int
    sources: tuple[SourceEntry, ...]
    crawl: dict[str, Any] | None
    faces: dict[str, Any]
    dedupe: dict[str, Any] | None  # None: no dedupe step
    balance: dict[str, Any]
    runner: str = "local"  # where the part-wise work of ingest and faces runs: local processes or "ray"
    address: str | None = None  # the Ray cluster (runner: ray)


def demo_recipe_path() -> Path:
    """The recipe bundled for `fusekit demo` (its sources are relative to the demo corpus folder)."""
    return Path(str(resources.files("fusekit") / "demo_recipe.yaml"))


def load_recipe(path: Path, base: Path | None = None) -> Recipe:
    """Parse and check a recipe; every mistake is a one-line ConfigError naming the recipe."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    text = path.read_text(encoding="utf-8")
    where = f"recipe {path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with sources:, balance: ... at the top")
    unknown = sorted(set(data) - set(RECIPE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(RECIPE_KEYS)}")
    base = Path(base) if base is not None else path.resolve().parent
    sources = []
    for i, entry in enumerate(data.get("sources") or []):
        if not isinstance(entry, dict) or "name" not in entry or "source" not in entry:
            raise ConfigError(f"{where}: sources[{i}] needs name: and source:")
        bad = sorted(set(entry) - set(SOURCE_KEYS))
        if bad:
            raise ConfigError(f"{where}: sources[{i}] has unknown key {bad[0]!r}; valid: {', '.join(SOURCE_KEYS)}")
        options = dict(entry.get("options") or {})
        if entry.get("labels"):
            options["labels"] = entry["labels"]
        for key in PATH_OPTIONS:
            if key in options:
                options[key] = str(_resolve(base, options[key]))
        sources.append(SourceEntry(str(entry["name"]), _resolve(base, entry["source"]),
                                   str(entry["variant"]) if entry.get("variant") else None, options))
    crawl = data.get("crawl")
    if crawl is not None and not isinstance(crawl, dict):
        raise ConfigError(f"{where}: crawl: takes settings (emotions, engine, max_per_keyword, ...)")
    if crawl and crawl.get("keywords"):
        crawl = {**crawl, "keywords": str(_resolve(base, crawl["keywords"]))}
    if not sources and not crawl:
        raise ConfigError(f"{where}: lists no sources and no crawl; nothing to build")
    dedupe = data.get("dedupe", {})
    if dedupe is False:
        dedupe = None
    elif dedupe is True or dedupe is None:
        dedupe = {}
    balance = dict(data.get("balance") or {})
    seed = int(data.get("seed", balance.get("seed", 0)))
    balance.setdefault("seed", seed)
    runner = str(data.get("runner") or "local")
    from fusekit.distribute_ray import check_runner

    check_runner(runner, f"{where}: runner:")
    return Recipe(path.resolve(), text, seed, tuple(sources), crawl, dict(data.get("faces") or {}), dedupe, balance,
                  runner, str(data["address"]) if data.get("address") else None)


def _resolve(base: Path, value: Any) -> Path:
    p = Path(os.path.expanduser(str(value)))
    return (p if p.is_absolute() else base / p).resolve()


# -- fingerprints ----------------------------------------------------------------------------------------------------
def tree_listing(path: Path) -> str:
    """A digest of every file under ``path`` (relative name, size, mtime): changes when any file does."""
    return digest(workspace_tree_listing(path))


def table_listing(workspace: Workspace, table: str, units: list[str] | None = None) -> str:
    return digest(workspace.listing(table, units, pattern="*"))


def _missing(step: str, module: str, exc: Exception) -> UserError:
    return UserError(f"the recipe needs the {step} stage, which this fusekit does not have yet ({module}: "
                     f"{exc}); remove `{step}:` from the recipe or install a fusekit that has it")


# Each stage's entry points, imported when its step runs (the faces stage loads TensorFlow; the crawl, requests).
def _faces_stage() -> tuple[Any, Any]:
    try:
        from fusekit.faces import FacesConfig, run_faces
    except ImportError as exc:
        raise _missing("faces", "fusekit.faces", exc) from None
    return FacesConfig, run_faces


def _crawl_stage() -> tuple[Any, Any]:
    try:
        from fusekit.crawl import CrawlConfig, run_crawl
    except ImportError as exc:
        raise _missing("crawl", "fusekit.crawl", exc) from None
    return CrawlConfig, run_crawl


def _dedupe_stage() -> tuple[Any, Any]:
    try:
        from fusekit.dedupe import DedupeConfig, run_dedupe
    except ImportError as exc:
        raise _missing("dedupe", "fusekit.dedupe", exc) from None
    return DedupeConfig, run_dedupe


def _config(cls: Any, settings: dict[str, Any], where: str) -> Any:
    """The stage's config from its recipe block, by the same ``from_mapping`` its command's flags use: a mistake
    names the recipe and the key."""
    from fusekit.config import from_mapping

    return from_mapping(cls, settings, where)


# -- the build -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One step of a build: the stage it runs, the tables it reads and writes, and what its fingerprint holds.

    ``inputs`` is what the step depends on besides its code (settings, a source folder's listing, the listings of
    the tables it reads); ``outputs`` lists what it wrote (a deleted or changed output reruns it); ``run`` does it
    and returns the lines to print."""

    name: str
    stage: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    inputs: Callable[[], Any]
    outputs: Callable[[], Any]
    run: Callable[[], str]


class _Runner:
    def __init__(self, workspace: Workspace, report: BuildReport, force: bool) -> None:
        self.workspace = workspace
        self.report = report
        self.force = force
        self.state_path = workspace.root / STATE_FILE
        self.state: dict[str, Any] = {}
        if self.state_path.is_file():
            self.state = json.loads(self.state_path.read_text(encoding="utf-8"))

    def step(self, step: Step, echo: Callable[[str], None]) -> None:
        fingerprint = digest({"inputs": step.inputs(), "fusekit": __version__})
        previous = self.state.get(step.name, {})
        if not self.force and previous.get("inputs") == fingerprint and previous.get("outputs") == digest(step.outputs()):
            self.report.steps.append(StepResult(step.name, False, "unchanged"))
            echo(f"= {step.name}: unchanged, skipped")
            return
        echo(f"> {step.name}")
        started = time.perf_counter()
        detail = step.run()
        seconds = time.perf_counter() - started
        self.state[step.name] = {"inputs": fingerprint, "outputs": digest(step.outputs())}
        write_json_atomic(self.state, self.state_path)
        self.report.steps.append(StepResult(step.name, True, detail, seconds))
        if detail:
            echo(detail)


def run_build(workspace: Workspace, recipe_path: Path, *, base: Path | None = None, force: bool = False,
              echo: Callable[[str], None] | None = None, runner: str | None = None,
              address: str | None = None) -> BuildReport:
    """Ingest each listed source, crawl if listed, detect faces, dedupe and balance, skipping unchanged steps.
    ``runner``/``address`` (the command's ``--runner``/``--address``) win over the recipe's keys."""
    from fusekit.balance import BalanceConfig
    from fusekit.distribute_ray import check_runner

    echo = echo or (lambda line: None)
    recipe = load_recipe(recipe_path, base)
    if runner is not None or address is not None:
        recipe = dataclasses.replace(recipe, runner=check_runner(runner or recipe.runner),
                                     address=address or recipe.address)
    balance_config = BalanceConfig.from_mapping(recipe.balance, where=f"recipe {recipe.path}: balance")
    balance_config = dataclasses.replace(balance_config, recipe_text=recipe.text)
    # The whole build holds the workspace lock exclusive (its ingests and crawl take their unit locks inside it).
    with locks.writing_all(workspace, f"building {recipe.path.name}"):
        return _build(workspace, recipe, balance_config, force, echo)


def _build(workspace: Workspace, recipe: Recipe, balance_config: Any, force: bool,
           echo: Callable[[str], None]) -> BuildReport:
    from fusekit.balance import status_lines, summary_lines

    started = time.perf_counter()
    workspace.ensure()
    report = BuildReport(recipe.path, workspace.root)
    runner = _Runner(workspace, report, force)
    for entry in recipe.sources:
        if not entry.source.exists():
            raise ConfigError(f"recipe {recipe.path}: source {entry.source} for {entry.name} does not exist")
    for step in steps(workspace, recipe, balance_config, runner.state, report):
        runner.step(step, echo)
    if recipe.dedupe is None and "all" in workspace.units("decisions"):
        report.warnings.append("the recipe has `dedupe: false` but the workspace holds decisions from an earlier "
                               "dedupe run; balance uses them")
    listed = {runner.state.get("units", {}).get(_ingest_key(entry)) for entry in recipe.sources}
    extra = [u for u in workspace.units("images") if u not in listed and not u.startswith("crawl--")]
    if extra:
        report.warnings.append(f"the workspace also holds {', '.join(extra)}, which the recipe does not list; they "
                               f"are in the dataset too (`fusekit remove NAME --variant V` takes them out)")
    report.summary = summary_lines(report.balance) if report.balance is not None else status_lines(workspace)
    report.seconds = time.perf_counter() - started
    return report


def _ingest_key(entry: SourceEntry) -> str:
    return f"ingest {entry.name}" + (f"/{entry.variant}" if entry.variant else "")


def steps(workspace: Workspace, recipe: Recipe, balance_config: Any, state: dict[str, Any],
          report: BuildReport) -> list[Step]:
    """The recipe's steps in order: an ingest per source, the crawl, faces, dedupe (unless ``dedupe: false``),
    balance. ``state`` is the build state (where an ingest step records the unit it wrote)."""
    listing = partial(table_listing, workspace)
    units = state.setdefault("units", {})
    plan = [_ingest_step(workspace, entry, units, _runner(recipe)) for entry in recipe.sources]
    if recipe.crawl is not None:
        plan.append(_crawl_step(workspace, recipe.crawl, f"recipe {recipe.path}: crawl"))

    def faces() -> str:
        FacesConfig, run_faces = _faces_stage()
        return _describe(run_faces(workspace, _config(FacesConfig, {**recipe.faces, **_runner(recipe)},
                                                      f"recipe {recipe.path}: faces")))

    plan.append(Step("faces", "faces", ("images",), ("faces", "face_rejects"),
                     lambda: {"settings": recipe.faces, "images": listing("images")},
                     lambda: [listing("faces"), listing("face_rejects")], faces))
    if recipe.dedupe is not None:
        settings = recipe.dedupe

        def dedupe() -> str:
            DedupeConfig, run_dedupe = _dedupe_stage()
            return _describe(run_dedupe(workspace, _config(DedupeConfig, settings, f"recipe {recipe.path}: dedupe")))

        # decisions are the machine's alone (a person's verdicts are applied by balance), so faces are the only input
        plan.append(Step("dedupe", "dedupe", ("faces",), ("decisions",),
                         lambda: {"settings": settings, "faces": listing("faces")},
                         lambda: listing("decisions"), dedupe))

    def balance() -> str:
        from fusekit.balance import run_balance

        report.balance = run_balance(workspace, balance_config)
        return ""

    def balance_inputs() -> Any:
        from fusekit.balance.stage import inputs_fingerprint

        return {"settings": balance_config.settings(), "recipe": recipe.text, "tables": inputs_fingerprint(workspace)}

    out = workspace.root / "dataset"
    plan.append(Step("balance", "balance", ("faces", "decisions", "reviews"), ("dataset",), balance_inputs,
                     lambda: tree_listing(out) if out.exists() else None, balance))
    return plan


def _runner(recipe: Recipe) -> dict[str, Any]:
    """The settings that send a stage's parts to Ray (none for the local runner: its configs' defaults)."""
    return {} if recipe.runner == "local" else {"runner": recipe.runner, "address": recipe.address}


def _ingest_step(workspace: Workspace, entry: SourceEntry, units: dict[str, str], runner: dict[str, Any]) -> Step:
    from fusekit import api

    key = _ingest_key(entry)

    def run() -> str:
        from fusekit.config import IngestConfig

        result = api.ingest(workspace, IngestConfig(name=entry.name, source=entry.source, variant=entry.variant,
                                                    options=entry.options, faces=False, **runner))
        units[key] = result.unit
        return result.render()

    def outputs() -> Any:
        unit = units.get(key)
        return [unit, table_listing(workspace, "images", [unit]) if unit else None]

    return Step(key, "ingest", (), ("images", "rejects"),
                lambda: {"name": entry.name, "source": str(entry.source), "variant": entry.variant,
                         "options": entry.options, "listing": tree_listing(entry.source)}, outputs, run)


def _crawl_step(workspace: Workspace, crawl: dict[str, Any], where: str) -> Step:
    settings = {**crawl}
    # A recipe may list several emotions; the crawl stage takes one (or "all") per run.
    emotions = settings.pop("emotions", None)
    emotions = [emotions] if isinstance(emotions, str) else list(emotions or [settings.pop("emotion", "all")])

    def run() -> str:
        CrawlConfig, run_crawl = _crawl_stage()  # the crawl stage alone: the faces step follows with its settings
        lines = [_describe(run_crawl(workspace, _config(CrawlConfig, {**settings, "emotion": e}, where)))
                 for e in emotions]
        return "\n".join(line for line in lines if line)

    # (crawl reads `images` too, for the pictures it already has: its own output, so not a fingerprint input)
    return Step("crawl", "crawl", ("images",), ("images", "rejects"), lambda: {"settings": settings,
                                                                               "emotions": emotions},
                lambda: table_listing(workspace, "images", [u for u in workspace.units("images")
                                                            if u.startswith("crawl--")]), run)


def _describe(result: Any) -> str:
    """A stage report's own text (``render()``), or its counts for a report that has none (a stand-in's)."""
    if result is None:
        return ""
    if callable(getattr(result, "render", None)):
        return str(result.render())
    fields = getattr(result, "__dataclass_fields__", {})
    counts = [f"{name.replace('_', ' ')} {getattr(result, name):,}" for name in fields
              if isinstance(getattr(result, name), int) and not isinstance(getattr(result, name), bool)]
    return f"{type(result).__name__}: " + ", ".join(counts) if counts else ""


def render_build(report: BuildReport) -> str:
    lines = [f"recipe {report.recipe} -> {report.workspace / 'dataset'}"]
    ran = [s for s in report.steps if s.ran]
    if not ran:
        lines.append("nothing changed: every step was skipped")
    else:
        lines.append("ran: " + ", ".join(f"{s.name} ({s.seconds:.1f} s)" for s in ran)
                     + (f"; skipped: {', '.join(s.name for s in report.steps if not s.ran)}"
                        if len(ran) < len(report.steps) else ""))
    lines += [f"warning: {w}" for w in report.warnings]
    lines += report.summary
    lines.append(f"build: {report.seconds:.1f} s")
    return "\n".join(lines)
