"""docs/walkthrough.md is what tools/walkthrough.py produces today: every figure current."""

import re
from pathlib import Path

import pytest

import walkthrough

ROOT = Path(__file__).parent.parent

STALE = "is out of date: run `python tools/walkthrough.py` and commit the result"


@pytest.fixture(scope="module")
def rendered() -> tuple[str, str]:
    return walkthrough.render()


def test_document_is_current(rendered):
    text, svg = rendered
    assert walkthrough.DOC.read_text(encoding="utf-8") == text, f"{walkthrough.DOC.name} {STALE}"
    assert walkthrough.SVG.read_text(encoding="utf-8") == svg, f"{walkthrough.SVG.name} {STALE}"


def test_document_shows_the_sentence_shapes_and_numbers(rendered):
    text, _ = rendered
    assert walkthrough.SENTENCE in text
    assert re.search(r"`\[1, \d+, \d+\]`", text)  # [batch, seq, dim] shapes
    assert len(re.findall(r"-?\d\.\d{4}", text)) > 50  # real numbers, 4 decimals
    assert f"]({walkthrough.SVG.name})" in text


def test_links_name_functions_defined_in_the_linked_files(rendered):
    text, _ = rendered
    links = re.findall(r"\[`([\w.]+)`\]\((\.\./[^)#]+)\)", text)
    assert len(links) >= 10
    for name, target in links:
        path = (walkthrough.DOC.parent / target).resolve()
        assert path.is_file(), target
        source = path.read_text(encoding="utf-8")
        if path.suffix == ".py":
            defined = name.rsplit(".", 1)[-1]
            assert re.search(rf"^\s*(def|class) {re.escape(defined)}\b", source, re.M), (
                f"{target} defines no {name}"
            )


def test_check_mode_fails_on_drift(tmp_path, monkeypatch, rendered, capsys):
    text, svg = rendered
    doc, image = tmp_path / "walkthrough.md", tmp_path / "walkthrough-attention.svg"
    monkeypatch.setattr(walkthrough, "DOC", doc)
    monkeypatch.setattr(walkthrough, "SVG", image)
    monkeypatch.setattr(walkthrough, "ROOT", tmp_path)
    monkeypatch.setattr(walkthrough, "render", lambda: rendered)
    doc.write_text(text, encoding="utf-8")
    image.write_text(svg, encoding="utf-8")
    assert walkthrough.main(["--check"]) == 0
    number = re.search(r"-?\d\.\d{4}", text).group()
    doc.write_text(text.replace(number, "9.9999", 1), encoding="utf-8")
    assert walkthrough.main(["--check"]) == 1
    assert "out of date: walkthrough.md; run python tools/walkthrough.py" in capsys.readouterr().out


def test_code_example_runs_and_prints_what_the_page_shows(rendered, capsys):
    text, _ = rendered
    code, shown = re.search(r"```python\n(.*?)```\n\n```text\n(.*?)```", text, re.S).groups()
    exec(compile(code, "walkthrough example", "exec"), {})
    assert capsys.readouterr().out == shown
