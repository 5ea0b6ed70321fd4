"""Pure parts of the CLI, without Redis: docker's ``--since``/``--until`` forms, Go templates for
``--format``, docker's table alignment and usage errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from statestore import Container, InvalidArgumentError
from statestore._wording import parse_go_duration, parse_time_arg
from statestore.cli._format import ContainerContext, prepare_format, render_rows, tabwrite
from statestore.cli._format import _HeaderOnly as HeaderOnly
from statestore.cli._template import Template
from statestore.cli._times import MAX_SEQ, Position, events_range

NOW = datetime(2024, 12, 4, 10, 30, 0, 250000, tzinfo=UTC)
S = 10**9


def ns(dt: datetime) -> int:
    return int(dt.timestamp()) * S + dt.microsecond * 1000


# --- --since / --until ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("10m", 600 * S), ("1h30m", 5400 * S), ("1.5s", int(1.5 * S)), ("-2s", -2 * S), ("300ms", 3 * 10**8),
    ("0s", 0), (".5h", 1800 * S),
])
def test_go_durations(text: str, expected: int) -> None:
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize("text", ["0", "10", "m", "10x", "1h 2m", "", "1733300000"])
def test_not_go_durations(text: str) -> None:
    assert parse_go_duration(text) is None


def test_durations_count_back_from_now_in_whole_seconds() -> None:
    assert parse_time_arg("10m", NOW) == (int(NOW.timestamp()) - 600) * S
    assert parse_time_arg("-1m", NOW) == (int(NOW.timestamp()) + 60) * S


@pytest.mark.parametrize(("text", "expected"), [
    ("1733300000", 1733300000 * S),
    ("1733300000.5", 1733300000 * S + 500_000_000),
    ("1733300000.000000001", 1733300000 * S + 1),
    ("0", 0),
    ("2024-12-04T10:30:00Z", ns(datetime(2024, 12, 4, 10, 30, tzinfo=UTC))),
    ("2024-12-04T10:30:00.123456789Z", ns(datetime(2024, 12, 4, 10, 30, tzinfo=UTC)) + 123456789),
    ("2024-12-04T10:30:00+01:00", ns(datetime(2024, 12, 4, 9, 30, tzinfo=UTC))),
    ("2024-12-04T10:30:00-02:30", ns(datetime(2024, 12, 4, 13, 0, tzinfo=UTC))),
    ("2024-12-04T10:30Z", ns(datetime(2024, 12, 4, 10, 30, tzinfo=UTC))),
    ("2024-12-04T10Z", ns(datetime(2024, 12, 4, 10, tzinfo=UTC))),
    ("2024-12-04Z", ns(datetime(2024, 12, 4, tzinfo=UTC))),
])
def test_times_docker_accepts(text: str, expected: int) -> None:
    assert parse_time_arg(text, NOW) == expected


def test_a_time_without_zone_is_local() -> None:
    local = NOW.astimezone().utcoffset() or timedelta(0)
    for text, dt in [("2024-12-04T10:30:00", datetime(2024, 12, 4, 10, 30)),
                     ("2024-12-04T10:30", datetime(2024, 12, 4, 10, 30)),
                     ("2024-12-04T10", datetime(2024, 12, 4, 10)),
                     ("2024-12-04", datetime(2024, 12, 4)),
                     ("2024-12-04T10:30:00.5", datetime(2024, 12, 4, 10, 30, 0, 500000))]:
        assert parse_time_arg(text, NOW) == ns(dt.replace(tzinfo=timezone(local))), text


@pytest.mark.parametrize(("text", "message"), [
    ("yesterday", 'failed to parse value as time or duration: "yesterday"'),
    ("1733300000.", 'failed to parse value as time or duration: "1733300000."'),
    ("2024-13-01", 'parsing time "2024-13-01"'),
    ("2024-12-04T25:00:00Z", 'parsing time "2024-12-04T25:00:00Z"'),
    ("2024-12-04t10:00:00z", 'parsing time'),
])
def test_bad_times(text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message.replace(".", r"\.")):
        parse_time_arg(text, NOW)


def test_events_range_revisions_and_times() -> None:
    assert events_range("0-0", None, NOW) == Position(since="0-0")
    assert events_range("1733300000000-5", "1733300000001-0", NOW) == Position(
        since="1733300000000-5", until="1733300000001-0")
    # a time: from the first entry of its millisecond on; until: the last entry of its millisecond
    assert events_range("1733300000.0005", "1733300001.9999", NOW) == Position(
        start="1733300000001-0", until=f"1733300001999-{MAX_SEQ}")
    assert events_range("1733300000", None, NOW) == Position(start="1733300000000-0")
    # --until alone replays from the start of the log, as docker replays what it holds
    assert events_range(None, "1733300000", NOW) == Position(start="0-0", until=f"1733300000000-{MAX_SEQ}")
    assert events_range("10m", None, NOW).start == f"{(int(NOW.timestamp()) - 600) * 1000}-0"


def test_events_range_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="cannot be after"):
        events_range("2024-12-05", "2024-12-04", NOW)
    with pytest.raises(InvalidArgumentError, match="cannot be after"):
        events_range("5-0", "4-9", NOW)
    with pytest.raises(InvalidArgumentError):
        events_range("1-99999999999999999999999", None, NOW)


# --- Go templates -----------------------------------------------------------------------------------
def web() -> Container:
    c = Container.new("nginx:1.27", name="web", labels={"app": "shop", "com.example.my-tier": "front"},
                      cmd=["sh", "-c", 'echo "hello world"; sleep 1000'], id="ab" * 32)
    c.state.set_running(pid=4)
    return c


def ctx(trunc: bool = True) -> ContainerContext:
    return ContainerContext(web(), trunc, datetime.now(UTC))


@pytest.mark.parametrize(("fmt", "expected"), [
    (r"{{.ID}}\t{{.Names}}", "abababababab\tweb"),
    ("{{.ID}}: {{.Image}} {{.State}}", "abababababab: nginx:1.27 running"),
    ("{{.Command}}", r'"sh -c echo \"hello w…"'),
    ('{{.Label "app"}}/{{.Label "nope"}}', "shop/"),
    ("{{.Labels}}", "app=shop,com.example.my-tier=front"),
    ("{{.Size}} {{.Mounts}}|{{.Networks}}|{{.Ports}}", "0B |bridge|"),
    ("{{upper .Names}} {{.Names | upper}} {{json .Names}}", 'WEB WEB "web"'),
    ("{{join (split .Labels \",\") \";\"}}", None),
    ("{{- .Names -}}  ", "web"),
    ("  {{.Names}}  ", "web"),
    (r"{{.Names}}\n{{.State}}", "web\nrunning"),
    ("{{truncate .ID 4}} {{pad .Names 1 1}}|", "abab  web |"),
])
def test_ps_templates(fmt: str, expected: str | None) -> None:
    if expected is None:  # parentheses are not supported: a parse error, not a wrong answer
        with pytest.raises(InvalidArgumentError, match="failed to parse template"):
            Template(prepare_format(fmt)[1])
        return
    assert Template(prepare_format(fmt)[1]).render(ctx()) == expected


def test_ps_template_without_trunc_and_created_at() -> None:
    t = Template("{{.ID}} {{.Command}}")
    assert t.render(ctx(trunc=False)) == "ab" * 32 + r' "sh -c echo \"hello world\"; sleep 1000"'
    created = Template("{{.CreatedAt}}").render(ctx())
    assert len(created.split(" ")) == 4 and created.split(" ")[0].count("-") == 2, created
    assert Template("{{.RunningFor}}").render(ctx()).endswith(" ago")


@pytest.mark.parametrize(("fmt", "message"), [
    ("{{.Foo}}", 'failed to execute template: template: :1:2: executing "" at <.Foo>: '
                 "can't evaluate field Foo in type *formatter.ContainerContext"),
    ("x\n  {{.Names.Bar}}", 'failed to execute template: template: :2:4: executing "" at <.Names.Bar>: '
                            "can't evaluate field Bar in type string"),
    ("{{.Label}}", "wrong number of args for Label"),
    ('{{.Names "x"}}', "can't give argument to non-function .Names"),
])
def test_template_execution_errors(fmt: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        Template(fmt).render(ctx())
    assert message in str(err.value)


@pytest.mark.parametrize(("fmt", "message"), [
    ("{{.Names", "failed to parse template: template: :1: unclosed action"),
    ("{{nosuch .Names}}", 'failed to parse template: template: :1: function "nosuch" not defined'),
    ("{{.Names}", "failed to parse template: template: :1: bad character U+007D '}'"),
    ("{{}}", "failed to parse template: template: :1: missing value for command"),
])
def test_template_parse_errors(fmt: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        Template(fmt)
    assert str(err.value) == message


def test_inspect_templates_on_records() -> None:
    doc = web().to_dict()
    assert Template("{{.State.Status}}").render(doc) == "running"
    assert Template("{{.State.Pid}} {{.State.Running}}").render(doc) == "4 true"
    assert Template("{{json .Config.Labels}}").render(doc) == '{"app":"shop","com.example.my-tier":"front"}'
    assert Template("{{.Name}} {{.Nope}}").render(doc) == "/web <no value>"
    assert Template("{{.Config.Cmd}}").render(doc) == '[sh -c echo "hello world"; sleep 1000]'
    assert Template("{{index}}" if False else "{{.Config.Labels}}").render(doc) == (
        "map[app:shop com.example.my-tier:front]")
    with pytest.raises(InvalidArgumentError, match="nil pointer evaluating"):
        Template("{{.Nope.Deeper}}").render(doc)


def test_table_formats_get_a_header_and_docker_alignment() -> None:
    out = render_rows(r'table {{.ID}}\t{{.Names}}\t{{.Label "com.example.my-tier"}}', [ctx()], HeaderOnly())
    assert out == ("CONTAINER ID   NAMES     my tier\n"
                   "abababababab   web       front\n")
    # no rows: the header alone, as docker prints it
    assert render_rows(r"table {{.Names}}\t{{.State}}", [], HeaderOnly()) == "NAMES     STATE\n"
    assert render_rows(r"{{.Names}}", [ctx(), ctx()], HeaderOnly()) == "web\nweb\n"


def test_tabwrite_is_docker_tabwriter() -> None:
    # minimum width 10 (padding included), padding 3, the last cell not padded
    assert tabwrite("a\tbb\tc\nlonger-cell\tx\ty") == "a             bb        c\nlonger-cell   x         y"
