"""flaubert_np/lines.py: each input line's text, id, or the kind of problem it has and why."""

import pytest

from flaubert_np import lines
from flaubert_np.lines import InputSpec


@pytest.mark.parametrize(
    ("raw", "field", "kind", "reason"),
    [
        (b"\n", None, "blank", "blank line"),
        (b" \t\r\n", None, "blank", "blank line"),
        (b"caf\xe9\n", None, "invalid", "not UTF-8 (byte 3)"),
        (b"\n", "text", "invalid", "blank line, no JSON"),
        (
            b"{bad json}\n",
            "text",
            "invalid",
            "invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        ),
        (b"[1, 2]\n", "text", "invalid", "not a JSON object (array)"),
        (b'{"id": 1}\n', "text", "invalid", "no field 'text'"),
        (b'{"text": 3, "id": 1}\n', "text", "invalid", "field 'text' is not a string (number)"),
        (b'{"text": " ", "id": 1}\n', "text", "blank", "field 'text' is blank"),
        (b'{"text": "Oui."}\n', "text", "invalid", "no field 'id'"),
        (
            b'{"text": "Oui.", "id": [1]}',
            "text",
            "invalid",
            "field 'id' is not a string or an integer (array)",
        ),
        (
            b'{"text": "Oui.", "id": true}',
            "text",
            "invalid",
            "field 'id' is not a string or an integer (boolean)",
        ),
    ],
)
def test_problem_lines_have_a_kind_and_a_reason(raw, field, kind, reason):
    spec = InputSpec(field, "id" if field else None)
    assert lines.classify(raw, spec)[2:] == (kind, reason)


def test_valid_lines():
    assert lines.classify(b"  Bonjour. \r\n", InputSpec()) == ("  Bonjour. ", None, None, "")
    assert lines.classify("Déjà vu\n".encode(), InputSpec())[:3] == ("Déjà vu", None, None)
    spec = InputSpec("phrase", "id")
    assert lines.classify(b'{"phrase": "Oui.", "id": "a7"}', spec)[:3] == ("Oui.", "a7", None)
    assert lines.classify(b'{"phrase": "Non.", "id": 12}\n', spec)[:3] == ("Non.", 12, None)
