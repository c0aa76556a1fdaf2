"""Tests for registry_lib.stats.survival_cox_counting: the Efron Cox fit on counting-process
intervals equals lifelines (time-varying and stratified), on small exact examples."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from registry_lib.errors import RegistryLabError
from registry_lib.stats.survival_cox_counting import cox_counting_process


def _intervals(seed: int, n: int = 1500) -> pd.DataFrame:
    """Three 30-day intervals a person, covariates changing between them, deaths on whole days
    (many ties), nobody followed after death."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": np.repeat(np.arange(n), 3), "k": np.tile(np.arange(3), n)})
    df["start"] = df["k"] * 30.0
    df["x"] = (rng.random(len(df)) < 0.3).astype(float)
    df["age"] = np.repeat(rng.normal(70, 10, n), 3) + df["k"] / 12
    df["sex"] = np.repeat(rng.integers(0, 2, n), 3).astype(float)
    rate = 0.004 * np.exp(0.5 * df["x"] + 0.05 * (df["age"] - 70) - 0.4 * df["sex"])
    day = np.floor(rng.exponential(1 / rate))
    df["e"] = day < 30
    df["stop"] = np.where(df["e"], df["start"] + np.maximum(day, 0.5), df["start"] + 30)
    after_death = df.groupby("id")["e"].transform(lambda s: s.shift(fill_value=False).cummax())
    return df[~after_death].reset_index(drop=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_time_varying_fit_equals_lifelines(seed):
    from lifelines import CoxTimeVaryingFitter

    df = _intervals(seed)
    ctv = CoxTimeVaryingFitter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctv.fit(
            df[["id", "start", "stop", "e", "x", "age", "sex"]],
            id_col="id",
            start_col="start",
            stop_col="stop",
            event_col="e",
        )
    fit = cox_counting_process(df["start"], df["stop"], df["e"], df[["x", "age", "sex"]].to_numpy())
    np.testing.assert_allclose(fit.params, ctv.summary["coef"].to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(fit.std_errors, ctv.summary["se(coef)"].to_numpy(), rtol=1e-7)
    assert fit.log_likelihood == pytest.approx(ctv.log_likelihood_, rel=1e-10)
    assert fit.n_events == int(df["e"].sum())


def test_stratified_fit_equals_lifelines():
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(7)
    n = 3000
    d = pd.DataFrame(
        {
            "x": rng.integers(0, 2, n).astype(float),
            "age": rng.normal(65, 10, n),
            "s": rng.choice(["a", "b", "c"], n),
        }
    )
    rate = d["s"].map({"a": 0.002, "b": 0.004, "c": 0.001}) * np.exp(
        0.4 * d["x"] + 0.03 * (d["age"] - 65)
    )
    day = np.floor(rng.exponential(1 / rate))
    d["e"] = day < 365
    d["t"] = np.maximum(np.minimum(day, 365.0), 0.5)
    cph = CoxPHFitter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cph.fit(d, "t", "e", strata=["s"])
    fit = cox_counting_process(
        np.zeros(n), d["t"], d["e"], d[["x", "age"]].to_numpy(), strata=d["s"].to_numpy()
    )
    np.testing.assert_allclose(fit.params, cph.summary["coef"].to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(fit.std_errors, cph.summary["se(coef)"].to_numpy(), rtol=1e-6)


def test_exact_small_example_and_refusals():
    # deaths at t=1 (x=0; all four at risk: 2 + 2u, u = e^b), t=2 (x=1; at risk x=1, x=0, x=1: 1 + 2u)
    # and t=4 (alone at risk: a factor 1); L(u) = 1/(2 + 2u) * u/(1 + 2u), maximal where 2u^2 = 1
    X = np.array([[0.0], [1.0], [0.0], [1.0]])
    fit = cox_counting_process(
        np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0]), np.array([True, True, False, True]), X
    )
    assert fit.params[0] == pytest.approx(np.log(1 / np.sqrt(2)), abs=1e-9)
    with pytest.raises(RegistryLabError, match="no events"):
        cox_counting_process(np.zeros(2), np.ones(2), np.zeros(2, bool), np.ones((2, 1)))
    with pytest.raises(RegistryLabError, match="one row per interval"):
        cox_counting_process(np.zeros(2), np.ones(3), np.ones(2, bool), np.ones((2, 1)))
