"""The CLI's one convention (cli/options.py): bad options are refused by the option parser with
exit 2 before anything runs, exit codes are 0, 1 or 2 and nothing else, and every case a new
user tried in issue 16 ends in a clear message."""

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from netvirt.management.cli import _register, app
from netvirt.management.cli.options import run

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")
_register()


def netvirt(*args: str):
    return CliRunner().invoke(app, list(args))


def test_version():
    result = netvirt("--version")
    assert result.exit_code == 0 and result.stdout.startswith("netvirt ") and result.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["trace", QUICKSTART, "--from", "web-1", "--to", "db-1", "-o", "/nonexistent/dir/x"], "no directory"),
        (["reach", QUICKSTART, "-o", "/nonexistent/dir/x"], "no directory"),
        (["init", "/nonexistent/dir/x.yaml"], "no directory"),
        (["status", "/typo/spec.yaml"], "no such spec file"),
        (["agent", "--host", "h", "--resync", "0"], "greater than or equal to 0.1"),
        (["agent", "--host", "h", "--resync", "-1"], "greater than or equal to 0.1"),
        (["trace", QUICKSTART, "--from", "web-1", "--to", "db-1", "--proto", "icmp", "--dport", "80"],
         "cannot be used with --proto icmp"),
        (["verify", QUICKSTART, "--from", "web-1", "--to", "db-1", "--proto", "icmp", "--dport", "80"],
         "cannot be used with --proto icmp"),
        (["trace", QUICKSTART, "--from", "web-1", "--to", "db-1", "--size", "10"],
         "--size 10 is smaller than the smallest tcp packet over IPv4 (40 bytes)"),
        (["up", QUICKSTART, "--timeout", "-1"], "greater than or equal to 0"),
        (["apply", QUICKSTART, "--timeout", "-1"], "greater than or equal to 0"),
        (["up", QUICKSTART, "--backend", "sim", "--filter", "nftables", "--filter", "iptables"], "the same host twice"),
        (["trace", QUICKSTART, "--from", "web-1", "--from", "db-1", "--to", "db-1"], "given twice"),
        (["pcap", "show", "x.pcap", "-f", "json", "--format", "text"], "given twice"),
        (["controller", "--store", "bogus://x"], "use sqlite://PATH (embedded) or etcd://HOST:PORT"),
        (["agent", "--host", "h", "--store", "bogus://x"], "use sqlite://PATH (embedded) or etcd://HOST:PORT"),
        (["apply", QUICKSTART, "--controller", "not-a-url"], "is not an http(s)://HOST[:PORT] URL"),
        (["status", "--controller", "http://127.0.0.1:99999"], "is not an http(s)://HOST[:PORT] URL"),
        (["diagram", QUICKSTART, "-f", "png", "-o", "/tmp/x.svg"], "png, but -o /tmp/x.svg is a .svg file"),
        (["trace", QUICKSTART, "--from", "web-1", "--to", "db-1", "-f", "json", "-o", "/tmp/x.pcap"],
         "json, but -o /tmp/x.pcap is a .pcap file"),
    ],
)
def test_bad_input_is_refused_with_exit_2_and_says_why(args, says):
    result = netvirt(*args)
    flat = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and says in flat, result.output
    assert "Traceback" not in result.output


def test_a_repeatable_option_may_repeat_when_it_does_not_contradict_itself(tmp_path):
    result = netvirt("up", QUICKSTART, "--backend", "sim", "--filter", "nftables", "--filter", "host-a=iptables",
                     "--timeout", "0")
    assert "the same host twice" not in result.output and result.exit_code in (0, 1), result.output


@pytest.mark.parametrize(("args", "suffix", "magic"), [
    (["diagram", QUICKSTART], "png", b"\x89PNG"),
    (["trace", QUICKSTART, "--from", "web-1", "--to", "db-1"], "pcap", b"\xd4\xc3\xb2\xa1"),
    (["trace", QUICKSTART, "--from", "web-1", "--to", "db-1"], "json", b"{"),
])
def test_an_output_format_not_given_follows_the_file_name(tmp_path, args, suffix, magic):
    """``-o drop.png`` without ``-f png`` wrote SVG text into drop.png."""
    out = tmp_path / f"out.{suffix}"
    result = netvirt(*args, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic)


def test_help_texts_flow_as_paragraphs():
    """Rich kept a docstring's line breaks: ``netvirt --help`` broke lines mid-sentence."""
    def commands(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, f"{path} {name}")

    broken = [path for path, command in commands(typer.main.get_command(app), "netvirt")
              if any("\n" in paragraph for paragraph in (command.help or "").split("\n\n"))]
    assert not broken and len(list(commands(typer.main.get_command(app), "netvirt"))) > 20, broken


def test_run_allows_only_exit_codes_0_1_2(capsys):
    odd = typer.Typer()

    @odd.command()
    def exits(code: int) -> None:
        raise SystemExit(code)

    for code, expected in ((0, 0), (1, 1), (2, 2), (3, 1), (127, 1)):
        with pytest.raises(SystemExit) as done:
            import sys

            sys.argv = ["netvirt", str(code)]
            run(odd)
        assert done.value.code == expected
