"""The grading page and the evaluation report in a real headless Chromium (Debian's /usr/bin/chromium driven by
Playwright, which never downloads a browser here): grading by key presses, grades kept across a reload, the exported
CSV imported back; the report loads every image without console errors and no two captions overlap."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from test_grading import HEADER, candidates_frame, write_run
from test_report import _scores

from darkhalo.artifacts import write_json
from darkhalo.grading import grade_page, import_grades
from darkhalo.metrics.report import Gallery, write_report
from darkhalo.metrics.summary import evaluation_metrics

CHROMIUM = Path("/usr/bin/chromium")
#: Headless, offline: no GPU, no sandbox (containers), nothing fetched in the background.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module; missing, the tests fail under CI=true and are skipped elsewhere."""
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def _open(browser: Browser, path: Path) -> tuple[Page, list[str]]:
    """A fresh page (its own localStorage) showing ``path``, and the list its console errors and page errors join."""
    page = browser.new_context(accept_downloads=True).new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    return page, errors


def _unloaded_images(page: Page) -> list[str]:
    return page.eval_on_selector_all("img", "images => images.filter(i => !(i.naturalWidth > 0)).map(i => i.alt)")


def _progress(page: Page) -> str:
    return page.inner_text("#progress")


def _export(page: Page, action) -> str:
    with page.expect_download() as info:
        action()
    download = info.value
    assert download.suggested_filename == "grades.csv"
    return Path(download.path()).read_text()


def test_grading_by_keys_survives_a_reload_and_exports_what_was_pressed(browser: Browser, tmp_path: Path) -> None:
    candidates = candidates_frame(5, sky_lenses=(1, 3))
    run = write_run(tmp_path / "run", candidates)
    stamps = np.random.default_rng(3).normal(0, 0.01, (5, 3, 16, 16)).astype(np.float32)
    page_path = tmp_path / "grade.html"
    page_path.write_text(grade_page(candidates, stamps, "darkhalo test grading"))
    page, errors = _open(browser, page_path)
    assert _progress(page) == "graded 0 of 5 · showing 1"
    assert page.locator("img").count() == 10 and not _unloaded_images(page)
    assert "#1 · score 5.000" in page.inner_text("section.candidate:not([hidden])")
    for key in ("a", "n", "ArrowLeft", "b", "ArrowRight", "c"):  # rank 2 regraded not_lens -> B, rank 3 skipped
        page.keyboard.press(key)
    assert _progress(page) == "graded 3 of 5 · showing 5"
    page.keyboard.press("ArrowLeft")
    visible = page.inner_text("section.candidate:not([hidden])")
    assert "#4 · score" in visible and "graded C" in visible

    page.reload()
    assert _progress(page) == "graded 3 of 5 · showing 3"  # the grades kept, opened at the first ungraded
    page.keyboard.press("Space")
    assert "graded C" in page.inner_text("section.candidate:not([hidden])")
    expected = f"{HEADER}\n10000,501,7,1,A\n10000,502,14,2,B\n10000,504,28,4,C\n"
    assert _export(page, lambda: page.keyboard.press("e")) == expected
    exported = _export(page, lambda: page.click("#export"))
    assert exported == expected and not errors

    (tmp_path / "grades.csv").write_text(exported)
    result = import_grades(tmp_path / "grades.csv", run)
    assert result.purity == pytest.approx(2 / 3) and result.counts == {"A": 1, "B": 1, "C": 1, "not_lens": 0}
    assert (result.sky_lenses_graded, result.sky_lenses_graded_lens) == (1, 1)


def test_the_report_loads_every_image_and_no_captions_overlap(browser: Browser, tmp_path: Path) -> None:
    scores = _scores(300, 2000)
    metrics = evaluation_metrics(
        scores, min_expected_fp=10, confidence=0.95, bootstrap_samples=20, seed=0, survey_hosts=10**6, prevalence=1e-3
    )
    write_json(tmp_path / "metrics.json", metrics.model_dump(mode="json"))
    stamps = np.random.default_rng(1).normal(0, 0.01, (4, 3, 16, 16)).astype(np.float32)
    galleries = [Gallery("top-scored controls", stamps, list("abcd")), Gallery("top positives", stamps, list("efgh"))]
    write_report(tmp_path, scores, galleries, class_galleries={"spiral": Gallery("spirals", stamps, list("ijkl"))})
    page, errors = _open(browser, tmp_path / "report.html")
    assert page.locator("img").count() == 8 and not _unloaded_images(page)
    boxes = page.eval_on_selector_all(
        "figcaption", "cs => cs.map(c => c.getBoundingClientRect()).map(r => [r.left, r.top, r.right, r.bottom])"
    )
    assert len(boxes) == 8
    overlapping = [
        (i, j)
        for i, a in enumerate(boxes)
        for j, b in enumerate(boxes[:i])
        if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
    ]
    assert not overlapping and not errors
