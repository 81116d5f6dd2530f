"""Benchmark JSON lines -> PNG plots (matplotlib) for docs/benchmarks.md.

Reads every JSON line of the files given (default: bench/results/*.jsonl, the runs
docs/benchmarks.md quotes) and draws what they hold:

- ``classifier.png`` (``"bench": "classifier"``): lookups/s against the number of rules, the
  linear chain and the compiled tuple-space classifier (log-log), compiled/linear on top;
- ``linux-rules-rtt.png`` (``"bench": "linux"`` runs with different ``--rules``): the UDP round
  trip through a router holding N non-matching rules, nftables and iptables, against N;
- ``linux-bring-up.png`` (``"bench": "linux"`` runs with different ``--hosts``): seconds to bring
  a generated spec up with ``LinuxBackend``, to converge it again and to tear it down, against
  the number of hosts (with the bare Builder overlay's bring-up beside it).

Reproduce: .venv/bin/python bench/plot.py [FILE.jsonl ...] [-o docs/img]. Lines of other
benchmarks are skipped (named on stderr); a plot whose data is missing is not drawn.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"linear": "#d1242f", "compiled": "#1f6feb", "iptables": "#d1242f", "nftables": "#1f6feb", "base": "#57606a"}


def read(paths: list[Path]) -> list[dict]:
    """Every JSON object of the files' lines (blank lines skipped); ValueError naming a bad line."""
    lines = []
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from None
    return lines


def classifier(run: dict, out: Path) -> Path:
    sizes = sorted(run["results"], key=int)
    rules = [int(size) for size in sizes]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for variant in ("linear", "compiled"):
        rates = [run["results"][size][f"{variant}_per_s"] for size in sizes]
        axes.plot(rules, rates, marker="o", color=COLOURS[variant], label=f"{variant} classifier")
    for rule, size in zip(rules, sizes):
        result = run["results"][size]
        axes.annotate(f"{result['ratio']:g}x", (rule, result["compiled_per_s"]), textcoords="offset points",
                      xytext=(0, 7), ha="center", fontsize=8, color=COLOURS["compiled"])
    top = max(run["results"][size]["compiled_per_s"] for size in sizes)
    axes.set_ylim(top=top * 3)  # room for the ratio labels
    axes.set(xscale="log", yscale="log", xlabel="rules in the chain", ylabel="lookups per second",
             title=f"Classifier: lookups/s vs rules ({run['probes']} probes, Python {run['python']})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return save(figure, out / "classifier.png")


def linux_rules(runs: list[dict], out: Path) -> Path | None:
    points = []
    for run in runs:
        count = next((int(m.group(1)) for key in run if (m := re.fullmatch(r"apply_(\d+)_rules_nftables_s", key))), None)
        if count is not None:
            points.append((count, run))
    points.sort(key=lambda point: point[0])
    if len({count for count, _ in points}) < 2:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    counts = [count for count, _ in points]
    for backend in ("nftables", "iptables"):
        rtts = [run[f"routed_{count}_rules_{backend}_udp_rtt_us"] for count, run in points]
        axes.plot(counts, rtts, marker="o", color=COLOURS[backend], label=f"{backend}: N non-matching rules")
    axes.plot(counts, [run["routed_no_rules_udp_rtt_us"] for _, run in points], marker=".", linestyle="--",
              color=COLOURS["base"], label="the same router, no rules")
    axes.set(xscale="log", yscale="log", xlabel="rules in the router's forward chain (N)",
             ylabel="UDP request/response RTT (µs, median)", title="Filtering cost: nftables vs iptables")
    axes.yaxis.set_major_formatter(ScalarFormatter())
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return save(figure, out / "linux-rules-rtt.png")


def linux_bring_up(runs: list[dict], out: Path) -> Path | None:
    by_hosts: dict[int, dict] = {}
    for run in runs:
        if "spec_up_s" in run:
            by_hosts.setdefault(run["hosts"], run)  # the first run of each size
    if len(by_hosts) < 2:
        return None
    hosts = sorted(by_hosts)
    endpoints = {by_hosts[h]["endpoints_per_host"] for h in hosts}
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    series = (("spec_up_s", "LinuxBackend up (namespaces, links, rules, read-back)", "#1f6feb", "-"),
              ("spec_converge_noop_s", "LinuxBackend converge again", "#8250df", "-"),
              ("spec_down_s", "tear down", "#1a7f37", "-"),
              ("up_s", "bare Builder overlay up (no router, no rules)", "#57606a", "--"))
    for key, label, colour, style in series:
        axes.plot(hosts, [by_hosts[h][key] for h in hosts], marker="o", color=colour, linestyle=style, label=label)
    axes.set(xlabel="hosts", ylabel="seconds",
             title=f"Bring-up vs hosts ({'/'.join(map(str, sorted(endpoints)))} endpoints per host)")
    axes.set_xticks(hosts)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return save(figure, out / "linux-bring-up.png")


def save(figure, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})  # no version stamp: the same data gives the same file
    plt.close(figure)
    return path


def plot(lines: list[dict], out: Path) -> list[Path]:
    """Every plot the lines hold data for, written into ``out``; their paths."""
    made: list[Path | None] = []
    kinds = {line.get("bench") for line in lines}
    for line in lines:
        if line.get("bench") == "classifier":
            made.append(classifier(line, out))
    linux = [line for line in lines if line.get("bench") == "linux"]
    made += [linux_rules(linux, out), linux_bring_up(linux, out)]
    for kind in sorted(kinds - {"classifier", "linux"}, key=str):
        print(f"plot.py: no plot for bench {kind!r} (skipped)", file=sys.stderr)
    return [path for path in made if path is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="JSON-lines files (default: bench/results/*.jsonl)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "img", help="directory for the PNGs")
    args = parser.parse_args()
    files = args.files or sorted((ROOT / "bench" / "results").glob("*.jsonl"))
    try:
        lines = read(files)
    except (OSError, ValueError) as error:
        print(f"plot.py: {error}", file=sys.stderr)
        return 2
    for path in plot(lines, args.output):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
