"""benchmarks/report.py: the README's benchmark tables are rendered from results files, never typed in.

These tests run no benchmark: they render small results documents under ``tests/data/benchmark_results``
(saved by quick runs of the real scripts) and the committed ``benchmarks/results``. The import-timing rows
of run.py are checked against a real first request, so "import + first request" keeps meaning that.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
FIXTURES = Path(__file__).resolve().parent / "data" / "benchmark_results"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import each other by plain name, as when run

import report  # noqa: E402
import run  # noqa: E402

#: The benchmarks with a fixture document (every registered one).
FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.json"))
#: The renderers that end with ``_results.caption`` (machine, commit, date, quick or not, the command).
CAPTIONED = ["assembly", "batch_memory", "emulator", "eventstream", "sigv4", "sse", "suite", "trio"]


def _document(names: list[str], body: str = "_placeholder, 1.23 ms_\n") -> str:
    parts = ["# Title\n\nText before, 4.56 ms, never touched.\n"]
    for name in names:
        parts.append(f"\n## {name}\n\n<!-- bench:{name} -->\n{body}<!-- /bench:{name} -->\n\nText after {name}.\n")
    return "".join(parts)


def _outside(text: str) -> str:
    """``text`` with every generated section emptied: what report.py must leave alone."""
    return re.sub(r"(<!-- bench:(\w+) -->\n).*?(<!-- /bench:\2 -->)", r"\1\3", text, flags=re.DOTALL)


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return document


def test_every_registered_benchmark_has_its_script_a_renderer_and_a_fixture() -> None:
    """A registered script that does not exist, or cannot render, fails here before all.py ever runs."""
    assert sorted(report.BENCHMARKS) == FIXTURE_NAMES
    for benchmark in report.BENCHMARKS.values():
        assert (BENCHMARKS / benchmark.script).exists(), benchmark.script
        assert benchmark.minutes > 0


def test_update_fills_each_section_from_its_own_results_and_nothing_else() -> None:
    text = _document(FIXTURE_NAMES)
    fresh = report.update(text, FIXTURES)
    assert "_placeholder" not in fresh
    # Outside the markers the document is byte for byte the same.
    assert _outside(fresh) == _outside(text)
    for name in FIXTURE_NAMES:
        rendered = report.render(name, FIXTURES)
        assert f"<!-- bench:{name} -->\n{rendered}\n<!-- /bench:{name} -->" in fresh
    for name in CAPTIONED:
        rendered = report.render(name, FIXTURES)
        # Each table says where, when and how it was measured, and that a quick run is one.
        meta = _load(name)["meta"]
        assert meta["commit"] in rendered
        assert meta["started"] in rendered
        assert report.BENCHMARKS[name].command in rendered
        assert ("quick run" in rendered) == bool(meta.get("quick"))
    assert report.update(fresh, FIXTURES) == fresh  # idempotent


def test_figures_come_from_the_document() -> None:
    """Change a figure in the results and the rendered table changes with it (no number is kept elsewhere)."""
    document = _load("sigv4")
    before = report.BENCHMARKS["sigv4"]
    import bench_sigv4

    document["data"]["ours_us"] = 12.3456
    rendered = bench_sigv4.render(document)
    assert "12.35" in rendered
    assert f"{document['data']['botocore_us'] / 12.3456:.1f}x" in rendered
    assert before.command in rendered


def test_suite_renders_the_honest_import_rows() -> None:
    rendered = report.render("suite", FIXTURES)
    imports = _load("suite")["data"]["summary"]["import_ms"]
    for ours, theirs in (
        (run.BARE, run.PEER_BARE),
        (run.EXPLICIT, run.PEER_FIRST),
        (run.DEFAULT_CHAIN, run.PEER_FIRST),
    ):
        assert f"| import {ours}, ms | {imports[ours]:,.0f} | {imports[theirs]:,.0f} | import {theirs} |" in rendered
    # ... and says what each row imported on the machine that measured it.
    for label, modules in _load("suite")["data"]["import_rows"].items():
        assert f"{label}: `{' '.join(modules)}`" in rendered


def test_check_passes_when_fresh_and_fails_on_a_hand_edited_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(report.update(_document(["sigv4", "sse"]), FIXTURES))
    assert report.main(["--check", "--results", str(FIXTURES), str(readme)]) == 0

    figure = f"{_load('sse')['data']['cpu_ms_per_stream']['ours']:.2f}"
    edited = readme.read_text().replace(f"| {figure} |", "| 0.01 |", 1)
    assert edited != readme.read_text()
    readme.write_text(edited)
    assert report.main(["--check", "--results", str(FIXTURES), str(readme)]) == 1
    assert "section sse differs" in capsys.readouterr().err
    assert readme.read_text() == edited  # --check changes nothing

    assert report.main(["--results", str(FIXTURES), str(readme)]) == 0  # without --check: rewritten
    assert report.main(["--check", "--results", str(FIXTURES), str(readme)]) == 0


def test_a_missing_results_file_is_an_error_naming_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(FIXTURES / "sse.json", results)
    readme = tmp_path / "README.md"
    readme.write_text(_document(["sse", "eventstream"]))
    original = readme.read_text()
    with pytest.raises(
        report.ReportError, match=r"eventstream\.json is missing: run `python benchmarks/bench_eventstream"
    ):
        report.update(original, results)
    assert report.main(["--results", str(results), str(readme)]) == 1
    assert "python benchmarks/bench_eventstream.py" in capsys.readouterr().err
    assert readme.read_text() == original  # nothing half-written, no old table kept as if fresh


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- bench:nonesuch -->\nx\n<!-- /bench:nonesuch -->\n", "no benchmark owns the section 'nonesuch'"),
        ("<!-- bench:sigv4 -->\nx\n", "unclosed or nested"),
        (
            "<!-- bench:sigv4 -->\n<!-- bench:sse -->\n<!-- /bench:sse -->\n<!-- /bench:sigv4 -->\n",
            "unclosed or nested",
        ),
    ],
)
def test_malformed_sections_are_errors(text: str, message: str) -> None:
    with pytest.raises(report.ReportError, match=message):
        report.update(text, FIXTURES)


def test_a_results_file_for_another_benchmark_is_refused(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "sse.json", tmp_path / "sigv4.json")
    with pytest.raises(report.ReportError, match="holds 'sse', not 'sigv4'"):
        report.render("sigv4", tmp_path)


def test_a_chart_drawn_from_other_data_fails_the_check(tmp_path: Path) -> None:
    """The chart records the digest of its data; a chart left behind by newer figures is stale."""
    pytest.importorskip("matplotlib")
    import chart

    shutil.copy(FIXTURES / "suite.json", tmp_path)
    text = _document(["suite"])
    assert report.check_charts(text, tmp_path) == [
        f"{tmp_path / 'suite.png'} is missing: run `python benchmarks/chart.py`"
    ]
    assert chart.main(["--results", str(tmp_path)]) == 0
    assert report.check_charts(text, tmp_path) == []
    document = _load("suite")
    document["data"]["summary"]["invoke"]["bedrock_chat"]["32"]["rps"] += 1.0
    (tmp_path / "suite.json").write_text(json.dumps(document))
    assert report.check_charts(text, tmp_path) == [
        f"{tmp_path / 'suite.png'} was drawn from other data than suite.json: run `python benchmarks/chart.py`"
    ]


def test_chart_series_are_the_suite_medians() -> None:
    import chart

    document = _load("suite")
    drawn = chart.series(document)
    invoke = document["data"]["summary"]["invoke"]
    assert set(drawn) == {name for name, rows in invoke.items() if any(r["rps"] is not None for r in rows.values())}
    ours = drawn["bedrock_chat"]
    assert ours["concurrency"] == [1.0, 32.0, 256.0]
    assert ours["rps"] == [invoke["bedrock_chat"][c]["rps"] for c in ("1", "32", "256")]


def test_all_py_stops_before_running_anything_when_a_registered_script_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    all_script = importlib.import_module("all")
    ghost = report.Benchmark("ghost", "bench_ghost.py", 0.1)
    monkeypatch.setitem(report.BENCHMARKS, "ghost", ghost)
    ran: list[object] = []

    def run_one(*args: object, **kwargs: object) -> int:
        ran.append(args)
        return 0

    monkeypatch.setattr(all_script, "_run", run_one)
    assert all_script.main(["--quick"]) == 1
    assert "registered in report.BENCHMARKS but missing: bench_ghost.py" in capsys.readouterr().err
    assert ran == []


def test_every_readme_section_has_an_owner() -> None:
    for path in report.DOCUMENTS:
        for name in report.sections(path.read_text()):
            assert name in report.BENCHMARKS, (path, name)
    assert "suite" in report.sections(report.DOCUMENTS[0].read_text())


@pytest.mark.parametrize("path", report.DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_the_readmes_match_the_committed_results(path: Path) -> None:
    """CI's guard against a hand-edited figure: every section is what its committed results render. A
    section whose results are not committed yet (the maintainer commits them from a full run on a quiet
    machine) must say it is not measured yet, so no figure sits there unbacked."""
    assert report.stale(path.read_text(), missing_ok=True) == []


def test_an_unbacked_figure_in_a_section_without_results_fails(tmp_path: Path) -> None:
    text = _document(["sigv4"], body=report.PLACEHOLDER + "\n")
    assert report.stale(text, tmp_path, missing_ok=True) == []
    assert report.stale(_document(["sigv4"]), tmp_path, missing_ok=True) == [
        f"section sigv4 has no results file, so it must read {report.PLACEHOLDER!r}"
    ]
    with pytest.raises(report.ReportError, match=r"sigv4\.json is missing"):
        report.stale(text, tmp_path)  # --check itself accepts no missing results
    # --missing-ok writes the placeholder over whatever the section held, and --check --missing-ok accepts it.
    readme = tmp_path / "README.md"
    readme.write_text(_document(["sigv4"]))
    assert report.main(["--check", "--missing-ok", "--results", str(tmp_path), str(readme)]) == 1
    assert report.main(["--missing-ok", "--results", str(tmp_path), str(readme)]) == 0
    assert readme.read_text() == text
    assert report.main(["--check", "--missing-ok", "--results", str(tmp_path), str(readme)]) == 0


# -- the import rows time what a first request loads -------------------------------------------------------

_FIRST_REQUEST = textwrap.dedent(
    """
    import asyncio, json, os, sys
    {imports}
    loaded = set(sys.modules)

    async def first() -> None:
    {request}

    asyncio.run(first())
    print(json.dumps(sorted(set(sys.modules) - loaded)))
    """
)
_OURS = """
        import bedrock_chat
        keys = {keys}
        client = bedrock_chat.AnthropicBedrock(region=os.environ["REGION"], endpoint_url=os.environ["URL"], **keys)
        async with client:
            messages = [{{"role": "user", "content": "hi"}}]
            await client.ChatCompletion.create(model=os.environ["MODEL"], messages=messages, max_tokens=8)"""
_AIOBOTOCORE = """
        import aiobotocore.session
        session = aiobotocore.session.get_session()
        where = {"region_name": os.environ["REGION"], "endpoint_url": os.environ["URL"]}
        async with session.create_client("bedrock-runtime", **where) as client:
            messages = [{"role": "user", "content": "hi"}]
            body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8, "messages": messages}
            response = await client.invoke_model(modelId=os.environ["MODEL"], body=json.dumps(body))
            await response["body"].read()"""


def _loaded_by_first_request(imports: tuple[str, ...], request: str, emulator: Any, tmp_path: Path) -> list[str]:
    """The modules a first request imports after ``imports`` (a fresh interpreter, the emulator on port 0)."""
    script = _FIRST_REQUEST.format(
        imports="\n".join(f"import {m}" for m in imports),
        request=textwrap.indent(textwrap.dedent(request).strip(), "    "),
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_") and key != "BEDROCK_CHAT_LOG"}
    env |= {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        "HOME": str(tmp_path),  # no shared config or credentials files from this machine
        "AWS_ACCESS_KEY_ID": emulator.access_key,
        "AWS_SECRET_ACCESS_KEY": emulator.secret_key,
        "AWS_EC2_METADATA_DISABLED": "true",
        "URL": emulator.endpoint_url,
        "REGION": emulator.region,
        "MODEL": "anthropic.claude-haiku-4-5-20251001-v1:0",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def _third_party(modules: list[str]) -> list[str]:
    """What is neither the standard library nor a C-extension's runtime helper module."""
    return [m for m in modules if m.split(".")[0] not in sys.stdlib_module_names and not m.startswith("_cython")]


@pytest.mark.parametrize(
    ("row", "keys"),
    [
        (
            run.EXPLICIT,
            "{'access_key': os.environ['AWS_ACCESS_KEY_ID'], 'secret_key': os.environ['AWS_SECRET_ACCESS_KEY']}",
        ),
        (run.DEFAULT_CHAIN, "{}"),
    ],
)
def test_bedrock_chat_rows_import_everything_its_first_request_loads(
    row: str, keys: str, bedrock_emulator: Any, tmp_path: Path
) -> None:
    request = _OURS.format(keys=keys)
    extra = _third_party(_loaded_by_first_request(run.IMPORTS[row], request, bedrock_emulator, tmp_path))
    assert extra == [], " ".join(extra)
    # ... and the bare row really leaves that work out (else the two rows would time the same thing).
    bare = _loaded_by_first_request(run.IMPORTS[run.BARE], request, bedrock_emulator, tmp_path)
    assert "bedrock_chat._http.httptools_transport" in bare
    assert "httptools" in bare
    assert "aiohttp" not in bare  # the default asyncio transport no longer loads aiohttp
    assert ("botocore.session" in bare) == (row == run.DEFAULT_CHAIN)
    # An application that never imports OpenTelemetry does not pay for its import on the first request.
    assert not [module for module in bare if module.startswith("opentelemetry")]


def test_aiobotocore_row_imports_everything_its_first_request_loads(bedrock_emulator: Any, tmp_path: Path) -> None:
    pytest.importorskip("aiobotocore")
    loaded = _loaded_by_first_request(run.IMPORTS[run.PEER_FIRST], _AIOBOTOCORE, bedrock_emulator, tmp_path)
    assert _third_party(loaded) == []
    assert "concurrent.futures.thread" not in loaded
