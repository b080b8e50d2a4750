"""The HTML report opened in a real headless Chromium (Debian's ``chromium`` package).

Checks what only a browser can tell: every image decodes, the claims tables are laid out
and visible, pass and fail cells differ in colour as well as text, nothing is logged as
an error, and text from an experiment never runs as script. A negative test deletes one
PNG and corrupts another to show the checker catches broken images.

Chromium is started by Playwright from /usr/bin/chromium (Playwright's own browser
downloads are not used: this machine has no internet), with a fresh, empty profile.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from kvmem import experiments
from kvmem.experiments import Claim, Experiment, Result
from kvmem.report import write_report
from kvmem.runner import run_experiment, write_outputs

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
TITLE = "kvmem reproduce report"
TOY = "toy-browser"
BROKEN = "broken-exp"
INJECT = '<img src=x onerror="document.title=\'pwned\';window.pwned=1"><script>window.pwned=2</script>'

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium package (.ci/run does) to run the browser tests",
                allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402 - only needed once Chromium is there


@dataclass(frozen=True)
class ToyConfig:
    n: int = 3


def _toy_run(config, *, seed=0, progress=None):
    import pandas as pd

    return Result(tables={"t": pd.DataFrame({"a": list(range(config.n))})}, scalars={}, config=asdict(config))


def _toy_plot(result):
    import matplotlib.pyplot as plt

    figures = {}
    for name in ("one", "two"):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.bar([0, 1], [1, 2])
        figures[name] = fig
    return figures


def _toy_claims(result):
    return [Claim("fine", "a == 0..n-1", 3, True), Claim(INJECT, INJECT, INJECT, False)]


TOY_EXPERIMENT = Experiment(name=TOY, description="Toy experiment for the browser test.", config_type=ToyConfig,
                            profiles={"quick": ToyConfig(), "full": ToyConfig()}, run=_toy_run, plot=_toy_plot,
                            claims=_toy_claims)


@dataclass
class PageCheck:
    """What the browser saw."""

    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    claims: dict[str, dict] = field(default_factory=dict)
    injected: object = None

    @property
    def broken_images(self) -> list[str]:
        return sorted(i["src"] for i in self.images if not (i["complete"] and i["naturalWidth"] > 0))


def inspect_report(context, index: Path) -> PageCheck:
    """Open ``index`` and collect errors, image states and the claims tables' layout."""
    seen = PageCheck()
    page = context.new_page()
    page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda err: seen.page_errors.append(str(err)))
    page.on("requestfailed", lambda req: seen.failed_requests.append(req.url))
    page.on("dialog", lambda d: (seen.dialogs.append(d.message), d.dismiss()))
    page.goto(index.resolve().as_uri(), wait_until="load")
    seen.title = page.title()
    seen.images = page.evaluate("""() => Array.from(document.images).map(i => ({
        src: i.getAttribute('src'), complete: i.complete, naturalWidth: i.naturalWidth,
        shownWidth: i.getBoundingClientRect().width, alt: i.alt}))""")
    seen.claims = page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('table.claims')).map(t => {
        const box = t.getBoundingClientRect(), style = getComputedStyle(t);
        const cells = Array.from(t.querySelectorAll('tbody td.result'));
        return [t.closest('section').id, {
            rows: t.querySelectorAll('tbody tr').length,
            visible: box.width > 0 && box.height > 0 && style.visibility !== 'hidden' && style.display !== 'none',
            results: cells.map(c => [c.textContent, getComputedStyle(c).backgroundColor, getComputedStyle(c).color])}];
    }))""")
    seen.injected = page.evaluate("() => window.pwned === undefined ? null : window.pwned")
    page.close()
    return seen


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser-report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(experiments.REGISTRY, TOY, TOY_EXPERIMENT)
        runs = [run_experiment("retrieval-basics", overrides={"trials": "2", "delta_passes": "100000"}),
                run_experiment(TOY)]
        for run in runs:
            write_outputs(run, out / run.experiment)
        index = write_report(out, runs, failures={BROKEN: "Traceback ...\nValueError: <b>boom</b>"})
    return out, index, runs


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # empty user-data-dir
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS, timeout=60_000,
            viewport={"width": 1100, "height": 900})
        yield context
        context.close()


def test_report_renders_without_errors_in_chromium(report, browser):
    out, index, runs = report
    seen = inspect_report(browser, index)
    assert seen.console_errors == [] and seen.page_errors == [] and seen.failed_requests == []
    assert seen.title == TITLE and seen.dialogs == [] and seen.injected is None
    srcs = sorted(i["src"] for i in seen.images)
    assert srcs == sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.png")) and len(srcs) == 3
    assert seen.broken_images == []
    for img in seen.images:
        assert img["alt"]
        # Width-limited: never wider than the page column, the 1320 px figure shrunk to fit.
        assert 0 < img["shownWidth"] <= min(img["naturalWidth"], 1100)
    assert any(i["shownWidth"] < i["naturalWidth"] for i in seen.images)
    by_section = {run.experiment: run for run in runs}
    assert len(seen.claims) == len(runs)
    for section_id, table in seen.claims.items():
        run = by_section[section_id.removeprefix("exp-")]
        assert table["visible"] and table["rows"] == len(run.claims)
        for (text, background, color), claim in zip(table["results"], run.claims):
            assert ("pass" in text) == claim.passed and ("FAIL" in text) == (not claim.passed)
    toy = [(bg, fg) for _, bg, fg in seen.claims[f"exp-{TOY}"]["results"]]
    assert toy[0] != toy[1], "a passing and a failing claim must differ in colour too"


def test_checker_catches_missing_and_corrupt_images(report, browser, tmp_path):
    out, _, _ = report
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "retrieval-basics" / "retrieval.png").unlink()
    (copy / TOY / "two.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    seen = inspect_report(browser, copy / "index.html")
    assert seen.broken_images == ["retrieval-basics/retrieval.png", f"{TOY}/two.png"]
    assert any(url.endswith("retrieval-basics/retrieval.png") for url in seen.failed_requests)
    assert seen.console_errors, "a missing file is logged as an error"
