"""bench/plot.py: benchmark JSON lines into PNGs (a real classifier run, and the linux runs kept
in bench/results/)."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import plot  # noqa: E402


def test_a_fresh_classifier_run_and_the_kept_linux_runs_become_pngs(tmp_path: Path):
    ran = subprocess.run([sys.executable, str(ROOT / "bench" / "classifier.py"), "--sizes", "10,100", "--probes", "50",
                          "--seconds", "0.002", "--rounds", "1"], capture_output=True, text=True, check=True)
    lines = [json.loads(ran.stdout)] + plot.read([ROOT / "bench" / "results" / "linux.jsonl"])
    made = plot.plot(lines, tmp_path)
    assert [p.name for p in made] == ["classifier.png", "linux-rules-rtt.png", "linux-bring-up.png"]
    for path in made:
        height, width, _ = matplotlib.image.imread(path).shape
        assert (width, height) == (770, 462)  # 7 x 4.2 inches at 110 dpi


def test_bad_lines_are_named_and_unknown_benchmarks_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"bench": "wire"}\n\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: not a JSON line"):
        plot.read([bad])
    assert plot.plot([{"bench": "wire"}], tmp_path) == []
    assert "no plot for bench 'wire'" in capsys.readouterr().err
