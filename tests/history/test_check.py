"""Regression detection: synthetic series (steps, pure noise, accuracy drops) and `fleetbench check`."""

from __future__ import annotations

import random

import pytest

from fleetbench import stats
from fleetbench.cli import main
from fleetbench.db import Database
from tests.history.synth import Rec

SEEDS = range(20)


def noisy(seed: int, n: int = 30, sigma: float = 0.03, step_at: int | None = None, step: float = -0.10,
          level: float = 1000.0) -> list[float]:
    """Gaussian noise of `sigma` (relative standard deviation) around `level`, times (1 + step) from step_at on."""
    rng = random.Random(seed)
    return [level * (1 + rng.gauss(0, sigma)) * (1 + step if step_at is not None and i >= step_at else 1)
            for i in range(n)]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_ten_percent_step_down_is_found(seed):
    values = noisy(seed, sigma=0.02, step_at=24)  # the newest 6 of 30 runs are 10% slower
    verdict = stats.judge(values, higher_is_better=True)
    assert verdict.kind == "regression"
    assert verdict.change is not None and -0.15 < verdict.change < -0.06
    assert verdict.since is not None and 21 <= verdict.since <= 27


def test_in_three_percent_noise_a_ten_percent_step_is_found_in_nearly_every_series():
    found = [stats.judge(noisy(seed, step_at=20), higher_is_better=True).kind for seed in range(100)]
    assert found.count("regression") >= 90 and "improvement" not in found


@pytest.mark.parametrize("seed", SEEDS)
def test_latency_going_up_ten_percent_is_a_regression(seed):
    values = noisy(seed, sigma=0.02, step_at=24, step=0.10, level=2.0)
    assert stats.judge(values, higher_is_better=False).kind == "regression"


@pytest.mark.parametrize("seed", SEEDS)
def test_three_percent_noise_over_thirty_runs_raises_nothing(seed):
    values = noisy(seed)
    assert stats.judge(values, higher_is_better=True).kind == "stable"
    assert stats.change_points(values) == []


def test_a_quiet_host_sees_a_drop_the_night_it_happens():
    values = noisy(1, sigma=0.005, step_at=29)
    verdict = stats.judge(values, higher_is_better=True)
    assert (verdict.kind, verdict.since) == ("regression", 29)


def test_a_lone_outlier_in_the_past_is_not_a_change_point():
    values = noisy(2, sigma=0.01)
    values[12] *= 0.6
    assert stats.change_points(values) == []
    assert stats.judge(values, higher_is_better=True).kind == "stable"


def test_an_old_change_is_not_reported_again():
    values = noisy(3, n=40, sigma=0.01, step_at=12)
    assert stats.change_points(values) == [12]
    assert stats.judge(values, higher_is_better=True).kind == "stable"


def test_too_short_a_history_is_not_judged():
    assert stats.judge([1000.0, 1001.0, 500.0], higher_is_better=True).kind == "insufficient"


def test_an_accuracy_drop_of_two_points_is_found_and_a_sentence_or_two_is_not():
    history = [91.06, 91.17, 90.94, 91.06, 91.28, 91.06]  # SST-2 dev: one sentence is 0.115 points
    verdict = stats.judge_accuracy([*history, 89.06])
    assert (verdict.kind, round(verdict.change or 0, 2)) == ("regression", -2.0)
    assert stats.judge_accuracy([*history, 90.83]).kind == "stable"  # two sentences flipped
    assert stats.judge_accuracy([*history, 90.48]).kind == "regression"  # five: below a point, still caught


def test_a_step_on_the_newest_night_of_a_short_history_is_not_hidden_by_itself():
    """Six steady nights, then a drop: the drop must not count as noise (it did, with the noise measured on
    every value: 67% down was 'stable')."""
    for history in ([250.0] * 6, [250.0, 247.0, 252.0, 249.0, 251.0, 250.0]):
        verdict = stats.judge([*history, 81.2], higher_is_better=True)
        assert verdict.kind == "regression" and verdict.change == pytest.approx(81.2 / 250 - 1, abs=0.01)
        assert stats.judge([*history, 245.0], higher_is_better=True).kind == "stable"  # 2%: within noise


def test_band_is_at_least_the_minimum_effect_and_grows_with_noise():
    assert stats.band([1000.0] * 10) == pytest.approx(max(stats.MIN_EFFECT, 3 * 2 ** 0.5 * stats.NOISE_FLOOR))
    assert stats.band(noisy(4, sigma=0.05)) > 0.15
    assert stats.band([]) == pytest.approx(3 * 2 ** 0.5 * stats.DEFAULT_NOISE)


def _night(nightly, i: int, throughput: float, accuracy: float) -> str:
    return str(nightly(i, [Rec("spr-1", "SPR", throughput=throughput),
                           Rec("spr-1", "SPR", case="inference-accuracy", batch_size=100, accuracy=accuracy),
                           Rec("icx-1", "ICX", status="failed", reason="unreachable by ssh")]))


def test_check_exits_non_zero_on_a_regression_and_zero_otherwise(nightly, tmp_path, capsys):
    url = str(tmp_path / "h.sqlite")
    values = noisy(5, n=20, sigma=0.02)
    main(["ingest", "--db", url, *(_night(nightly, i, v, 91.06) for i, v in enumerate(values))])
    capsys.readouterr()
    assert main(["check", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "Checked 2 series: 0 regressions, 0 improvements, 2 stable" in out
    assert "Not checked: 1 records of the run (1 failed)." in out
    for i in range(20, 24):
        main(["ingest", "--db", url, _night(nightly, i, 800.0, 91.06)])
    main(["ingest", "--db", url, _night(nightly, 24, 800.0, 89.0)])
    capsys.readouterr()
    assert main(["check", "--db", url]) == 1
    out = capsys.readouterr().out
    assert ("REGRESSION: spr-1 inference-throughput amx_bfloat16 batch 1 [torch 2.8.0+cpu, ipex 2.8.0; seq 128, "
            "ipex, layout auto, model distilbert-base-uncased-finetuned-sst-2-english@bfdd146ea2b6, steps 100 "
            "(+10 warm-up), onednn_verbose 0] throughput: ") in out
    assert "REGRESSION: spr-1 inference-accuracy amx_bfloat16 batch 100" in out and "(-2.06 points)" in out
    assert main(["check", "--db", url, "--by", "platform", "--run", "20250120T020000Z-000013"]) == 0


def test_check_on_an_empty_or_missing_database_says_so(tmp_path, capsys):
    Database(str(tmp_path / "h.sqlite")).close()
    assert main(["check", "--db", str(tmp_path / "h.sqlite")]) == 2
    assert "holds no run yet" in capsys.readouterr().err
    assert main(["check", "--db", str(tmp_path / "typo.sqlite")]) == 2
    assert f"no history database at {tmp_path / 'typo.sqlite'}" in capsys.readouterr().err
    assert not (tmp_path / "typo.sqlite").exists(), "a mistyped path must not become a new history"
