"""The ``darkhalo`` command line.

Exit codes: 0 success, 1 a contract or audit failure, 2 unusable input (a bad spec, a missing
file, a stage run out of order).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from darkhalo import __version__, layout
from darkhalo.spec import GenerationSpec, SpecError, load_spec
from darkhalo.stages import STAGE_NAMES, STAGES

app = typer.Typer(
    name="darkhalo",
    help="Strong-lens finder for the DESI Legacy Imaging Surveys: run, audit and inspect generations.",
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

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SpecPath = Annotated[Path, typer.Argument(help="generation spec (YAML)", show_default=False)]


def _load(path: Path) -> GenerationSpec:
    try:
        return load_spec(path)
    except SpecError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def _run_errors() -> Iterator[None]:
    """A contract failure exits 1, any other run error (missing or stale input) exits 2."""
    from darkhalo.runner import RunError, StageFailed

    try:
        yield
    except StageFailed as exc:
        err.print(f"[red]contract failure:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except RunError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _print_forecast(spec: GenerationSpec, console: Console) -> None:
    """The pre-flight's forecast of the test split and the FPR targets it will resolve, or why there is none."""
    from darkhalo.audit.preflight import forecast_test_split

    try:
        line = forecast_test_split(spec).summary()
    except (OSError, ValueError) as exc:
        line = f"test split forecast: unavailable ({exc})"
    console.print(f"  {line}", highlight=False)


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
    with _run_errors():
        run_generation(generation, out_dir, start=start, stop=stop, force=force, console=err)
    run_dir = out_dir / generation.generation
    out.print(f"run folder: {run_dir}")
    shown = (
        ("report", run_dir / "evaluate" / "report.html"),
        ("search", run_dir / "scan" / "report.md"),
        ("grading page", run_dir / "scan" / layout.GRADE_PAGE),
        ("audit", run_dir / "audit" / "audit.md"),
    )
    for label, path in shown:
        if path.is_file():
            out.print(f"{label}: {path}")


@app.command()
def audit(
    target: Annotated[Path, typer.Argument(help="a generation spec (YAML) or a run folder", show_default=False)],
    spec_path: Annotated[
        Path | None, typer.Option("--spec", help="judge a run folder against this spec instead of its spec.yaml")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the audit as JSON here")] = None,
) -> None:
    """Judge a spec (pre-flight) or a run folder against every applicable invariant.

    A run folder's installed artifacts are judged again with the spec's current thresholds and
    waivers (its frozen spec.yaml, or ``--spec``). Prints the table; for a run folder writes
    audit.json and audit.md into it. Exit 1 if any invariant fails (unless waived), 0 otherwise,
    2 on unusable input.
    """
    from darkhalo.audit.audit import audit_run, audit_spec, write_audit
    from data_contracts.findings import TABLE_COLUMNS
    from data_contracts.lessons import LESSONS

    try:
        if target.is_dir():
            if not (target / "spec.yaml").is_file():
                err.print(f"[red]error:[/] {target}: not a run folder (no spec.yaml)", highlight=False)
                raise typer.Exit(2)
            result = audit_run(target, _load(spec_path) if spec_path else None)
            paths = write_audit(result, target)
        else:
            result = audit_spec(_load(target), str(target))
            paths = ()
    except (SpecError, OSError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    table = Table(*TABLE_COLUMNS, title=f"audit of {result.generation}")
    colours = {"pass": "green", "FAIL": "red", "waived": "yellow"}
    for f in result.findings:
        *cells, verdict, detail = f.table_row()
        table.add_row(*cells, f"[{colours[f.verdict]}]{verdict}[/]", detail)
    for lesson in result.not_evaluated:
        table.add_row(lesson, LESSONS[lesson].title, "", "", "[dim]not evaluated[/]", "no artifact to judge yet")
    out.print(table)
    if json_path is not None:
        from darkhalo.artifacts import write_json

        write_json(json_path, result.to_dict())
    for path in paths:
        out.print(f"wrote {path}")
    expected = ", ".join(result.expected_failures) or "none"
    out.print(f"failed: {', '.join(result.failed) or 'none'} (the spec expects: {expected})")
    if not result.passed:
        raise typer.Exit(1)


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
    with _run_errors():
        folder = run_compare(*specs, out_dir, err)
    out.print((folder / "compare.md").read_text(), highlight=False)
    out.print(f"comparison: {folder}")


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
            err.print(f"[red]invalid:[/] {exc}", highlight=False)
            failed = True
            continue
        out.print(
            f"[green]ok[/] {path}: generation {generation.generation}, "
            f"{generation.grid.n_configs} grid configs, controls {generation.controls.mode}, "
            f"PSF {generation.psf.model}, {generation.train.arch}"
        )
        _print_forecast(generation, out)
    if failed:
        raise typer.Exit(2)


@spec_app.command("show")
def spec_show(spec: SpecPath) -> None:
    """Print a spec with every default filled in (as frozen into a run)."""
    typer.echo(_load(spec).to_yaml(), nl=False)


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
    out.print(f"catalog: {n:,} rows in {out_dir / 'catalog'}")
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
    out.print(f"cutouts: {len(chosen)} FITS files in {out_dir / 'cutouts'}")


@survey_app.command("cutouts-from-npz")
def survey_cutouts_from_npz(
    npz_dir: Annotated[Path, typer.Argument(help="folder of real .npz cutouts (101x101x3 grz + meta_*)")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for cutouts/*.fits and hosts.parquet")],
    psfex_dir: Annotated[Path, typer.Option("--psfex-dir", help="PSFEx files giving each band's PSFSIZE")],
    size: Annotated[int, typer.Option("--size", help="central stamp kept (pixels)", min=8)] = 64,
) -> None:
    """Convert real .npz cutouts to cutout-service FITS (<RELEASE>_<BRICKID>_<OBJID>.fits) and catalog rows."""
    from darkhalo.surveys.npz_cutouts import NpzCutoutError, convert_npz_folder, psfex_psfsize

    try:
        _, written = convert_npz_folder(npz_dir, out_dir, psfex_psfsize(psfex_dir), size)
    except (NpzCutoutError, OSError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"cutouts: {len(written)} FITS files in {out_dir / 'cutouts'}; catalog rows: {out_dir / 'hosts.parquet'}")


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
    from darkhalo.real_inputs import RealInputError
    from darkhalo.surveys.npz_cutouts import SURVEY_PSFSIZE, NpzCutoutError, convert_real_input, psfex_psfsize

    try:
        psf_fwhm = psfex_psfsize(psfex_dir) if psfex_dir else SURVEY_PSFSIZE
        _, written, refused = convert_real_input(source, out_dir, psf_fwhm, size)
    except (RealInputError, NpzCutoutError, OSError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    for reason in refused:
        err.print(f"refused: {reason}", highlight=False)
    out.print(f"cutouts: {len(written)} FITS files in {out_dir / 'cutouts'}; catalog rows: {out_dir / 'hosts.parquet'}")


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
    from darkhalo.surveys.npz_cutouts import NpzCutoutError
    from darkhalo.surveys.realism_report import compare_real, report_markdown, write_report
    from darkhalo.training.checkpoint import CheckpointError

    survey, selection = MockSurvey(kind="mock", n_objects=20_000), V3ColorRelaxed(variant="v3_color_relaxed")
    if spec_path is not None:
        spec = _load(spec_path)
        if not isinstance(spec.survey, MockSurvey):
            err.print(f"[red]error:[/] {spec_path}: survey.kind is {spec.survey.kind!r}, compare-real needs a mock")
            raise typer.Exit(2)
        survey, selection = spec.survey, spec.selection
    try:
        host_sets = {path.parent.name: read_input(path) for path in hosts_inputs or []}
        if len(host_sets) < len(hosts_inputs or []):
            raise RealInputError("--hosts-input: two inputs in one folder (a set is named by its folder)")
        target = None if model is None else target_of(model, None, None)
        result = compare_real(real_dir, survey, seed, n_hosts, n_lrg_hosts, selection.model_dump(), host_sets, target)
    except (RealInputError, NpzCutoutError, CheckpointError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    text = report_markdown(result)
    if out_dir is not None:
        write_report(out_dir, result)
    typer.echo(text, nl=False)


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
    from darkhalo.real_inputs import RealInputError, read_input
    from darkhalo.scoring import target_of, write_scores
    from darkhalo.training.checkpoint import CheckpointError

    try:
        target = target_of(model_or_run, size, device)
        scores, refused = write_scores(out_dir, target, [read_input(path) for path in inputs])
    except (RealInputError, CheckpointError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    for row in refused.itertuples():
        err.print(f"refused: {row.input} [{row.index}] {row.name}: {row.reason}", highlight=False)
    out.print(f"scored {len(scores)}, refused {len(refused)}: {out_dir / 'scores.parquet'}, {out_dir / 'gallery.html'}")


@grades_app.command("import")
def grades_import(
    csv_path: Annotated[Path, typer.Argument(help="grades.csv exported from scan/grade.html", show_default=False)],
    run_dir: Annotated[Path, typer.Argument(help="the run folder that was scanned", show_default=False)],
) -> None:
    """Check a grading page's export against the run's candidates, write grades/ and print the graded purity."""
    from darkhalo.grading import GradesError, import_grades

    try:
        result = import_grades(csv_path, run_dir)
    except (GradesError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    table = Table("grade", "candidates", "share", title=f"grades of {run_dir}: {result.n_graded} graded")
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
    out.print(f"wrote {run_dir / layout.GRADES_DIR}")


def _version(value: bool) -> None:
    if value:
        out.print(f"darkhalo {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """darkhalo: every stage behind a data contract, the lessons of Gen 1 enforced as invariants."""


def main() -> None:
    """Console-script entry point."""
    app()
