"""Study 01 (linkage quality): the summaries of ``registry_lib.studies.linkage_quality`` and the notebook.

Unit tests with exact expectations, property tests of the threshold trade-off, a cross-check
against ``registry_lib.linkage.evaluate``, and a toy registry built by ``linkage.run`` on which
the summaries must agree with the linkage's own decisions (and the notebook runs).
"""

from __future__ import annotations

import json
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_lib.errors import RegistryLabError
from registry_lib.studies import linkage_quality as lr

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# counts
# ---------------------------------------------------------------------------------------------
def _report_counts():
    return {"counts": {
        "notifications": {"input": 100, "linked": 90, "quarantined": 6, "optout_removed": 3,
                          "optout_blocked": 1, "reconciles": True},
        "deaths": {"input": 20, "linked": 18, "quarantined": 1, "optout_removed": 0, "optout_blocked": 0},
    }}


def test_reconciliation_checks_every_feed_adds_up():
    r = lr.reconciliation(_report_counts())
    assert r.loc["notifications"].tolist() == [100, 90, 6, 3, 1, True]
    assert r.loc["deaths", "reconciles"] == np.False_  # 18 + 1 != 20: a lost record is caught
    assert list(r.columns) == ["input", *lr.STATUSES, "reconciles"]


def test_reconciliation_rejects_a_report_without_counts():
    with pytest.raises(RegistryLabError, match="counts"):
        lr.reconciliation({"f1": 1.0})
    with pytest.raises(RegistryLabError, match="optout_blocked"):
        lr.reconciliation({"counts": {"sact": {"input": 1, "linked": 1, "quarantined": 0, "optout_removed": 0}}})


def test_counts_for_sentences_and_results_follow_the_disclosure_rules():
    assert [lr.count_phrase(n) for n in (0, 1, 7, 8, 10, 12, 13, 1234)] == \
        ["0", "1–7", "1–7", "about 10", "10", "about 10", "about 15", "about 1,235"]
    assert [lr.protected_count(n) for n in (0, 1, 7, 8, -3, -8, 1234, None)] == \
        [0, None, None, 10, None, -10, 1235, None]


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
@given(st.floats(min_value=1e-9, max_value=1 - 1e-9))
def test_match_weight_and_probability_are_inverse(p):
    w = lr.weight_from_probability(p)
    assert lr.probability_from_weight(w) == pytest.approx(p, rel=1e-9, abs=1e-12)


MODEL = {"probability_two_random_records_match": 0.001, "comparisons": [
    {"output_column_name": "dob", "comparison_levels": [
        {"is_null_level": True, "label_for_charts": "null"},
        {"label_for_charts": "exact", "m_probability": 0.9, "u_probability": 0.01},
        {"label_for_charts": "swap", "m_probability": 0.06, "u_probability": 0.03},
        {"label_for_charts": "else", "m_probability": 0.04, "u_probability": 0.96}]},
    {"output_column_name": "name", "comparison_levels": [
        {"label_for_charts": "exact", "m_probability": 0.8, "u_probability": 0.1,
         "tf_adjustment_column": "name"},
        {"label_for_charts": "else", "m_probability": 0.2, "u_probability": 0.9}]},
]}


def test_model_parameters_number_levels_as_splink_and_give_bayes_factors():
    mp = lr.model_parameters(MODEL)
    assert mp["comparison"].tolist() == ["dob"] * 4 + ["name"] * 2
    assert mp["gamma"].tolist() == [-1, 2, 1, 0, 1, 0]
    assert mp["bayes_factor"].round(6).tolist() == [1.0, 90.0, 2.0, round(0.04 / 0.96, 6), 8.0, round(0.2 / 0.9, 6)]
    assert mp.loc[2, "match_weight"] == pytest.approx(1.0)
    assert mp["tf_adjusted"].tolist() == [False, False, False, False, True, False]
    assert lr.prior_match_weight(MODEL) == pytest.approx(np.log2(0.001 / 0.999))


def test_model_parameters_reject_a_file_without_comparisons():
    with pytest.raises(RegistryLabError, match="no comparisons"):
        lr.model_parameters({"link_type": "dedupe_only"})
    with pytest.raises(RegistryLabError, match="probability_two_random_records_match"):
        lr.prior_match_weight({})


# ---------------------------------------------------------------------------------------------
# threshold trade-off
# ---------------------------------------------------------------------------------------------
def _random_pairs(rng, n):
    return pd.DataFrame({
        "match_probability": np.round(rng.random(n), 2),  # ties on purpose
        "is_match": rng.random(n) < 0.6,
        "n_records_l": rng.integers(1, 4, n), "n_records_r": rng.integers(1, 4, n),
    })


def test_threshold_tradeoff_equals_brute_force_counts_in_record_pairs():
    rng = np.random.default_rng(20240607)
    pairs = _random_pairs(rng, 400)
    grid = [0.01, 0.2, 0.5, 0.5000001, 0.73, 0.99, 1.0]
    got = lr.threshold_tradeoff(pairs, grid)
    w = pairs["n_records_l"] * pairs["n_records_r"]
    m = pairs["is_match"]
    for row in got.itertuples():
        linked = pairs["match_probability"] >= row.threshold
        tp = int(w[linked & m].sum())
        assert row.linked_pairs == int(w[linked].sum())
        assert row.true_positive_pairs == tp
        assert row.false_pairs == int(w[linked & ~m].sum())
        assert row.missed_pairs == int(w[~linked & m].sum())
        precision = tp / w[linked].sum() if linked.any() else 1.0
        assert row.precision == pytest.approx(precision)
        assert row.recall == pytest.approx(tp / w[m].sum())
        assert row.false_match_rate == pytest.approx(1 - precision)
    assert got["match_weight_threshold"].iloc[-1] == np.inf
    ident = lr.threshold_tradeoff(pairs, [0.5], count="identity_pairs")
    assert ident["linked_pairs"].iloc[0] == int((pairs["match_probability"] >= 0.5).sum())


def test_threshold_tradeoff_agrees_with_linkage_evaluate_when_every_pair_is_a_candidate():
    from registry_lib.linkage.evaluate import evaluate

    rng = np.random.default_rng(7)
    truth = pd.Series(rng.integers(0, 12, 40), index=[f"r{i}" for i in range(40)])
    ids = list(combinations(truth.index, 2))
    pairs = pd.DataFrame(ids, columns=["id_l", "id_r"])
    same = truth[pairs["id_l"]].to_numpy() == truth[pairs["id_r"]].to_numpy()
    # a noisy score: true pairs mostly high, others mostly low
    pairs["match_probability"] = np.clip(np.where(same, 0.8, 0.15) + rng.normal(0, 0.2, len(pairs)), 0.001, 1)
    pairs["is_match"] = same
    for t in (0.3, 0.5, 0.9):
        ours = lr.threshold_tradeoff(pairs, [t], count="identity_pairs").iloc[0]
        theirs = evaluate(pairs, truth, threshold=t)
        for k in ("precision", "recall", "f1", "false_match_rate", "missed_match_rate"):
            assert ours[k] == pytest.approx(theirs[k]), (t, k)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans(), st.integers(1, 5), st.integers(1, 5)),
                min_size=1, max_size=40),
       st.lists(st.floats(0.001, 1.0), min_size=1, max_size=8))
def test_threshold_tradeoff_invariants(rows, thresholds):
    pairs = pd.DataFrame(rows, columns=["match_probability", "is_match", "n_records_l", "n_records_r"])
    t = lr.threshold_tradeoff(pairs, sorted(thresholds))
    assert (t["true_positive_pairs"] + t["false_pairs"] == t["linked_pairs"]).all()
    assert (t["true_positive_pairs"] + t["missed_pairs"] == t["true_pairs"]).all()
    assert (np.diff(t["linked_pairs"]) <= 0).all() and (np.diff(t["recall"]) <= 1e-12).all()
    assert t[["precision", "recall", "f1"]].apply(lambda c: c.between(0, 1)).all().all()
    assert np.allclose(t["false_match_rate"] + t["precision"], 1)


def test_threshold_tradeoff_rejects_bad_thresholds_and_unlabelled_pairs():
    pairs = pd.DataFrame({"match_probability": [0.5], "is_match": [True], "n_records_l": [1], "n_records_r": [1]})
    for bad in ([], [0.0], [1.5], [float("nan")]):
        with pytest.raises(RegistryLabError, match="thresholds"):
            lr.threshold_tradeoff(pairs, bad)
    unlabelled = pairs.assign(is_match=pd.array([pd.NA], dtype="boolean"))
    with pytest.raises(RegistryLabError, match="--evaluate"):
        lr.threshold_tradeoff(unlabelled, [0.5])
    with pytest.raises(RegistryLabError, match="record_pairs"):
        lr.threshold_tradeoff(pairs, [0.5], count="persons")


def test_clustered_tradeoff_and_values_at_thresholds():
    report = {"evaluation": {"threshold_curve": [
        {"threshold": 0.9, "precision": 1.0, "recall": 0.99, "f1": 0.995, "false_match_rate": 0.0,
         "persons_split": 3, "persons_merged": 0},
        {"threshold": 0.1, "precision": 0.98, "recall": 1.0, "f1": 0.99, "false_match_rate": 0.02,
         "persons_split": 0, "persons_merged": 9}]}}
    c = lr.clustered_tradeoff(report)
    assert c["threshold"].tolist() == [0.1, 0.9]
    assert c["missed_match_rate"].round(6).tolist() == [0.0, 0.01]
    assert lr.value_at_thresholds(c, [0.9, 0.1 + 1e-12, 0.5]) == {"0.9": 0.995, "0.1": 0.99}
    with pytest.raises(RegistryLabError, match="--evaluate"):
        lr.clustered_tradeoff({"f1": 1.0})


# ---------------------------------------------------------------------------------------------
# errors by kind, review band
# ---------------------------------------------------------------------------------------------
def _kind_pairs():
    return pd.DataFrame({
        "match_probability": [0.99, 0.30, 0.95, 0.97, 0.10],
        "match_weight": [6.6, -1.2, 4.2, 5.0, -3.2],
        "is_match": [True, True, False, True, False],
        "errors_l": ["", "dob_swap;house_move", "", "house_move", ""],
        "errors_r": ["nhs_missing", "house_move", "", "", None],
        "n_records_l": [2, 1, 1, 1, 1], "n_records_r": [1, 3, 1, 1, 1],
    })


def test_errors_by_kind_pairs_count_a_pair_under_each_of_its_kinds():
    e = lr.errors_by_kind_pairs(_kind_pairs(), 0.9).set_index("error_kind")
    assert e.index.tolist() == ["dob_swap", "house_move", "none", "nhs_missing"]
    assert e.loc["house_move", ["candidate_pairs", "true_pairs", "missed_pairs", "linked_pairs", "false_pairs"]].tolist() \
        == [4, 4, 3, 1, 0]  # the 1x3 pair (missed) counts once although both sides carry house_move
    assert e.loc["house_move", "missed_match_rate"] == pytest.approx(0.75)
    assert e.loc["none", ["candidate_pairs", "true_pairs", "linked_pairs", "false_pairs"]].tolist() == [2, 0, 1, 1]
    assert e.loc["none", "false_match_rate"] == 1.0 and np.isnan(e.loc["none", "missed_match_rate"])
    assert e.loc["nhs_missing", "median_weight_true_pairs"] == 6.6
    ident = lr.errors_by_kind_pairs(_kind_pairs(), 0.9, count="identity_pairs").set_index("error_kind")
    assert ident.loc["house_move", "true_pairs"] == 2


def test_true_match_weights_by_kind():
    kw = lr.true_match_weights_by_kind(_kind_pairs())
    assert kw.values.tolist() == [["nhs_missing", 6.6], ["dob_swap", -1.2], ["house_move", -1.2], ["house_move", 5.0]]


def test_errors_by_kind_records_from_the_report():
    report = {"evaluation": {"errors_by_kind": {
        "none": {"records": 900, "missed": 0, "false_merged": 2, "missed_share": 0.0, "false_merged_share": 0.002},
        "surname_change": {"records": 30, "missed": 4, "false_merged": 0, "missed_share": 0.13, "false_merged_share": 0.0}}}}
    e = lr.errors_by_kind_records(report)
    assert e.to_dict("records") == [
        {"error_kind": "surname_change", "records": 30, "records_missed": 4, "records_false_merged": 0},
        {"error_kind": "none", "records": 900, "records_missed": 0, "records_false_merged": 2}]
    with pytest.raises(RegistryLabError, match="errors_by_kind"):
        lr.errors_by_kind_records({})


def test_review_band_summary():
    pairs = _kind_pairs()
    s = lr.review_band_summary(pairs, (0.05, 0.96), 0.9)
    assert s == {"band": [0.05, 0.96], "n_pairs": 3, "n_pairs_linked": 1, "n_pairs_true_match": 1, "n_pairs_wrong": 2}
    assert lr.review_band_summary(lr.strip_truth(pairs), (0.0, 1.0), 0.9) == \
        {"band": [0.0, 1.0], "n_pairs": 5, "n_pairs_linked": 3}
    with pytest.raises(RegistryLabError, match="review band"):
        lr.review_band_summary(pairs, (0.9, 0.1), 0.5)


def test_module_examples_run():
    import doctest

    result = doctest.testmod(lr, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# a toy registry built by the linkage itself
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    from fixtures.toy import write_toy_cohort

    from registry_lib import linkage

    root = tmp_path_factory.mktemp("linkage_quality")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(ROOT / "params", root / "params")
    (root / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "01_linkage_quality.ipynb", root / "notebooks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REGISTRY_LAB_ROOT", str(root))
        mp.setenv("REGISTRY_LAB_KEY", "9abfe9ea9da03dfed9ff1d0976926475fa1eaf18df7f79039889311a25108c38")
        cohort = write_toy_cohort(root / "synthetic" / "toy", n_persons=250, seed=11)
        linkage.run(cohort, evaluate=True, quiet=True)
    return root


@pytest.fixture
def toy(toy_root, monkeypatch):
    monkeypatch.setenv("REGISTRY_LAB_ROOT", str(toy_root))
    return lr.load_linkage_outputs("toy")


def test_missing_registry_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_LAB_ROOT", str(tmp_path))
    with pytest.raises(RegistryLabError, match="registry-lab link --cohort nowhere"):
        lr.load_linkage_outputs("nowhere")


def test_a_registry_built_without_evaluation_is_refused_when_truth_is_needed(toy_root, tmp_path, monkeypatch):
    root = tmp_path / "copy"
    shutil.copytree(toy_root / "synthetic" / "toy" / "registry", root / "synthetic" / "toy" / "registry")
    path = root / "synthetic" / "toy" / "registry" / "link_report.json"
    report = json.loads(path.read_text())
    report.pop("evaluation")
    path.write_text(json.dumps(report))
    monkeypatch.setenv("REGISTRY_LAB_ROOT", str(root))
    assert not lr.load_linkage_outputs("toy").evaluated
    with pytest.raises(RegistryLabError, match="--evaluate"):
        lr.load_linkage_outputs("toy", require_evaluation=True)


def test_summaries_agree_with_the_linkage_decisions(toy):
    report, mw = toy.report, toy.match_weights
    assert toy.evaluated and lr.reconciliation(report)["reconciles"].all()
    threshold = float(report["threshold"])
    # the candidate-pair view links exactly the pairs the registry marked as linked
    t = lr.threshold_tradeoff(mw, [threshold], count="identity_pairs").iloc[0]
    labelled = mw[mw["is_match"].notna()]
    assert t["linked_pairs"] == int(labelled["linked"].sum())
    assert t["true_positive_pairs"] == int((labelled["linked"] & labelled["is_match"]).sum())
    # re-clustering at the threshold in use gives the headline accuracy
    c = lr.clustered_tradeoff(report).set_index("threshold")
    assert c.loc[threshold, "f1"] == pytest.approx(report["f1"])
    assert c.loc[threshold, "persons_merged"] == report["persons_merged"]
    # the review band in use sizes the exported clerical review table
    assert lr.review_band_summary(mw, report["review_band"], threshold)["n_pairs"] == len(toy.clerical_review)


def test_score_check_recomputes_weights_from_the_model():
    mp = lr.model_parameters(MODEL)
    prior = lr.prior_match_weight(MODEL)
    w = mp.set_index(["comparison", "gamma"])["match_weight"]
    pairs = pd.DataFrame({"gamma_dob": [2, 1, -1, 0], "gamma_name": [0, 0, 1, 0]})
    pairs["match_weight"] = [prior + w["dob", 2] + w["name", 0], prior + w["dob", 1] + w["name", 0],
                             prior + w["name", 1] + 1.5,  # a term-frequency adjustment of +1.5
                             prior + w["dob", 0] + w["name", 0] - 0.25]  # a score the model cannot give
    got = lr.score_check(pairs, MODEL)
    assert got["tf_free"].tolist() == [True, True, False, True]
    assert np.allclose(got["residual"], [0, 0, 1.5, -0.25])
    with pytest.raises(RegistryLabError, match=r"level\(s\) \[5\]"):
        lr.score_check(pairs.assign(gamma_dob=[5, 1, 1, 1]), MODEL)
    with pytest.raises(RegistryLabError, match="gamma_name"):
        lr.score_check(pairs.drop(columns="gamma_name"), MODEL)


def test_score_check_on_the_toy_registry(toy):
    """Every gamma value of the scored pairs is a level of the model, and the weights are the
    model's: pairs without a term-frequency-adjusted level agree exactly (the toy's few names
    make such pairs rare, so the others are checked to be within the range tf adjustments allow:
    log2 of u over the tf floor of 0.001 and of u over 1)."""
    mw = toy.match_weights
    chk = lr.score_check(mw, toy.model)
    assert np.allclose(chk.loc[chk["tf_free"], "residual"], 0, atol=1e-4)
    mp = lr.model_parameters(toy.model)
    tf_levels = mp[mp["tf_adjusted"]]
    top = float(np.log2(tf_levels["u_probability"] / 0.001).clip(lower=0).sum())
    bottom = float(np.log2(tf_levels["u_probability"]).clip(upper=0).sum())
    assert chk["residual"].between(bottom - 1e-6, top + 1e-6).all()


def test_errors_by_kind_cover_every_labelled_pair(toy):
    mw = toy.match_weights
    e = lr.errors_by_kind_pairs(mw, float(toy.report["threshold"]), count="identity_pairs")
    assert "nhs_missing" in set(e["error_kind"])
    labelled = mw[mw["is_match"].notna()]
    n_true = int(labelled["is_match"].sum())
    # every labelled pair is counted under at least one kind, and no kind holds more than all
    assert e["candidate_pairs"].sum() >= len(labelled) and e["true_pairs"].sum() >= n_true
    assert e["true_pairs"].max() <= n_true and e["candidate_pairs"].max() <= len(labelled)
    rec = lr.errors_by_kind_records(toy.report)
    assert rec.loc[rec["error_kind"] == "none", "records"].iloc[0] > 0


@pytest.mark.slow
def test_notebook_runs_on_the_toy_registry_and_publishes_only_safe_counts(toy_root, monkeypatch):
    import papermill as pm
    import yaml

    from registry_lib.release import scan_reports_for_unsafe_counts

    monkeypatch.setenv("REGISTRY_LAB_ROOT", str(toy_root))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    params = yaml.safe_load((ROOT / "params/studies/linkage_quality.yaml").read_text())
    params.pop("parameter_types", None)  # the declarations, not a parameter
    params.update(cohort="toy", output_dir="reports/linkage_quality", review_band=[0.2, 0.99])
    out_dir = toy_root / "reports" / "linkage_quality"
    out_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(toy_root / "notebooks/01_linkage_quality.ipynb"), str(out_dir / "executed.ipynb"),
                        parameters=params, kernel_name="python3", progress_bar=False, cwd=str(toy_root))
    results = json.loads((out_dir / "results.json").read_text())
    report = json.loads((toy_root / "synthetic/toy/registry/link_report.json").read_text())
    for key in ("precision", "recall", "f1", "false_match_rate", "missed_match_rate"):
        assert results[key] == pytest.approx(report[key], abs=1e-8)
    assert results["persons_split"] == lr.protected_count(report["persons_split"])
    assert results["persons_merged"] == lr.protected_count(report["persons_merged"])
    assert results["threshold"] == report["threshold"]
    assert set(results["f1_at_threshold"]) == {f"{t:g}" for t in params["threshold_grid"]}
    assert set(results["candidate_pairs_f1_at_threshold"]) == set(results["f1_at_threshold"])
    assert results["counts_reconcile"] is True
    assert (out_dir / "tables" / "threshold_tradeoff_clustered.csv").exists()
    assert (out_dir / "figures" / "threshold_tradeoff.png").exists()
    assert scan_reports_for_unsafe_counts(toy_root / "reports") == []
