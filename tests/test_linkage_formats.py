"""Issue 12: linkage on data nobody here wrote — formats, warnings, clustering, clerical decisions,
the hard profile and FEBRL."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from fixtures.toy import write_toy_cohort

from registry_lib import linkage
from registry_lib.errors import ConfigError, RegistryLabError, RegistryLabWarning
from registry_lib.linkage import formats as fmt
from registry_lib.linkage import review
from registry_lib.linkage.model import prepare_report
from registry_lib.linkage.persons import cluster_identities

KEY = "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a"


@pytest.mark.parametrize("values, name", [
    (["1961-04-23", "1970-12-01"], "YYYY-MM-DD"),
    (["19610423", "19701201"], "YYYYMMDD"),
    ([19610423, 19701201], "YYYYMMDD"),
    ([19610423.0, 19701201.0], "YYYYMMDD"),
    (["23/04/1961", "1/12/1970"], "DD/MM/YYYY"),
    (["23-04-1961", "01-12-1970"], "DD-MM-YYYY"),
    (["1961-04-23 00:00:00", "1970-12-01T10:30:00Z"], "YYYY-MM-DD"),
])
def test_dates_any_format(values, name):
    out, found = fmt.birth_dates(pd.Series(values), column="dob")
    assert out.tolist() == ["1961-04-23", "1970-12-01"]
    assert found.formats == {name: 2}
    assert found.note == f"birth_date ('dob'): parsed 2/2 values as {name}"


def test_dates_datetime_month_first_mixed_and_impossible():
    out, _ = fmt.birth_dates(pd.Series(pd.to_datetime(["1961-04-23", None])))
    assert out.tolist() == ["1961-04-23", pd.NA]
    out, found = fmt.birth_dates(pd.Series(["04/23/1961", "12/01/1970"]))
    assert out.tolist() == ["1961-04-23", "1970-12-01"] and "MM/DD/YYYY" in found.formats
    out, found = fmt.birth_dates(pd.Series(["19610423", "23/04/1961", "1961-23-04", "soon", None]))
    assert out.tolist() == ["1961-04-23", "1961-04-23", "1961-23-04", pd.NA, pd.NA]
    assert found.parsed == 3 and found.failed == ["soon"]
    assert "1 not understood, e.g. 'soon'" in found.note and "1 empty" in found.note


def test_sex_postcodes_identifiers():
    assert fmt.sex(pd.Series(["M", "female", 1, "2", "9", "u", None]))[0].tolist() == ["1", "2", "1", "2", pd.NA, pd.NA, pd.NA]
    pc, part, found = fmt.postcodes(pd.Series(["ls6 2ab", 4011, "75008", "x", None]))
    assert pc.tolist() == ["LS6 2AB", "4011", "75008", pd.NA, pd.NA]
    assert part.tolist() == ["LS6", "401", "7500", pd.NA, pd.NA]
    assert found.formats == {"UK postcode": 1, "non-UK postcode (string comparison)": 2}
    ids, _ = fmt.identifiers(pd.Series([6988048.0, np.nan, 12.0]))
    assert ids.tolist() == ["6988048", pd.NA, "12"]
    assert fmt.identifiers(pd.Series(["943 476 5919", "943-476-5919"]))[0].tolist() == ["9434765919"] * 2


def test_prepare_report_names_accents_and_punctuation():
    df = pd.DataFrame({"g": ["JOSÉ", " o'neil "], "f": ["Smith-Jones", "LEE"]})
    frame, found = prepare_report(df, {"given_name": "g", "family_name": "f"})
    assert frame["given_name"].tolist() == ["jose", "oneil"] and frame["family_name"].tolist() == ["smithjones", "lee"]
    assert [d.role for d in found] == ["given_name", "family_name"]


def _people(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    given = rng.choice(["ann", "bob", "cara", "dev", "eve", "finn", "gus", "hana", "ivo", "jo"], n)
    family = rng.choice([f"name{i}" for i in range(60)], n)
    dob = pd.to_datetime("1940-01-01") + pd.to_timedelta(rng.integers(0, 20000, n), unit="D")
    return pd.DataFrame({"given": given, "family": family, "dob": dob.strftime("%Y%m%d"),
                         "id": rng.integers(10**6, 10**7, n)})


def test_mostly_unparsed_column_warns_with_two_examples():
    df = _people()
    df["dob"] = ["born " + d for d in df["dob"]]
    with pytest.warns(RegistryLabWarning, match=r"birth_date column 'dob': 100% of values are missing after "
                                                r"parsing .*'born \d{8}' and 'born \d{8}'"):
        res = linkage.dedupe(df, {"given_name": "given", "family_name": "family", "birth_date": "dob"})
    assert any("birth_date column 'dob'" in n for n in res.notes)


def test_link_with_shared_identifiers_never_silently_empty():
    df = _people()
    right = df.copy()
    right.index = [f"r{i}" for i in range(len(right))]
    right["given"] = "zz" + right["given"]        # every other identifier disagrees
    right["family"] = "qq" + right["family"]
    right["dob"] = "20990101"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = linkage.link(df, right, {"nhs_number": "id", "given_name": "given", "family_name": "family",
                                         "birth_date": "dob"}, threshold=0.999999)
    if len(pairs) == 0:
        msgs = [str(w.message) for w in caught if issubclass(w.category, RegistryLabWarning)]
        assert any("0 pairs at threshold" in m and "share an exact nhs_number" in m for m in msgs)
        assert any("0 pairs at threshold" in m for m in pairs.attrs["notes"])


def test_febrl_style_input_links_without_rewriting():
    df = _people()
    dup = df.sample(100, random_state=1).copy()
    dup.index = [f"d{i}" for i in dup.index]
    dup["dob"] = pd.to_datetime(dup["dob"], format="%Y%m%d").dt.strftime("%d/%m/%Y")  # another format
    pairs = linkage.link(df, dup, {"nhs_number": "id", "given_name": "given", "family_name": "family",
                                   "birth_date": "dob"})
    assert len(pairs) >= 95
    assert any("as YYYYMMDD" in n for n in pairs.attrs["notes"])
    assert any("as DD/MM/YYYY" in n for n in pairs.attrs["notes"])


def test_anchored_clustering_does_not_chain_two_nhs_numbers():
    ident = pd.DataFrame({"nhs_number": ["1", "2", None, None], "det_group": [0, 1, 2, 3]})
    pairs = pd.DataFrame({"unique_id_l": [0, 1, 2], "unique_id_r": [2, 2, 3], "match_probability": [0.97, 0.99, 0.99]})
    plain = cluster_identities(ident, pairs, 0.95, anchored=False)
    assert len(set(plain)) == 1
    lab = cluster_identities(ident, pairs, 0.95)
    assert lab[0] != lab[1] and lab[2] == lab[1] == lab[3]


def test_read_decisions_checks_and_orders(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("record_l,record_r,decision,reviewer,decided_at\nnotifications:N2,deaths:D1,Match,ann,2024-01-01\n")
    d = review.read_decisions(p)
    assert d[["record_l", "record_r", "decision"]].values.tolist() == [["deaths:D1", "notifications:N2", "match"]]
    p.write_text("record_l,record_r,decision,reviewer,decided_at\nnotifications:N2,deaths:D1,maybe,ann,2024-01-01\n")
    with pytest.raises(RegistryLabError, match=r"d.csv: row 2 has decision 'maybe'"):
        review.read_decisions(p)
    p.write_text("record_l,record_r,decision\n")
    with pytest.raises(RegistryLabError, match="missing column"):
        review.read_decisions(p)


def test_decisions_honoured_by_next_link(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_LAB_KEY", KEY)
    path = write_toy_cohort(tmp_path / "toy", n_persons=80, seed=3)
    linkage.run(path, evaluate=True, quiet=True, review_band=(0.0, 1.0))
    rv = pd.read_parquet(path / "registry" / "clerical_review.parquet")
    assert len(rv) > 0
    assert {"review_key", "evidence", "level_given_name", "weight_birth_date"} <= set(rv.columns)
    rt = pd.read_parquet(path / "truth" / "record_truth.parquet")
    dec = review.simulated_decisions(rv, rt, reviewer="test", decided_at="2024-01-01")
    # flip every decision: the next link must follow the file, not the scores
    dec["decision"] = np.where(dec["decision"] == "match", "non-match", "match")
    dec.to_csv(tmp_path / "d.csv", index=False)
    before = linkage.run(path, evaluate=True, quiet=True, write=False)
    after = linkage.run(path, evaluate=True, quiet=True, write=False, decisions=tmp_path / "d.csv")
    d = after["clerical_decisions"]
    assert d["decisions"] == len(dec) and d["applied_match"] + d["applied_non_match"] == len(dec)
    assert d["without_decisions"]["f1"] == pytest.approx(before["f1"])
    assert after["f1"] < before["f1"]   # wrong decisions are honoured, and it shows


def test_hard_profile_and_lookalikes():
    from registry_lib.synth.feed_params import feed_params
    from registry_lib.synth.identities import make_lookalikes

    hard = feed_params({"feeds": {"profile": "hard"}})
    typical = feed_params({})
    assert hard["errors"]["nhs_missing"]["default"] > typical["errors"]["nhs_missing"]["default"]
    assert typical["errors"]["nhs_wrong"]["default"] == 0.0 and hard["identities"]["lookalikes"]["twins"] > 0
    with pytest.raises(ConfigError, match="feeds.profile: 'impossible'"):
        feed_params({"feeds": {"profile": "impossible"}})
    n = 400
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"patient_id": np.arange(n), "sex": rng.integers(1, 3, n),
                       "birth_date": pd.to_datetime("1950-01-01") + pd.to_timedelta(rng.integers(0, 30, n), unit="D"),
                       "given_name": [f"g{i}" for i in range(n)], "family_name": [f"f{i}" for i in range(n)],
                       "family_name_later": None, "name_change_date": pd.NaT,
                       "postcode": [f"P{i}" for i in range(n)], "postcode_later": None, "move_date": pd.NaT})
    out = make_lookalikes(df, 0.1, 0.05, np.random.default_rng(1))
    twins = out.groupby(["birth_date", "family_name", "postcode"]).size()
    same = out.groupby(["birth_date", "sex", "given_name", "family_name"]).size()
    assert (twins == 2).sum() == 20 and (same == 2).sum() == 10
    assert (out["birth_date"] == df["birth_date"]).all() and (out["sex"] == df["sex"]).all()


@pytest.mark.slow
def test_febrl_dataset1_ours_at_least_plain():
    from registry_lib.linkage.public_data import febrl_benchmark

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = febrl_benchmark("dataset1")["rows"].set_index("method")
    assert rows.loc["Registry Lab", "f1"] >= rows.loc["plain Splink", "f1"]
    assert rows.loc["Registry Lab", "f1"] >= 0.99
    assert rows.loc["exact identifier", "recall"] < 0.95
