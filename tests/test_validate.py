"""validate (SPEC §2): every kind of problem with line, field and message; duplicates across the
whole file (also across parallel chunks); blank lines; the CLI's exit codes, JSON and text."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from polylog_console.core.model.progress import Cancelled, Progress
from polylog_console.core.runbook import validate as v
from polylog_console.demo.sample import make_polyforms, polyform_lines

GOOD = {"uuid": "0123456789abcdef0123456789abcdef", "composition": "AAB", "namespace": "clusters",
        "unicode_char": "▲", "O": 2, "I": 4, "vertices": [[0, 0]], "fold_angles": [90.0], "stability": 0.5}


def line(**changes) -> bytes:
    obj = {**GOOD, **changes}
    for key, value in changes.items():
        if value is _DROP:
            del obj[key]
    return orjson.dumps(obj)


_DROP = object()


def check(tmp_path, content: bytes, **kwargs) -> v.ValidationReport:
    path = tmp_path / "stable_polyforms.jsonl"
    path.write_bytes(content)
    return v.validate_file(path, **kwargs)


def only_error(report: v.ValidationReport) -> v.ValidationError:
    assert not report.valid
    assert report.error_count == len(report.errors) == 1, report.errors
    return report.errors[0]


def test_a_good_line_is_valid(tmp_path):
    report = check(tmp_path, line() + b"\n")
    assert report.valid and report.error_count == 0 and report.errors == []
    assert (report.lines, report.polyforms) == (1, 1)


def test_only_required_fields_and_extra_properties_are_valid(tmp_path):
    report = check(tmp_path, b'{"uuid": "%s", "composition": "A", "colour": "red", "O": 2.0}\n' % (b"f" * 32))
    assert report.valid, report.errors


# Every case of SPEC §2: (line content, field, words the message must contain)
CASES = [
    (b'{"uuid": "0123', "(line)", "not valid JSON"),
    (b"\xff\xfe{}", "(line)", "not valid JSON"),
    (b"[1, 2]", "(line)", "expected a JSON object, got array"),
    (b'"just a string"', "(line)", "got string"),
    (b"42", "(line)", "got integer"),
    (b"null", "(line)", "got null"),
    (line(uuid=_DROP), "uuid", "required field is missing"),
    (line(composition=_DROP), "composition", "required field is missing"),
    (line(uuid="0123456789ABCDEF0123456789ABCDEF"), "uuid", "must match pattern"),
    (line(uuid="0123"), "uuid", "must match pattern"),
    (line(uuid="0123456789abcdef0123456789abcdef\n"), "uuid", "must match pattern"),
    (line(uuid=12345), "uuid", "must be string (got integer 12345)"),
    (line(composition=["A", "B"]), "composition", "must be string"),
    (line(namespace="galaxies"), "namespace", "must be one of"),
    (line(namespace=None), "namespace", "must be string"),
    (line(unicode_char=""), "unicode_char", "must be longer than or equal to 1"),
    (line(unicode_char="▲▲▲"), "unicode_char", "must be shorter than or equal to 2"),
    (line(unicode_char=7), "unicode_char", "must be string"),
    (line(O=0), "O", "must be bigger than or equal to 1"),
    (line(O="2"), "O", "must be integer"),
    (line(O=True), "O", "must be integer"),
    (line(O=1.5), "O", "must be integer"),
    (line(I=-3), "I", "must be bigger than or equal to 1"),
    (line(vertices={"x": 1}), "vertices", "must be array"),
    (line(fold_angles="90"), "fold_angles", "must be array"),
    (line(stability=1.01), "stability", "must be smaller than or equal to 1"),
    (line(stability=-0.1), "stability", "must be bigger than or equal to 0"),
    (line(stability="0.5"), "stability", "must be number"),
    (line(stability=False), "stability", "must be number"),
]


@pytest.mark.parametrize(("content", "field", "words"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_every_kind_of_problem_has_line_field_and_message(tmp_path, content, field, words):
    other = line(uuid="f" * 32, unicode_char="●")
    report = check(tmp_path, other + b"\n" + content + b"\n" + line(uuid="e" * 32, unicode_char="○") + b"\n")
    error = only_error(report)
    assert (error.line, error.field) == (2, field)
    assert words in error.message
    assert report.lines == 3


def test_every_violation_of_a_line_is_reported_not_only_the_first(tmp_path):
    bad = line(uuid="XYZ", composition=_DROP, namespace="galaxies", unicode_char="abc", O=0, I=True,
               stability=2, vertices="none")
    report = check(tmp_path, bad + b"\n")
    fields = sorted(e.field for e in report.errors)
    assert fields == sorted(["uuid", "composition", "namespace", "unicode_char", "O", "I", "stability", "vertices"])
    assert all(e.line == 1 for e in report.errors)
    assert report.error_count == 8


def test_duplicate_uuid_names_the_first_line(tmp_path):
    content = b"\n".join([line(), line(uuid="f" * 32, unicode_char="●"), line(unicode_char="○")]) + b"\n"
    error = only_error(check(tmp_path, content))
    assert (error.line, error.field) == (3, "uuid")
    assert "duplicate uuid 0123456789abcdef0123456789abcdef, first on line 1" in error.message


def test_duplicate_symbol_within_a_namespace_but_not_across_namespaces(tmp_path):
    content = b"\n".join([
        line(),  # clusters ▲
        line(uuid="a" * 32, namespace="megas"),  # megas ▲: another namespace, fine
        line(uuid="b" * 32, namespace=_DROP),  # no namespace means clusters: duplicate of line 1
        line(uuid="c" * 32, namespace="megas", unicode_char="●"),
        line(uuid="d" * 32, namespace="megas", unicode_char="●"),  # duplicate of line 4
    ]) + b"\n"
    report = check(tmp_path, content)
    assert [(e.line, e.field) for e in report.errors] == [(3, "unicode_char"), (5, "unicode_char")]
    assert "namespace clusters, first on line 1" in report.errors[0].message
    assert "namespace megas, first on line 4" in report.errors[1].message


def test_blank_lines_are_ignored_but_keep_line_numbers(tmp_path):
    content = b"\n" + line() + b"\n   \n\t\n" + b"[]" + b"\n\n"
    report = check(tmp_path, content)
    error = only_error(report)
    assert error.line == 5
    assert (report.lines, report.polyforms) == (6, 1)


def test_empty_file_is_valid_with_no_polyforms(tmp_path):
    report = check(tmp_path, b"")
    assert report.valid and (report.lines, report.polyforms) == (0, 0)


def test_last_line_without_newline_and_crlf_line_ends(tmp_path):
    content = line() + b"\r\n" + line(uuid="a" * 32, unicode_char="●", O=0)
    error = only_error(check(tmp_path, content))
    assert (error.line, error.field) == (2, "O")


def test_missing_source_is_a_one_line_workspace_error(tmp_path):
    from polylog_console.core.model.errors import WorkspaceError

    with pytest.raises(WorkspaceError, match="source not found"):
        v.validate_file(tmp_path / "nope.jsonl")


def test_generated_source_is_valid_in_process_and_in_parallel(tmp_path):
    data = polyform_lines(make_polyforms(3000, seed=11))
    serial = check(tmp_path, data, workers=1)
    parallel = check(tmp_path, data, workers=2, chunk_size=64 << 10)
    assert serial.valid and parallel.valid
    assert (serial.lines, serial.polyforms) == (parallel.lines, parallel.polyforms) == (3000, 3000)
    assert parallel.workers == 2


def broken_source(count: int, seed: int) -> tuple[bytes, list[tuple[int, str]]]:
    """A generated source with problems planted at random lines, and the (line, field) expected."""
    rng = random.Random(seed)
    polyforms = make_polyforms(count, seed=seed)
    lines = [orjson.dumps(p) for p in polyforms]
    expected: list[tuple[int, str]] = []
    for index in sorted(rng.sample(range(10, count), 40)):
        kind = rng.choice(["json", "array", "uuid", "dup-uuid", "dup-symbol", "stability", "blank"])
        p = dict(polyforms[index])
        if kind == "json":
            lines[index] = lines[index][:-5]
            expected.append((index + 1, "(line)"))
        elif kind == "array":
            lines[index] = b"[]"
            expected.append((index + 1, "(line)"))
        elif kind == "uuid":
            p["uuid"] = "nope"
            lines[index] = orjson.dumps(p)
            expected.append((index + 1, "uuid"))
        elif kind == "dup-uuid":
            p["uuid"] = polyforms[rng.randrange(0, 10)]["uuid"]
            lines[index] = orjson.dumps(p)
            expected.append((index + 1, "uuid"))
        elif kind == "dup-symbol":
            first = next(q for q in polyforms[:10] if q["namespace"] == p["namespace"])
            p["unicode_char"] = first["unicode_char"]
            lines[index] = orjson.dumps(p)
            expected.append((index + 1, "unicode_char"))
        elif kind == "stability":
            p["stability"] = 3
            lines[index] = orjson.dumps(p)
            expected.append((index + 1, "stability"))
        else:
            lines[index] = b"   "
    return b"\n".join(lines) + b"\n", expected


def test_parallel_chunks_report_exactly_what_a_single_pass_reports(tmp_path):
    data, expected = broken_source(4000, seed=3)
    serial = check(tmp_path, data, workers=1)
    parallel = check(tmp_path, data, workers=2, chunk_size=32 << 10)  # ~40 chunks: duplicates cross them
    assert [(e.line, e.field) for e in serial.errors] == expected
    assert parallel.errors == serial.errors
    assert (parallel.lines, parallel.polyforms, parallel.error_count) == (serial.lines, serial.polyforms,
                                                                          serial.error_count)


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 1 << 20])
def test_split_chunks_cover_the_data_at_line_boundaries(chunk_size):
    rng = random.Random(chunk_size)
    data = b"".join(b"x" * rng.randrange(0, 50) + b"\n" for _ in range(300)) + b"tail"
    ranges = v.split_chunks(data, chunk_size)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    for (start, end, first), nxt in zip(ranges, [*ranges[1:], None]):
        assert first == data.count(b"\n", 0, start) + 1
        if nxt is not None:
            assert nxt[0] == end and data[end - 1:end] == b"\n"


def test_errors_beyond_the_cap_are_counted_and_said(tmp_path, monkeypatch):
    monkeypatch.setattr(v, "MAX_ERRORS", 5)
    report = check(tmp_path, b"[]\n" * 12, workers=1)
    assert report.error_count == 12 and len(report.errors) == 5 and report.truncated
    assert report.to_json()["errors_truncated"] is True
    assert "only the first 5 are kept" in report.render_text(limit=3)


def test_render_text_is_safe_and_limited(tmp_path):
    hostile = line(unicode_char="\x1b]52;c;aGk=\x07\x1b[2J", uuid="\u202eevil")
    report = check(tmp_path, b"\n".join([hostile] * 4) + b"\n")
    text = report.render_text(limit=2)
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert "\\u001b]52" in text or "\\x1b]52" in text  # shown escaped, not interpreted
    assert "\\u202eevil" in text
    assert text.splitlines()[0].startswith("stable_polyforms.jsonl: INVALID")
    assert text.splitlines()[-1].strip().startswith(f"... and {report.error_count - 2} more")


def test_cancel_between_chunks_raises_cancelled(tmp_path):
    data = polyform_lines(make_polyforms(500, seed=2))
    progress = Progress(lambda u: progress.cancel() if u.done > 0 else None, min_interval=0)
    with pytest.raises(Cancelled):
        check(tmp_path, data, workers=1, chunk_size=4096, progress=progress)


def test_cli_validate_sample_workspace_is_valid(sample_ws, cli):
    result = cli("validate", "--workspace", str(sample_ws.root), "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["valid"] is True and doc["error_count"] == 0 and doc["errors"] == []
    assert doc["lines"] == doc["polyforms"] == 2000
    text = cli("validate", "--workspace", str(sample_ws.root))
    assert text.code == 0 and "VALID, 2,000 polyforms in 2,000 lines" in text.out


def test_cli_validate_invalid_source_exit_1_with_every_error(small_ws, cli):
    source = small_ws.root / "stable_polyforms.jsonl"
    lines = source.read_bytes().splitlines()
    lines[4] = b"{broken"
    lines[9] = lines[3]  # duplicate uuid and duplicate symbol of line 4
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = cli("validate", "--workspace", str(small_ws.root), "--json")
    assert result.code == 1, result.err
    doc = json.loads(result.out)
    assert doc["valid"] is False and doc["error_count"] == 3 == len(doc["errors"])
    assert [(e["line"], e["field"]) for e in doc["errors"]] == [(5, "(line)"), (10, "uuid"), (10, "unicode_char")]
    assert all(set(e) == {"line", "field", "message"} for e in doc["errors"])
    text = cli("validate", "--workspace", str(small_ws.root))
    assert text.code == 1
    assert "INVALID, 3 errors in 200 lines" in text.out and "line 10  uuid: duplicate uuid" in text.out
    events = [json.loads(x) for x in (small_ws.root / "memory/audit/events.jsonl").read_text().splitlines()]
    validate_events = [(e["event"], e.get("outcome")) for e in events if e.get("action") == "validate"]
    assert validate_events == [("action_started", None), ("action_finished", "problem")] * 2


def test_cli_validate_missing_source_exit_2_one_line(tmp_path, cli):
    result = cli("validate", "--workspace", str(tmp_path))
    assert result.code == 2
    assert "source not found" in result.err and result.err.count("\n") == 1


def test_a_source_written_while_workers_read_it_is_refused(tmp_path):
    from polylog_console.core.model.errors import PolylogError

    path = tmp_path / "stable_polyforms.jsonl"
    path.write_bytes(polyform_lines(make_polyforms(1500, seed=4)))

    def append_once(update) -> None:  # runs in this process each time a worker finishes a chunk
        if update.done and not appended:
            appended.append(True)
            with open(path, "ab") as handle:
                handle.write(b"[]\n")

    appended: list[bool] = []
    with pytest.raises(PolylogError, match="changed while it was being read"):
        v.validate_file(path, Progress(append_once, min_interval=0), workers=2, chunk_size=32 << 10)
    assert appended
    report = v.validate_file(path, workers=2, chunk_size=32 << 10)  # unchanged now: checked normally
    assert report.error_count == 1 and report.errors[0].field == "(line)"
