"""scikit-learn's own tests for its MLP, run against nnlib's estimators.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` is copied into a
temporary directory with one change, its import of ``MLPClassifier`` and ``MLPRegressor``,
which then name :class:`nnlib.estimators.NeuralNetClassifier` and ``NeuralNetRegressor``,
and run by pytest in a subprocess. Nothing of scikit-learn's file is kept in this repository.
Every test must pass except those in ``NOT_APPLICABLE``, each with its reason; a test of
that list that starts to pass fails here too, so the list cannot go stale.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ORIGINAL_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
NNLIB_IMPORT = ("from nnlib.estimators import NeuralNetClassifier as MLPClassifier, "
                "NeuralNetRegressor as MLPRegressor")

#: tests that read scikit-learn's private internals, which a facade over another engine does not have
NOT_APPLICABLE: dict[str, str] = {}

CONFTEST = '''
def pytest_generate_tests(metafunc):
    # scikit-learn's conftest gives global_random_seed its default, 42
    if "global_random_seed" in metafunc.fixturenames:
        metafunc.parametrize("global_random_seed", [42])
'''


def _sklearn_test_file() -> Path:
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "neural_network" / "tests" / "test_mlp.py"
    if not path.is_file():
        pytest.fail(f"scikit-learn's MLP tests are not installed at {path}")
    return path


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, str]:
    """Each test's outcome ("passed", "failed", "error", "skipped") by its pytest id."""
    source = _sklearn_test_file().read_text()
    assert source.count(ORIGINAL_IMPORT) == 1, "scikit-learn's import line changed: update ORIGINAL_IMPORT"
    work = tmp_path_factory.mktemp("sklearn_mlp")
    (work / "test_mlp_on_nnlib.py").write_text(source.replace(ORIGINAL_IMPORT, NNLIB_IMPORT))
    (work / "conftest.py").write_text(CONFTEST)
    report = work / "report.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                           "test_mlp_on_nnlib.py"], cwd=work, capture_output=True, text=True, timeout=900)
    if not report.is_file():
        pytest.fail(f"pytest did not run scikit-learn's tests:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "failure" else child.tag
        results[case.get("name")] = outcome
    assert len(results) > 50, f"only {len(results)} tests ran:\n{done.stdout[-3000:]}"
    return results


def _base(test_id: str) -> str:
    return test_id.split("[", 1)[0]


def test_every_test_of_public_behaviour_passes(outcomes):
    failed = sorted(t for t, o in outcomes.items() if o != "passed" and _base(t) not in NOT_APPLICABLE)
    counts = {o: sum(v == o for v in outcomes.values()) for o in set(outcomes.values())}
    assert not failed, f"{len(failed)} of scikit-learn's MLP tests fail on nnlib ({counts}): {failed}"


def test_the_not_applicable_list_is_still_true(outcomes):
    listed = {t for t in outcomes if _base(t) in NOT_APPLICABLE}
    assert {_base(t) for t in listed} == set(NOT_APPLICABLE), "a listed test no longer exists"
    passing = sorted(t for t in listed if outcomes[t] == "passed")
    assert not passing, f"these now pass: take them off NOT_APPLICABLE: {passing}"
