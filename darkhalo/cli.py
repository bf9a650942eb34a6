"""The ``darkhalo`` command line.

Every command runs inside one error boundary (``Boundary``): a failure that the user can cause ends in a line or
two on stderr naming the cause and what to do, with no traceback unless ``darkhalo --debug`` (or DARKHALO_DEBUG=1).
Exit codes (darkhalo.errors): 0 success; 1 a contract or audit failure (a lesson failed); 2 unusable input or
environment (a bad spec, a missing or unreadable file, a full or read-only disk, no Java, a malformed or unreachable
Spark master, a stage run out of order); 3 a run folder that is incomplete or inconsistent (``audit``); 70 a bug in
darkhalo (an unexpected exception: run again with --debug and report the traceback).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from darkhalo import __version__, layout
from darkhalo.errors import (
    DEBUG_ENV,
    EXIT_BUG,
    EXIT_FAILED,
    EXIT_UNUSABLE,
    UserError,
    describe_os_error,
    naming,
    reported_os_error,
)
from darkhalo.spec import GenerationSpec, SpecError, load_spec
from darkhalo.stages import STAGE_NAMES, STAGES


def _input_errors() -> tuple[type[Exception], ...]:
    """The modules' exception classes that mean unusable input (imported once a command has failed)."""
    from darkhalo.grading import GradesError
    from darkhalo.lensing.psfex import PsfexError
    from darkhalo.real_inputs import RealInputError
    from darkhalo.removal import OutsideRunFolder
    from darkhalo.runner import RunError
    from darkhalo.surveys.cutout_fits import CutoutFileError
    from darkhalo.surveys.http_cutouts import CutoutFetchError
    from darkhalo.surveys.legacy import CatalogError
    from darkhalo.surveys.npz_cutouts import NpzCutoutError
    from darkhalo.tables import ParquetFileError
    from darkhalo.training.checkpoint import CheckpointError
    from darkhalo.training.distributed import DistributedTrainingError

    return (
        SpecError,
        RunError,
        RealInputError,
        NpzCutoutError,
        CutoutFileError,
        CutoutFetchError,
        CatalogError,
        PsfexError,
        ParquetFileError,
        CheckpointError,
        DistributedTrainingError,
        GradesError,
        OutsideRunFolder,
    )


def explain(exc: Exception) -> tuple[int, str, str]:
    """A failed command's exit code, label and message (one or two lines) for ``exc``."""
    from darkhalo.runner import StageFailed

    if isinstance(exc, StageFailed):
        return EXIT_FAILED, "contract failure", str(exc)
    if isinstance(exc, OSError):
        return EXIT_UNUSABLE, "error", describe_os_error(exc)
    if isinstance(exc, UserError):
        return exc.exit_code, "error", str(exc)
    if isinstance(exc, _input_errors()):
        return EXIT_UNUSABLE, "error", str(exc)
    reported = reported_os_error(str(exc)) if type(exc).__module__.startswith(("py4j", "pyspark")) else None
    if reported is not None:
        return EXIT_UNUSABLE, "error", f"in a Spark task: {describe_os_error(reported)}"
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return (
        EXIT_BUG,
        "bug",
        f"{type(exc).__name__}: {first[:300]}\nthis is a bug in darkhalo: run again with --debug for the traceback, "
        "and report it",
    )


class Boundary(TyperGroup):
    """The one error boundary around every command: an exception becomes its exit code and a line or two on stderr
    (``explain``), with the traceback before them only under ``--debug``."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # click's own exits and usage errors
            raise
        except Exception as exc:
            code, label, message = explain(exc)
            if ctx.params.get("debug"):
                traceback.print_exception(exc)
            err.print(f"[red]{label}:[/] {escape(message)}", highlight=False)
            raise typer.Exit(code) from None


class _Stdout:
    """sys.stdout as found at each write (test runners swap it): an OSError of a write names ``<stdout>``, and the
    process's standard output is pointed at /dev/null so that the exit does not fail again on the unwritten rest."""

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.stdout, name)

    def _guarded(self, call: Callable[[Any], Any]) -> Any:
        try:
            with naming("<stdout>"):
                return call(sys.stdout)
        except OSError:
            with suppress(OSError, ValueError):  # ValueError: no file descriptor behind it (a test runner's buffer)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise

    def write(self, text: str) -> int:
        return self._guarded(lambda stream: stream.write(text))

    def flush(self) -> None:
        self._guarded(lambda stream: stream.flush())


app = typer.Typer(
    name="darkhalo",
    cls=Boundary,
    help="Strong-lens finder for the DESI Legacy Imaging Surveys: run, audit and inspect generations. "
    "Exit codes: 0 ok, 1 a contract or audit failure, 2 unusable input or environment, 3 an incomplete or "
    "inconsistent run folder, 70 a bug (see it with --debug).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
spec_app = typer.Typer(help="Check and show generation specs.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")
survey_app = typer.Typer(help="Make survey data without running a generation.", no_args_is_help=True)
app.add_typer(survey_app, name="survey")
grades_app = typer.Typer(help="Bring a grading round's grades back into a run.", no_args_is_help=True)
app.add_typer(grades_app, name="grades")

out = Console(file=_Stdout(), soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SpecPath = Annotated[Path, typer.Argument(help="generation spec (YAML)", show_default=False)]


def _load(path: Path) -> GenerationSpec:
    """A command's spec; a bad one is a SpecError, which the boundary turns into exit 2."""
    return load_spec(path)


def _print_forecast(spec: GenerationSpec, console: Console) -> None:
    """The pre-flight's forecast of the test split and the FPR targets it will resolve, or why there is none."""
    from darkhalo.audit.preflight import forecast_test_split

    try:
        line = forecast_test_split(spec).summary()
    except (OSError, ValueError) as exc:
        line = f"test split forecast: unavailable ({exc})"
    console.print(f"  {escape(line)}", highlight=False)


@app.command()
def run(
    spec: SpecPath,
    out_dir: Annotated[Path, typer.Option("--out", help="folder that holds runs/<generation>")] = Path("runs"),
    start: Annotated[str | None, typer.Option("--from", help=f"first stage ({', '.join(STAGE_NAMES)})")] = None,
    stop: Annotated[str | None, typer.Option("--to", help="last stage")] = None,
    force: Annotated[bool, typer.Option("--force", help="re-run stages even when up to date")] = False,
) -> None:
    """Run a generation's stages in order; stages whose lineage matches are skipped."""
    from darkhalo.runner import run_generation

    generation = _load(spec)
    _print_forecast(generation, err)
    run_generation(generation, out_dir, start=start, stop=stop, force=force, console=err)
    run_dir = out_dir / generation.generation
    out.print(f"run folder: {escape(str(run_dir))}", highlight=False)
    shown = (
        ("report", run_dir / "evaluate" / "report.html"),
        ("search", run_dir / "scan" / "report.md"),
        ("grading page", run_dir / "scan" / layout.GRADE_PAGE),
        ("audit", run_dir / "audit" / "audit.md"),
    )
    for label, path in shown:
        if path.is_file():
            out.print(f"{label}: {escape(str(path))}", highlight=False)


@app.command()
def audit(
    target: Annotated[Path, typer.Argument(help="a generation spec (YAML) or a run folder", show_default=False)],
    spec_path: Annotated[
        Path | None, typer.Option("--spec", help="judge a run folder against this spec instead of its spec.yaml")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the audit as JSON here")] = None,
) -> None:
    """Judge a spec (pre-flight) or a run folder against every applicable invariant.

    A run folder's chain is checked first: every stage installed and not failed since, every file as its
    lineage.json records, each stage made for the folder's spec.yaml and from the upstream outputs installed.
    Its artifacts are then judged again with the spec's current thresholds and waivers (its frozen spec.yaml,
    or ``--spec``). Prints the table and the chain; for a run folder writes audit.json and audit.md into it.
    Exit 1 when a lesson fails (unless waived), whatever the chain: the artifacts as they are fail it; else 3
    when the run folder is incomplete (a stage missing or failed) or inconsistent (a digest that disagrees),
    since a folder passes only whole; 0 for a complete, consistent folder or a spec whose lessons pass;
    2 on unusable input.
    """
    from darkhalo.audit.audit import audit_run, audit_spec, write_audit
    from data_contracts.findings import TABLE_COLUMNS
    from data_contracts.lessons import LESSONS

    if target.is_dir() and not (target / "spec.yaml").is_file():
        raise UserError(f"{target}: not a run folder (no spec.yaml)")
    try:  # an artifact that cannot be read as its contract says (a garbled parquet part) is unusable input
        if target.is_dir():
            result = audit_run(target, _load(spec_path) if spec_path else None)
            paths = write_audit(result, target)
        else:
            result = audit_spec(_load(target), str(target))
            paths = ()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    table = Table(*TABLE_COLUMNS, title=f"audit of {result.generation}")
    colours = {"pass": "green", "FAIL": "red", "waived": "yellow"}
    for f in result.findings:
        *cells, verdict, detail = f.table_row()
        table.add_row(*map(escape, cells), f"[{colours[f.verdict]}]{verdict}[/]", escape(detail))
    for lesson in result.not_evaluated:
        table.add_row(lesson, LESSONS[lesson].title, "", "", "[dim]not evaluated[/]", "no artifact to judge yet")
    out.print(table)
    if result.chain is not None:
        chain = Table("stage", "status", "detail", title=f"chain of {escape(str(target))}")
        for check in result.chain:
            colour = "green" if check.status == "ok" else "red"
            chain.add_row(check.stage, f"[{colour}]{check.status}[/]", escape(check.detail()))
        out.print(chain)
    if json_path is not None:
        from darkhalo.artifacts import write_json

        write_json(json_path, result.to_dict())
    for path in paths:
        out.print(f"wrote {escape(str(path))}", highlight=False)
    expected = ", ".join(result.expected_failures) or "none"
    out.print(f"failed: {', '.join(result.failed) or 'none'} (the spec expects: {expected})")
    out.print(f"verdict: {result.verdict} (chain: {escape(result.chain_summary())})", highlight=False)
    if not result.passed:
        raise typer.Exit(result.exit_code)


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="the baseline spec (e.g. Gen 1's recipe)", show_default=False)],
    corrected: Annotated[Path, typer.Argument(help="the corrected spec; its test split is the shared test set")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder that holds the runs")] = Path("runs"),
) -> None:
    """Train both generations and evaluate both models on the corrected one's realistic test set."""
    from darkhalo.compare import compare as run_compare

    specs = _load(baseline), _load(corrected)
    _print_forecast(specs[1], err)
    folder = run_compare(*specs, out_dir, err)
    out.out((folder / "compare.md").read_text(), highlight=False)
    out.print(f"comparison: {escape(str(folder))}", highlight=False)


@app.command()
def stages() -> None:
    """List the stages of a generation in the order they run."""
    table = Table("stage", "reads", "depends on spec sections", "what it makes")
    for stage in STAGES:
        table.add_row(stage.name, ", ".join(stage.inputs) or "-", ", ".join(stage.sections), stage.description)
    out.print(table)


@spec_app.command("check")
def spec_check(specs: Annotated[list[Path], typer.Argument(help="spec files", show_default=False)]) -> None:
    """Validate spec files; prints a one-line summary of each, exit 2 if any is invalid."""
    failed = False
    for path in specs:
        try:
            generation = load_spec(path)
        except SpecError as exc:
            err.print(f"[red]invalid:[/] {escape(str(exc))}", highlight=False)
            failed = True
            continue
        summary = (
            f"{path}: generation {generation.generation}, {generation.grid.n_configs} grid configs, "
            f"controls {generation.controls.mode}, PSF {generation.psf.model}, {generation.train.arch}"
        )
        out.print(f"[green]ok[/] {escape(summary)}", highlight=False)
        _print_forecast(generation, out)
    if failed:
        raise typer.Exit(EXIT_UNUSABLE)


@spec_app.command("show")
def spec_show(spec: SpecPath) -> None:
    """Print a spec with every default filled in (as frozen into a run)."""
    out.out(_load(spec).to_yaml(), end="", highlight=False)


@survey_app.command("mock")
def survey_mock(
    n: Annotated[int, typer.Option("--n", help="catalog rows", min=1)],
    seed: Annotated[int, typer.Option("--seed", help="RNG seed", min=0)],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for catalog/ and cutouts/")],
    cutouts: Annotated[int, typer.Option("--cutouts", help="cutout FITS files of the first galaxies", min=0)] = 0,
    size: Annotated[int, typer.Option("--size", help="cutout side (pixels)", min=8)] = 64,
) -> None:
    """Write a mock catalog (catalog/part-*.parquet) and, optionally, cutout FITS of its first galaxies."""
    import pandas as pd

    from darkhalo.spec import MockSurvey
    from darkhalo.surveys.cutout_fits import cutout_name, write_cutout_fits
    from darkhalo.surveys.mock import mock_catalog, n_blocks, write_block
    from darkhalo.surveys.mock_cutouts import MockCutoutProvider

    survey = MockSurvey(kind="mock", n_objects=n)
    for block in range(n_blocks(survey)):
        write_block(survey, seed, out_dir / "catalog", block)
    out.print(f"catalog: {n:,} rows in {escape(str(out_dir / 'catalog'))}", highlight=False)
    if not cutouts:
        return
    hosts = []
    for block in range(n_blocks(survey)):
        frame = mock_catalog(survey, seed, block)
        hosts.append(frame[frame["TYPE"] != "PSF"].head(cutouts - sum(map(len, hosts))))
        if sum(map(len, hosts)) >= cutouts:
            break
    chosen = pd.concat(hosts)
    stamps = MockCutoutProvider(survey, seed).cutouts(chosen, size)
    for i in range(len(chosen)):
        row = chosen.iloc[i]
        write_cutout_fits(
            out_dir / "cutouts" / cutout_name(row), stamps.images[i], stamps.invvar[i], ra=row["RA"], dec=row["DEC"]
        )
    out.print(f"cutouts: {len(chosen)} FITS files in {escape(str(out_dir / 'cutouts'))}", highlight=False)


@survey_app.command("cutouts-from-npz")
def survey_cutouts_from_npz(
    npz_dir: Annotated[Path, typer.Argument(help="folder of real .npz cutouts (101x101x3 grz + meta_*)")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for cutouts/*.fits and hosts.parquet")],
    psfex_dir: Annotated[Path, typer.Option("--psfex-dir", help="PSFEx files giving each band's PSFSIZE")],
    size: Annotated[int, typer.Option("--size", help="central stamp kept (pixels)", min=8)] = 64,
) -> None:
    """Convert real .npz cutouts to cutout-service FITS (<RELEASE>_<BRICKID>_<OBJID>.fits) and catalog rows."""
    from darkhalo.surveys.npz_cutouts import convert_npz_folder, psfex_psfsize

    _, written = convert_npz_folder(npz_dir, out_dir, psfex_psfsize(psfex_dir), size)
    _print_converted(len(written), out_dir)


@survey_app.command("cutouts-from-real")
def survey_cutouts_from_real(
    source: Annotated[Path, typer.Argument(help="a `darkhalo score` input (YAML description or cutout folder)")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for cutouts/*.fits and hosts.parquet")],
    psfex_dir: Annotated[
        Path | None, typer.Option("--psfex-dir", help="PSFEx files giving each band's PSFSIZE; default the survey's")
    ] = None,
    size: Annotated[int, typer.Option("--size", help="central stamp kept (pixels)", min=8)] = 64,
) -> None:
    """Resample real images onto 0.262"/pix and write them as cutout-service FITS with placeholder catalog rows."""
    from darkhalo.surveys.npz_cutouts import SURVEY_PSFSIZE, convert_real_input, psfex_psfsize

    psf_fwhm = psfex_psfsize(psfex_dir) if psfex_dir else SURVEY_PSFSIZE
    _, written, refused = convert_real_input(source, out_dir, psf_fwhm, size)
    for reason in refused:
        err.print(f"refused: {escape(reason)}", highlight=False)
    _print_converted(len(written), out_dir)


def _print_converted(n_written: int, out_dir: Path) -> None:
    """The line that a conversion to cutout-service FITS ends with: how many files, and where."""
    where = f"{out_dir / 'cutouts'}; catalog rows: {out_dir / 'hosts.parquet'}"
    out.print(f"cutouts: {n_written} FITS files in {escape(where)}", highlight=False)


@survey_app.command("compare-real")
def survey_compare_real(
    real_dir: Annotated[Path, typer.Argument(help="real files: cutouts/*.npz and psf/psfex/*.fits")],
    seed: Annotated[int, typer.Option("--seed", help="mock seed", min=0)] = 5,
    n_hosts: Annotated[int, typer.Option("--hosts", help="mock galaxies in the background and PSF table", min=1)] = 16,
    n_lrg_hosts: Annotated[
        int, typer.Option("--lrg-hosts", help="mock LRG-like hosts beside the real hosts (1000 resolve FPR 1 %)", min=1)
    ] = 1000,
    spec_path: Annotated[
        Path | None, typer.Option("--spec", help="use this spec's mock survey and selection; default the plain mock")
    ] = None,
    hosts_inputs: Annotated[
        list[Path] | None, typer.Option("--hosts-input", help="real host cutouts (YAML, as `darkhalo score` reads)")
    ] = None,
    model: Annotated[Path | None, typer.Option("--model", help="a model.pt or run folder: score both hosts")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for compare_real.md, .json and .png")] = None,
) -> None:
    """Print the mock survey beside the real files as Markdown: background sigma, PSF encircled energy, and
    what the gap is made of (sky correlation, host profiles, colour gradients, neighbours, model scores)."""
    from darkhalo.real_inputs import RealInputError, read_input
    from darkhalo.scoring import target_of
    from darkhalo.spec import MockSurvey, V3ColorRelaxed
    from darkhalo.surveys.realism_report import compare_real, report_markdown, write_report

    survey, selection = MockSurvey(kind="mock", n_objects=20_000), V3ColorRelaxed(variant="v3_color_relaxed")
    if spec_path is not None:
        spec = _load(spec_path)
        if not isinstance(spec.survey, MockSurvey):
            raise UserError(f"{spec_path}: survey.kind is {spec.survey.kind!r}, compare-real needs a mock")
        survey, selection = spec.survey, spec.selection
    host_sets = {path.parent.name: read_input(path) for path in hosts_inputs or []}
    if len(host_sets) < len(hosts_inputs or []):
        raise RealInputError("--hosts-input: two inputs in one folder (a set is named by its folder)")
    target = None if model is None else target_of(model, None, None)
    result = compare_real(real_dir, survey, seed, n_hosts, n_lrg_hosts, selection.model_dump(), host_sets, target)
    text = report_markdown(result)
    if out_dir is not None:
        write_report(out_dir, result)
    out.out(text, end="", highlight=False)


@app.command()
def score(
    model_or_run: Annotated[Path, typer.Argument(help="a model.pt file or a run folder", show_default=False)],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="input descriptions (YAML: npz, fits_cubes or cutout_folder) or folders of cutout FITS",
            show_default=False,
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for scores.parquet, refused.csv, gallery.html")],
    size: Annotated[int | None, typer.Option("--size", help="stamp side (pixels); default the run's", min=8)] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda; default the run's")] = None,
) -> None:
    """Score real cutouts with a trained model: resampled to its pixel scale, centred, cut and ranked."""
    from darkhalo.real_inputs import read_input
    from darkhalo.scoring import target_of, write_scores

    target = target_of(model_or_run, size, device)
    scores, refused = write_scores(out_dir, target, [read_input(path) for path in inputs])
    for row in refused.itertuples():
        err.print(escape(f"refused: {row.input} [{row.index}] {row.name}: {row.reason}"), highlight=False)
    written = f"{out_dir / 'scores.parquet'}, {out_dir / 'gallery.html'}"
    out.print(f"scored {len(scores)}, refused {len(refused)}: {escape(written)}", highlight=False)


@grades_app.command("import")
def grades_import(
    csv_path: Annotated[Path, typer.Argument(help="grades.csv exported from scan/grade.html", show_default=False)],
    run_dir: Annotated[Path, typer.Argument(help="the run folder that was scanned", show_default=False)],
) -> None:
    """Check a grading page's export against the run's candidates, write grades/ and print the graded purity."""
    from darkhalo.grading import import_grades

    result = import_grades(csv_path, run_dir)
    table = Table("grade", "candidates", "share", title=escape(f"grades of {run_dir}: {result.n_graded} graded"))
    for grade, count in result.counts.items():
        table.add_row(grade, str(count), f"{count / result.n_graded:.3f}")
    out.print(table)
    low, high = result.purity_interval
    out.print(
        f"graded purity (A or B): {result.n_lens_grades}/{result.n_graded} = {result.purity:.3f} "
        f"[{low:.3f}, {high:.3f}] (95 %, exact)",
        highlight=False,
    )
    if result.sky_lenses_graded is not None:
        out.print(
            f"mock sky truth: {result.sky_lenses_graded_lens} of {result.n_lens_grades} graded A or B are sky lenses; "
            f"{result.sky_lenses_graded_lens} of {result.sky_lenses_graded} graded sky lenses were graded A or B",
            highlight=False,
        )
    out.print(f"wrote {escape(str(run_dir / layout.GRADES_DIR))}", highlight=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"darkhalo {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", envvar=DEBUG_ENV, help="print the traceback of a failure (read by Boundary)")
    ] = False,
) -> None:
    """darkhalo: every stage behind a data contract, the lessons of Gen 1 enforced as invariants."""


def main() -> None:
    """Console-script entry point."""
    app()
