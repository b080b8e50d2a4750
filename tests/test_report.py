"""The HTML report: built from a real retrieval-basics run, a toy run and a fake failure.

The page is parsed with the standard library's html.parser into a small tree, and every
check compares it with the runs themselves (claims, tables, files on disk), not with
strings copied from the renderer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from kvmem import experiments
from kvmem.experiments import Claim, Experiment, Result
from kvmem.report import (
    MAX_ROWS,
    build_report_from_dir,
    report_from_dir,
    report_from_runs,
    write_report,
)
from kvmem.runner import run_experiment, write_outputs

TOY = "toy-report"
BROKEN = "broken-exp"
# A traceback whose text would be markup if it were not escaped.
TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: bad <b>value</b> & "quote"\n'
INJECT_NAME = '<script>document.title="pwned"</script>'
INJECT_EXPECTED = '"><img src=x onerror="document.title=\'pwned\'">'
INJECT_MEASURED = "</td></tr></table><h1>pwned</h1>"
BAD_COLUMN = "<b>col</b>"


# --------------------------------------------------------------------------- a toy experiment


@dataclass(frozen=True)
class ToyConfig:
    rows: int = 60


def _toy_run(config, *, seed=0, progress=None):
    rng = np.random.default_rng(seed)
    big = pd.DataFrame({"i": np.arange(config.rows), "x": rng.random(config.rows), BAD_COLUMN: ["<i>v</i>"] * config.rows})
    published = pd.DataFrame({
        "quantity": ["capacity <alpha_c>", "recall at N = 8"],
        "published": [0.138, 0.9],
        "measured": [0.1412, 0.85],
        "source": ["Amit et al. 1985", "paper Fig. 2"],
    })
    paper_curve = pd.DataFrame({"beta": [1.0, 1.9], "task1_accuracy_pct": [9.13, 99.48]})
    scalars = {"x": 1.25, "paper_x": 1.5, "paper_only": 3.0}
    # paper_a after paper_curve: the page must not depend on the order tables were made in.
    tables = {"big": big, "published": published, "paper_curve": paper_curve, "paper_a": pd.DataFrame({"n": [1]})}
    return Result(tables=tables, scalars=scalars,
                  config=asdict(config))


def _toy_plot(result):
    import matplotlib.pyplot as plt

    figures = {}
    for name, size in (("first", (2.0, 1.5)), ("second", (1.5, 2.0))):
        fig, ax = plt.subplots(figsize=size)
        ax.plot([0, 1], [0, 1])
        figures[name] = fig
    return figures


def _toy_claims(result):
    return [Claim("holds", "x > 1", result.scalars["x"], True),
            Claim(INJECT_NAME, INJECT_EXPECTED, INJECT_MEASURED, False)]


TOY_EXPERIMENT = Experiment(name=TOY, description="A toy <em>experiment</em> for the report tests.",
                            config_type=ToyConfig, profiles={"quick": ToyConfig(), "full": ToyConfig()},
                            run=_toy_run, plot=_toy_plot, claims=_toy_claims)


# --------------------------------------------------------------------------- a tiny DOM

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict
    children: list
    parent: Node | None = None

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.iter()

    def find_all(self, tag: str, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if n.tag == tag and (cls is None or cls in n.attrs.get("class", "").split())]

    def find(self, tag: str, cls: str | None = None) -> Node:
        found = self.find_all(tag, cls)
        assert found, f"no <{tag} class={cls}>"
        return found[0]


class TreeBuilder(HTMLParser):
    """Builds a tree and records every end tag that does not close the open element."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, [])
        self.stack = [self.root]
        self.mismatches: list[str] = []
        self.doctype = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, [], self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}, [], self.stack[-1]))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if self.stack[-1].tag != tag:
            self.mismatches.append(f"</{tag}> closes <{self.stack[-1].tag}>")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.doctype and builder.doctype.lower() == "doctype html"
    assert builder.mismatches == [], builder.mismatches[:5]
    assert [n.tag for n in builder.stack] == ["#root"], "unclosed elements"
    return builder.root


def section(root: Node, name: str) -> Node:
    for sec in root.find_all("section"):
        if sec.find_all("h2") and sec.find("h2").text().split(" ")[0] == name:
            return sec
    raise AssertionError(f"no section for {name}")


def rows(table: Node) -> list[list[str]]:
    return [[td.text() for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]


def strip_times(page: str) -> str:
    return re.sub(r"<time [^>]*>.*?</time>", "<time/>", page)


# --------------------------------------------------------------------------- the report under test


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(experiments.REGISTRY, TOY, TOY_EXPERIMENT)
        real = run_experiment("retrieval-basics", overrides={"trials": "2", "delta_passes": "100000"}, seed=0)
        toy = run_experiment(TOY, seed=1)
        for run in (real, toy):
            write_outputs(run, out / run.experiment)
        meta = {"command": "kvmem reproduce --profile quick", "wall_seconds": 12.5}
        page = write_report(out, [real, toy], failures={BROKEN: TRACEBACK}, meta=meta)
        direct_html = page.read_text(encoding="utf-8")
        direct = report_from_runs(out, [real, toy], failures={BROKEN: TRACEBACK}, meta=meta, environment={})
        rebuilt_page = build_report_from_dir(out)
        rebuilt_html = rebuilt_page.read_text(encoding="utf-8")
        rebuilt = report_from_dir(out)
    return {"out": out, "real": real, "toy": toy, "page": page, "html": direct_html, "root": parse(direct_html),
            "direct": direct, "rebuilt": rebuilt, "rebuilt_html": rebuilt_html, "meta": meta}


def test_page_is_self_contained_accessible_html(built):
    root, page = built["root"], built["html"]
    assert root.find("html").attrs["lang"] == "en"
    assert root.find("meta").attrs.get("charset") == "utf-8"
    assert root.find("title").text() == "kvmem reproduce report"
    assert root.find_all("script") == [] and root.find_all("style")
    headings = [int(n.tag[1]) for n in root.iter() if re.fullmatch(r"h[1-6]", n.tag)]
    assert headings[0] == 1 and headings.count(1) == 1
    assert all(b <= a + 1 for a, b in zip(headings, headings[1:])), headings
    for node in root.iter():
        for attr in ("src", "href"):
            value = node.attrs.get(attr)
            if value is not None:
                # Only in-page anchors, relative files and the empty data: icon; no network.
                assert not re.match(r"^[a-z][a-z0-9+.-]*:", value) or value == "data:,", value
                assert not value.startswith("/"), value
    assert not re.search(r"https?://", page)
    assert all(n.attrs.get("rel") != "stylesheet" for n in root.find_all("link"))


def test_one_section_per_experiment_with_contents_links(built):
    root = built["root"]
    names = [n.text() for n in root.find("nav").find_all("a")]
    assert names == [BROKEN, "retrieval-basics", TOY, "Run environment"]
    ids = {n.attrs["id"] for n in root.iter() if "id" in n.attrs}
    for link in root.find("nav").find_all("a"):
        assert link.attrs["href"].startswith("#") and link.attrs["href"][1:] in ids
    sections = [s for s in root.find("main").find_all("section") if s.attrs["id"] != "environment"]
    assert len(sections) == 3
    real = section(root, "retrieval-basics")
    assert experiments.get("retrieval-basics").description in real.find("p", "description").text()
    facts = dict(zip((d.text() for d in real.find("dl").find_all("dt")), (d.text() for d in real.find("dl").find_all("dd"))))
    assert facts["profile"] == "quick" and facts["seed"] == "0"
    assert facts["duration"] == f"{built['real'].seconds:.1f} s"
    assert facts["torch threads"] == str(torch.get_num_threads())
    config = json.loads((built["out"] / "retrieval-basics" / "run.json").read_text())["config"]
    shown = {tr.find("th").text(): tr.find("td").text() for tr in real.find("table", "pairs").find("tbody").find_all("tr")}
    assert shown["trials"] == "2" == str(config["trials"]) and set(shown) == set(config)


def test_claims_tables_match_the_runs(built):
    root = built["root"]
    for run in (built["real"], built["toy"]):
        table = section(root, run.experiment).find("table", "claims")
        got = rows(table)
        assert len(got) == len(run.claims)
        for (name, expected, measured, result), claim, tr in zip(got, run.claims, table.find("tbody").find_all("tr")):
            assert name == claim.name and expected == claim.expected
            if isinstance(claim.measured, str):
                assert measured == claim.measured
            else:
                assert float(measured) == pytest.approx(float(claim.measured), rel=1e-6)
            # Colour (class) AND text.
            assert ("pass" in result.split()) == claim.passed and ("FAIL" in result.split()) == (not claim.passed)
            assert tr.attrs["class"] == ("pass" if claim.passed else "fail")
    n = sum(len(r.claims) for r in (built["real"], built["toy"]))
    n_ok = sum(c.passed for r in (built["real"], built["toy"]) for c in r.claims)
    summary = root.find("dl", "summary").text()
    assert f"{n_ok} passed, {n - n_ok} failed, of {n}" in summary
    assert "1 failed with an error" in summary and "FAIL" in summary
    assert "12.5 s wall time" in summary
    toc = {li.find("a").text(): li.find("span", "badge") for li in root.find("nav").find_all("li")[:3]}
    assert "error" in toc[BROKEN].attrs["class"] and "error" in toc[BROKEN].text()
    assert "fail" in toc[TOY].attrs["class"].split() and "1 of 2" in toc[TOY].text()
    assert "pass" in toc["retrieval-basics"].attrs["class"].split()


def test_figures_are_relative_paths_to_existing_pngs_that_survive_a_move(built, tmp_path):
    out, root = built["out"], built["root"]
    images = root.find_all("img")
    written = {p.relative_to(out).as_posix() for p in out.glob("*/*.png")}
    assert {img.attrs["src"] for img in images} == written == {"retrieval-basics/retrieval.png", f"{TOY}/first.png", f"{TOY}/second.png"}
    for img in images:
        path = out / img.attrs["src"]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width = matplotlib.image.imread(path).shape[:2]
        assert (int(img.attrs["width"]), int(img.attrs["height"])) == (width, height)
        assert img.attrs["alt"] and path.parent.name in img.attrs["alt"]
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, moved)
    assert all((moved / img.attrs["src"]).is_file() for img in images)


def test_text_from_experiments_is_escaped(built):
    root, page = built["root"], built["html"]
    assert root.find_all("script") == []
    assert all("onerror" not in n.attrs for n in root.iter())
    assert [h.text() for h in root.find_all("h1")] == ["kvmem reproduce report"]
    assert root.find_all("b") == [] and root.find_all("em") == [] and root.find_all("i") == []
    toy = section(root, TOY)
    claim = [r for r in rows(toy.find("table", "claims")) if r[0] == INJECT_NAME]
    assert claim == [[INJECT_NAME, INJECT_EXPECTED, INJECT_MEASURED, "\u2717 FAIL"]]
    assert "A toy <em>experiment</em>" in toy.find("p", "description").text()
    assert BAD_COLUMN in [th.text() for th in toy.find_all("th")]
    assert "&lt;script&gt;" in page and "<script" not in page


def test_failed_experiment_shows_its_error_and_the_others_still_render(built):
    sec = section(built["root"], BROKEN)
    box = sec.find("div", "error-box")
    assert box.find("pre").text() == TRACEBACK
    assert sec.find_all("table") == [] and sec.find_all("img") == []
    assert (built["out"] / BROKEN / "error.txt").read_text() == TRACEBACK
    assert section(built["root"], "retrieval-basics").find_all("img")


def test_published_numbers_beside_ours(built):
    toy = section(built["root"], TOY)
    h3 = [h.text() for h in toy.find_all("h3")]
    assert h3.index("Published numbers beside ours") < h3.index("Figures") < h3.index("Tables")
    table = toy.find("table", "published")
    assert [th.text() for th in table.find("thead").find_all("th")] == ["quantity", "published", "measured", "source"]
    got = rows(table)
    frame = built["toy"].result.tables["published"]
    for row, rec in zip(got, frame.to_dict("records")):
        assert row[0] == rec["quantity"] and row[3] == rec["source"]
        assert float(row[1]) == pytest.approx(rec["published"], rel=1e-6)
        assert float(row[2]) == pytest.approx(rec["measured"], rel=1e-6)
    # With a published table, the paper_* scalars are not repeated as rows.
    assert len(got) == len(frame)
    # paper_* tables sit with the published numbers, before the figures, not among the result tables.
    h4 = [h.text() for h in toy.find_all("h4")]
    assert h4 == ["paper_a", "paper_curve", "big"]
    paper = toy.find_all("table", "data")[1]
    assert [[float(c) for c in r] for r in rows(paper)] == [[1.0, 9.13], [1.9, 99.48]]


def test_paper_scalars_pair_with_ours_when_there_is_no_published_table(built, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built["out"], out)
    (out / TOY / "published.csv").unlink()
    sec = next(s for s in report_from_dir(out).sections if s.name == TOY)
    rows_ = {p.quantity: p for p in sec.published}
    # run.json scalars: x = 1.25, paper_x = 1.5, paper_only = 3.0 (no partner).
    assert set(rows_) == {"x", "only"}
    assert float(rows_["x"].published) == 1.5 and float(rows_["x"].measured) == 1.25
    assert float(rows_["only"].published) == 3.0 and rows_["only"].measured == "not measured by this run"
    assert rows_["x"].source == "scalar paper_x"
    page = parse(build_report_from_dir(out).read_text())
    table = section(page, TOY).find("table", "published")
    assert sorted(r[0] for r in rows(table)) == ["only", "x"]


def test_long_tables_are_cut_with_a_note_and_a_link(built):
    toy = section(built["root"], TOY)
    big = built["toy"].result.tables["big"]
    tables = toy.find_all("table", "data")
    table = next(t for t in tables if BAD_COLUMN in [th.text() for th in t.find_all("th")])
    shown = rows(table)
    assert len(shown) == MAX_ROWS < len(big)
    for row, (i, x, v) in zip(shown, big.itertuples(index=False)):
        assert int(row[0]) == i and float(row[1]) == pytest.approx(x, rel=5e-4) and row[2] == v
    notes = " ".join(p.text() for p in toy.find_all("p", "note"))
    assert f"first {MAX_ROWS} of {len(big)} rows" in notes
    links = [a.attrs["href"] for a in toy.find_all("a") if a.text() == "big.csv"]
    assert links == [f"{TOY}/big.csv"] and len(pd.read_csv(built["out"] / links[0])) == len(big)


def test_environment_and_invocation(built):
    env_section = next(s for s in built["root"].find_all("section") if s.attrs["id"] == "environment")
    tables = env_section.find_all("table", "pairs")
    invocation = {tr.find("th").text(): tr.find("td").text() for tr in tables[0].find("tbody").find_all("tr")}
    assert invocation == {"command": built["meta"]["command"], "wall_seconds": "12.5"}
    env = {tr.find("th").text(): tr.find("td").text() for tr in tables[1].find("tbody").find_all("tr")}
    assert env["torch threads"] == str(torch.get_num_threads())
    assert env["CPU count"] == str(os.cpu_count())
    assert env["torch"] == torch.__version__ and env["pandas"] == pd.__version__
    assert env["torch CUDA"] == (torch.version.cuda or "none (CPU build)")
    assert (env["GPU"] == "none") == (not torch.cuda.is_available())
    assert "torch BLAS" in env and "git commit" in env
    saved = json.loads((built["out"] / "report.json").read_text())
    assert saved["meta"] == built["meta"] and saved["environment"] == env


def test_rebuild_from_dir_equals_direct_build(built):
    assert built["rebuilt"].sections == built["direct"].sections
    assert strip_times(built["rebuilt_html"]) == strip_times(built["html"])
    assert built["rebuilt_html"] != "" and "<time " in built["html"]


def test_rebuild_without_report_json_and_with_stale_error_file(built, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built["out"], out)
    (out / "report.json").unlink()
    stale = out / "retrieval-basics" / "error.txt"
    stale.write_text("an old failure")
    old = (out / "retrieval-basics" / "run.json").stat().st_mtime - 100
    os.utime(stale, (old, old))  # older than run.json: the experiment ran again since
    data = report_from_dir(out)
    status = {s.name: s.status for s in data.sections}
    assert status == {BROKEN: "error", "retrieval-basics": "pass", TOY: "fail"}
    assert data.meta == () and dict(data.environment)["torch threads"] == str(torch.get_num_threads())
    assert "No report.json was found" in build_report_from_dir(out).read_text()
    new = (out / "retrieval-basics" / "run.json").stat().st_mtime + 100
    os.utime(stale, (new, new))  # newer: the last attempt failed
    assert {s.name: s.status for s in report_from_dir(out).sections}["retrieval-basics"] == "error"


def test_write_report_removes_a_stale_error_file(built, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(built["out"] / "retrieval-basics", out / "retrieval-basics")
    (out / "retrieval-basics" / "error.txt").write_text("old")
    write_report(out, [built["real"]], meta={})
    assert not (out / "retrieval-basics" / "error.txt").exists()
    assert [s.status for s in report_from_dir(out).sections] == ["pass"]


def test_bad_input_is_rejected_with_clear_errors(built, tmp_path):
    real = built["real"]
    with pytest.raises(TypeError, match="runs"):
        write_report(tmp_path, real)
    with pytest.raises(TypeError, match="runs"):
        write_report(tmp_path, [1])
    with pytest.raises(TypeError, match="failures"):
        write_report(tmp_path, [], failures=["x"])
    with pytest.raises(TypeError, match=r"failures\['x'\]"):
        write_report(tmp_path, [], failures={"x": 1})
    with pytest.raises(ValueError, match="failures"):
        write_report(tmp_path, [], failures={"../x": "boom"})
    with pytest.raises(TypeError, match="meta"):
        write_report(tmp_path, [], meta=[("a", 1)])
    with pytest.raises(ValueError, match="write_outputs"):
        write_report(tmp_path, [real])
    with pytest.raises(ValueError, match="once"):
        write_report(built["out"], [real], failures={"retrieval-basics": "boom"})
    with pytest.raises(ValueError, match="max_rows"):
        write_report(built["out"], [real], max_rows=0)
    with pytest.raises(ValueError, match="out_dir"):
        build_report_from_dir(tmp_path / "missing")
    assert not (tmp_path / "index.html").exists()


def test_sections_are_plain_frozen_data(built):
    sec = built["direct"].sections[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        sec.name = "x"
    assert built["direct"].errors == [BROKEN] and not built["direct"].ok


def test_a_published_table_missing_columns_is_shown_as_is_with_a_note(built, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built["out"], out)
    pd.DataFrame({"quantity": ["q"], "published": [1.0]}).to_csv(out / TOY / "published.csv", index=False)
    sec = next(s for s in report_from_dir(out).sections if s.name == TOY)
    assert sec.published == ()
    (view,) = [v for v in sec.paper_tables if v.name == "published"]
    assert "missing columns: measured" in view.note and view.rows == (("q", "1"),)
