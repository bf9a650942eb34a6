"""The command line's one error boundary: each failure a user can cause ends in a line or two naming it, exit 2; a
contract failure exits 1; a bug exits 70 in one line; a traceback only under --debug. One test per class of fault."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SPECS
from typer.testing import CliRunner

from darkhalo import cli
from darkhalo.cli import app
from darkhalo.errors import DEBUG_ENV, EXIT_BUG, EXIT_UNUSABLE, reported_os_error
from darkhalo.spark import MASTER_ENV, SparkError, check_java

runner = CliRunner()
EMBEDDED = str(SPECS / "embedded.yaml")


def _darkhalo(
    *args: str, env: dict[str, str] | None = None, wrap: tuple[str, ...] = (), **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """``python -m darkhalo ARGS`` in a fresh process (this interpreter, this checkout) run through ``wrap``, with
    ``env`` over this environment less JAVA_HOME and DARKHALO_SPARK_MASTER; output captured unless redirected."""
    base = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", MASTER_ENV)}
    command = [*wrap, sys.executable, "-m", "darkhalo", *args]
    kwargs = {"capture_output": True, **kwargs} if "stdout" not in kwargs else kwargs
    return subprocess.run(command, cwd=REPO, env={**base, "PYTHONPATH": str(REPO), **(env or {})}, text=True, **kwargs)


def _told(text: str, *needles: str) -> None:
    """``text`` (a failed command's stderr) is a short answer holding every needle, with no traceback."""
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the boundary itself ------------------------------------------------------------------------


def _broken_loader(path: Path) -> None:
    raise ZeroDivisionError("a bug deep inside")


def test_an_unexpected_exception_is_a_bug_told_in_one_line_with_its_own_exit_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "load_spec", _broken_loader)
    result = runner.invoke(app, ["spec", "show", EMBEDDED])
    assert result.exit_code == EXIT_BUG
    _told(result.output, "bug: ZeroDivisionError: a bug deep inside", "--debug")


@pytest.mark.parametrize(("args", "env"), [(["--debug"], {}), ([], {DEBUG_ENV: "1"})], ids=["flag", "environment"])
def test_debug_shows_the_traceback_and_keeps_the_exit_code(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str]
) -> None:
    monkeypatch.setattr(cli, "load_spec", _broken_loader)
    result = runner.invoke(app, [*args, "spec", "show", EMBEDDED], env=env)
    assert result.exit_code == EXIT_BUG
    assert "Traceback" in result.output and "_broken_loader" in result.output


def test_a_path_is_printed_literally_not_as_markup(tmp_path: Path) -> None:
    spec = tmp_path / "[bold]gen[/bold] [/]" / "spec.yaml"
    result = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "runs")])
    assert result.exit_code == EXIT_UNUSABLE
    _told(result.output, f"{spec}: cannot read spec")


# --- the environment: Java and the Spark master ---------------------------------------------------


def test_no_java_is_told_before_spark_starts(tmp_path: Path) -> None:
    # PATH an empty folder: no java (the interpreter is named by its full path)
    done = _darkhalo("run", EMBEDDED, "--out", str(tmp_path / "runs"), "--to", "survey", env={"PATH": str(tmp_path)})
    assert done.returncode == EXIT_UNUSABLE
    _told(done.stderr, "Spark needs Java", "JAVA_HOME")


def test_a_java_home_without_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(SparkError, match=f"JAVA_HOME={tmp_path} holds no bin/java"):
        check_java()


@pytest.mark.parametrize(
    ("master", "told"),
    [
        ("spark//head:7077", "'spark//head:7077' is not a Spark master URL"),
        ("spark://head", "'spark://head' is not a Spark master URL"),
        ("local[x]", "'local[x]' is not a Spark master URL"),
        ("spark://127.0.0.1:{port}", "the Spark master spark://127.0.0.1:{port} cannot be reached"),
    ],
    ids=["no-colon", "no-port", "local-word", "unreachable"],
)
def test_a_malformed_or_unreachable_master_is_refused_at_once_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, master: str, told: str
) -> None:
    port = _closed_port()
    monkeypatch.setenv(MASTER_ENV, master.format(port=port))
    start = time.monotonic()
    result = runner.invoke(app, ["run", EMBEDDED, "--out", str(tmp_path), "--to", "survey"])
    assert time.monotonic() - start < 30  # Spark's own registration retries take ~90 s
    assert result.exit_code == EXIT_UNUSABLE
    _told(result.output, f"{MASTER_ENV}: {told.format(port=port)}")


# --- disks and folders ---------------------------------------------------------------------------


def test_a_full_disk_under_standard_output_is_named() -> None:
    with open("/dev/full", "w") as full:
        done = _darkhalo("spec", "show", EMBEDDED, stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == EXIT_UNUSABLE
    _told(done.stderr, "<stdout>: No space left on device; free space")
    assert "Exception ignored" not in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_a_runs_path_that_is_a_file_or_under_one_is_named(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    out = blocker if where == "a-file" else blocker / "deeper"
    result = runner.invoke(app, ["run", EMBEDDED, "--out", str(out), "--to", "survey"])
    assert result.exit_code == EXIT_UNUSABLE
    _told(result.output, f"{out / 'embedded'}: Not a directory; a part of that path is a file")


def test_a_read_only_runs_folder_is_named(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    wrap: tuple[str, ...] = ()
    if os.geteuid():
        runs.chmod(0o555)
    else:  # root passes any permission: a read-only bind mount, in a mount namespace of its own
        if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode:
            pytest.skip("running as root without CAP_SYS_ADMIN: neither permissions nor a read-only mount bind")
        remount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        wrap = ("unshare", "--mount", "sh", "-c", remount, str(runs))
    done = _darkhalo("run", EMBEDDED, "--out", str(runs), "--to", "survey", wrap=wrap)
    runs.chmod(0o755)
    assert done.returncode == EXIT_UNUSABLE, done.stderr
    reason = "Permission denied" if os.geteuid() else "Read-only file system"
    _told(done.stderr, f"{runs / 'embedded'}: {reason}; ")


def test_a_failed_write_that_another_process_reports_is_recognised() -> None:
    python = "OSError: [Errno 28] No space left on device: '/runs/x/inject/part-00003.parquet'"
    java = "Caused by: java.io.FileNotFoundException: /runs/x/select/_temporary/0 (Read-only file system)"
    found = reported_os_error(f"Job aborted.\n{python}\n  at org.apache.spark")
    assert (found.errno, found.filename) == (28, "/runs/x/inject/part-00003.parquet")
    found = reported_os_error(java)
    assert found.strerror == "Read-only file system" and found.filename == "/runs/x/select/_temporary/0"
    assert reported_os_error("java.lang.NullPointerException") is None


# --- user-given files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "told"),
    [
        (
            b"seed: 1\ngeneration: x\nsurvey: {kind: mo\xffck}\n",
            'invalid UTF-8 (byte 0xff: invalid start byte)\n  in "{path}", byte 39, line 3',
        ),
        (
            b"seed: 1\ngeneration: x\x00\n",
            'unacceptable character #x0000: special characters are not allowed\n  in "{path}", position 21',
        ),
        (
            b"survey: " + b"[" * 10_000 + b"]" * 10_000 + b"\n",
            'collections nested deeper than 64 levels\n  in "{path}", line 1',
        ),
    ],
    ids=["invalid-utf8", "nul-byte", "deep-nesting"],
)
def test_a_spec_with_bad_bytes_or_absurd_nesting_is_refused_naming_the_file(
    tmp_path: Path, content: bytes, told: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    result = runner.invoke(app, ["spec", "check", str(path)])
    assert result.exit_code == EXIT_UNUSABLE
    _told(result.output, told.format(path=path))


@pytest.mark.parametrize("kind", ["missing", "a-folder"])
@pytest.mark.parametrize(
    "command",
    [
        ["spec", "check", "{file}"],
        ["run", "{file}"],
        ["survey", "cutouts-from-real", "{file}", "--out", "{tmp}"],
        ["score", "{file}", "{file}", "--out", "{tmp}"],
    ],
    ids=["spec-check", "run", "cutouts-from-real", "score"],
)
def test_a_user_given_file_that_cannot_be_read_is_named(tmp_path: Path, kind: str, command: list[str]) -> None:
    file = tmp_path / "given.yaml"
    if kind == "a-folder":
        file.mkdir()
    result = runner.invoke(app, [arg.format(file=file, tmp=tmp_path / "out") for arg in command])
    assert result.exit_code == EXIT_UNUSABLE, result.output
    _told(result.output, str(file))


def test_compare_refuses_two_generations_of_one_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compare", EMBEDDED, EMBEDDED, "--out", str(tmp_path)])
    assert result.exit_code == EXIT_UNUSABLE
    _told(result.output, "both specs name the generation 'embedded'")
    assert not any(tmp_path.iterdir())
