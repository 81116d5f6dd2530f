"""The invalid-spec corpus: each file (or directory) under invalid/ must fail with exactly the
problems in its .expected sidecar, as ``FILE:LINE:COL: error: PATH: message`` lines, in order.

To add a case: write the spec, run ``netvirt validate`` on it from tests/management/invalid,
check every line by hand, and save stderr (without the summary line) as NAME.expected.
"""

import os
from pathlib import Path

import pytest

from netvirt.management.spec import SpecError, load

HERE = Path(__file__).parent / "invalid"
CASES = sorted(path for path in HERE.iterdir() if path.suffix != ".expected")


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_invalid_spec_reports_exact_problems(case: Path, monkeypatch):
    expected = (HERE / f"{case.stem if case.is_file() else case.name}.expected").read_text().splitlines()
    monkeypatch.chdir(HERE)  # problems name files as given: relative to the corpus
    with pytest.raises(SpecError) as raised:
        load(os.path.relpath(case, HERE))
    assert [str(problem) for problem in raised.value.problems] == expected
    assert all(problem.line > 0 and problem.col > 0 for problem in raised.value.problems)
