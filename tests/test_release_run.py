"""Releases: policies, opt-outs, pseudonyms, forbidden fields, audit log, risk report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fixtures.registry import example_registry, write_example_cohort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_lib.errors import RegistryLabError
from registry_lib.io import read_parquet
from registry_lib.keys import KEY_HELP
from registry_lib.paths import project_root
from registry_lib.release import (
    list_policies,
    load_policy,
    load_release,
    read_audit,
    release_info,
    run,
)
from registry_lib.release.policy import DIRECT_IDENTIFIERS
from registry_lib.release.records import build_aggregate_release, build_record_release
from registry_lib.release.risk import class_sizes, local_suppression, risk_report

KEY_A = "3a6bf2b23cb79401d3683a0ac4956397f426effd72f435012c41c2a4a612a227"
KEY_B = "4566575f9f7494b1e4ed569aa681259b0ed2affd30fd34d6a4709b99e7a07c5a"
POLICIES = project_root() / "params" / "release"


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("REGISTRY_LAB_KEY", KEY_A)
    monkeypatch.delenv("REGISTRY_LAB_KEY_FILE", raising=False)
    return KEY_A


@pytest.fixture(scope="module")
def cohort_template(tmp_path_factory):
    return write_example_cohort(tmp_path_factory.mktemp("tpl") / "toy", n_patients=400, seed=3)


@pytest.fixture
def cohort(tmp_path, cohort_template):
    dest = tmp_path / "toy"
    shutil.copytree(cohort_template, dest)
    return dest


# ---------------------------------------------------------------------------------------------
# policies
# ---------------------------------------------------------------------------------------------
def test_the_four_policies_follow_english_defaults():
    assert set(list_policies()) >= {"direct_care", "research_identifiable",
                                    "research_pseudonymised", "aggregate_publication"}
    ndop = {n: load_policy(n).national_data_opt_out for n in
            ("direct_care", "research_identifiable", "research_pseudonymised", "aggregate_publication")}
    assert ndop == {"direct_care": False, "research_identifiable": True,
                    "research_pseudonymised": True, "aggregate_publication": False}
    assert load_policy("aggregate_publication").output == "aggregates"
    assert load_policy("direct_care").output == "record_level"


def test_research_pseudonymised_carries_what_the_studies_need():
    p = load_policy("research_pseudonymised")
    assert p.fields("patient") == ["pseudo_id", "sex", "ethnicity", "deprivation_quintile", "area_id",
                                   "region", "death_date", "death_cause_icd10"]
    assert p.fields("tumour") == [
        "tumour_id", "pseudo_id", "diagnosis_date", "age_at_diagnosis", "site_icd10",
        "morphology_icdo3", "behaviour", "stage", "grade", "laterality", "route_to_diagnosis",
        "basis_of_diagnosis", "diagnosing_trust", "area_id", "performance_status", "comorbidity_score"]
    assert p.fields("treatment") == [
        "treatment_id", "pseudo_id", "tumour_id", "modality", "start_date", "intent", "regimen",
        "rt_region", "dose_gy", "fractions", "procedure_code"]
    direct = set(load_policy("direct_care").fields("patient"))
    assert {"nhs_number", "given_name", "family_name", "birth_date", "postcode"} <= direct


# ---------------------------------------------------------------------------------------------
# the release command
# ---------------------------------------------------------------------------------------------
def test_release_writes_folder_manifest_and_audit(cohort, key):
    out = run(cohort, "research_pseudonymised", "Dr A. Analyst, study 03")
    assert out == cohort / "releases" / "research_pseudonymised"
    assert sorted(p.name for p in out.iterdir()) == [
        "cpes.parquet", "patient.parquet", "release.json", "risk_report.json", "screening.parquet",
        "treatment.parquet", "tumour.parquet"]
    info = json.loads((out / "release.json").read_text())
    reg = {n: read_parquet(cohort / "registry" / f"{n}.parquet") for n in ("patient", "tumour", "treatment")}
    # NDOP patients, and patients the NDOP could not be checked for (no valid NHS number), are out
    unchecked = reg["patient"]["nhs_number"].isna()
    opted = set(reg["patient"].loc[reg["patient"]["ndop_opted_out"] | unchecked, "patient_id"])
    assert info["national_data_opt_out"]["patients_without_valid_nhs_number"] == int(unchecked.sum())
    assert info["national_data_opt_out"]["unchecked_patients"] == "excluded"
    assert info["opt_out_removals"] == {
        "patient": len(opted),
        "tumour": int(reg["tumour"]["patient_id"].isin(opted).sum()),
        "treatment": int(reg["treatment"]["patient_id"].isin(opted).sum()),
        "screening": 0, "cpes": 0,   # the example registry has no screening or CPES feed
    }
    assert info["row_counts"]["patient"] == len(reg["patient"]) - len(opted)
    assert info["purpose"] == "research_pseudonymised" and info["national_data_opt_out_applied"]
    text = "".join(p.read_text() for p in out.glob("*.json"))
    assert KEY_A not in text and "Analyst" not in text  # no key, no requester in the release
    audit = read_audit(cohort)
    assert len(audit) == 1
    entry = audit.iloc[0]
    assert entry["requester"] == "Dr A. Analyst, study 03" and entry["purpose"] == "research_pseudonymised"
    assert entry["row_counts"] == info["row_counts"]
    assert entry["opt_out_removals"] == info["opt_out_removals"]
    assert set(entry["files_sha256"]) == {p.name for p in out.iterdir()}
    assert KEY_A not in (cohort / "releases" / "audit.jsonl").read_text()


def test_release_is_deterministic_and_audit_is_append_only(cohort, key):
    out = run(cohort, "research_pseudonymised", "first")
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    log = cohort / "releases" / "audit.jsonl"
    line1 = log.read_text()
    run(cohort, "research_pseudonymised", "second")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # byte-identical
    text = log.read_text()
    assert text.startswith(line1) and len(text.splitlines()) == 2  # appended, not rewritten
    agg = run(cohort, "aggregate_publication", "third")
    assert log.read_text().startswith(text) and len(log.read_text().splitlines()) == 3
    cube = {p.name: p.read_bytes() for p in agg.iterdir()}
    run(cohort, "aggregate_publication", "fourth")
    assert {p.name: p.read_bytes() for p in agg.iterdir()} == cube


def test_pseudonyms_stable_under_one_key_and_unlinkable_under_another(cohort, monkeypatch):
    monkeypatch.setenv("REGISTRY_LAB_KEY", KEY_A)
    run(cohort, "research_pseudonymised", "x")
    a1 = load_release(cohort, "research_pseudonymised")
    run(cohort, "research_identifiable", "x")
    ident = load_release(cohort, "research_identifiable")
    # the same key: the same pseudonym for the same person in two releases
    assert set(a1["patient"]["pseudo_id"]) == set(ident["patient"]["pseudo_id"])
    run(cohort, "research_pseudonymised", "x")
    assert load_release(cohort, "research_pseudonymised")["patient"].equals(a1["patient"])
    some = load_release(cohort, "research_pseudonymised", tables=["patient", "tumour"])  # only the tables asked for
    assert sorted(some) == ["patient", "tumour"] and some["tumour"].equals(a1["tumour"])
    narrow = load_release(cohort, "research_pseudonymised", tables=["tumour"], columns={"tumour": ["tumour_id", "stage"]})
    assert narrow["tumour"].equals(a1["tumour"][["tumour_id", "stage"]])
    with pytest.raises(RegistryLabError, match=r"no table\(s\) \['cpes_2019'\]"):
        load_release(cohort, "research_pseudonymised", tables=["patient", "cpes_2019"])
    monkeypatch.setenv("REGISTRY_LAB_KEY", KEY_B)
    run(cohort, "research_pseudonymised", "x")
    b = load_release(cohort, "research_pseudonymised")
    assert len(b["patient"]) == len(a1["patient"])
    assert not set(b["patient"]["pseudo_id"]) & set(a1["patient"]["pseudo_id"])
    assert not set(b["tumour"]["tumour_id"]) & set(a1["tumour"]["tumour_id"])
    # tables still join within a release
    assert set(b["tumour"]["pseudo_id"]) <= set(b["patient"]["pseudo_id"])
    t = b["treatment"]["tumour_id"].dropna()
    assert set(t) <= set(b["tumour"]["tumour_id"])


def test_no_key_says_how_to_make_one(cohort, monkeypatch, tmp_path):
    monkeypatch.delenv("REGISTRY_LAB_KEY", raising=False)
    monkeypatch.delenv("REGISTRY_LAB_KEY_FILE", raising=False)
    monkeypatch.setenv("REGISTRY_LAB_ROOT", str(tmp_path / "elsewhere"))  # no key file there
    with pytest.raises(RegistryLabError) as err:
        run(cohort, POLICIES / "research_pseudonymised.yaml", "x")
    assert str(err.value) == KEY_HELP and "registry-lab keygen" in str(err.value)
    assert not (cohort / "releases").exists()


def _custom_policy(tmp_path: Path, base: str, edit) -> Path:
    spec = yaml.safe_load((POLICIES / f"{base}.yaml").read_text())
    edit(spec)
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["tables"]["patient"].update({"nhs_number": "copy"}), "forbidden"),
    (lambda s: s["tables"]["patient"].update({"nhs": {"from": "nhs_number"}}), "releases nhs_number unchanged"),
    (lambda s: s["tables"]["tumour"].update({"patient_id": "copy"}), "forbidden"),
    (lambda s: s["tables"]["patient"].update({"dob": {"from": "birth_date", "transform": "copy"}}),
     "releases birth_date unchanged"),
])
def test_forbidden_field_fails_and_writes_nothing(cohort, key, tmp_path, edit, message):
    path = _custom_policy(tmp_path, "research_pseudonymised", edit)
    with pytest.raises(RegistryLabError, match=message) as err:
        run(cohort, path, "x")
    assert "nothing was released" in str(err.value)
    assert not (cohort / "releases").exists()


def test_generalised_identifiers_are_allowed(cohort, key, tmp_path):
    def edit(s):
        s["tables"]["patient"]["birth_year"] = {"from": "birth_date", "transform": "year"}
        s["tables"]["patient"]["postcode_district"] = {"from": "postcode", "transform": "district"}
        s["tables"]["tumour"]["diagnosis_month"] = {"from": "diagnosis_date", "transform": "month"}
        s["tables"]["tumour"]["age_band"] = {"from": "age_at_diagnosis", "transform": "age_band"}
    out = run(cohort, _custom_policy(tmp_path, "research_pseudonymised", edit), "x")
    rel = load_release(cohort, out.name)
    reg = read_parquet(cohort / "registry" / "patient.parquet")
    assert set(rel["patient"]["birth_year"]) <= set(reg["birth_date"].dt.year)
    assert rel["patient"]["postcode_district"].str.fullmatch(r"LS\d+").all()
    assert rel["tumour"]["diagnosis_month"].str.fullmatch(r"\d{4}-\d{2}").all()
    assert set(rel["tumour"]["age_band"]) <= set(range(0, 95, 5))


def test_unknown_policy_and_bad_policy(cohort, key, tmp_path):
    with pytest.raises(RegistryLabError, match="no such release policy"):
        run(cohort, "no_such_policy", "x")
    path = _custom_policy(tmp_path, "research_pseudonymised", lambda s: s.update(purpose="marketing"))
    with pytest.raises(RegistryLabError, match="purpose must be one of"):
        run(cohort, path, "x")
    path = _custom_policy(tmp_path, "research_pseudonymised",
                          lambda s: s["tables"]["patient"].update({"x": {"from": "nope"}}))
    with pytest.raises(RegistryLabError, match="no column 'nope'"):
        run(cohort, path, "x")
    with pytest.raises(RegistryLabError, match="requester"):
        run(cohort, "research_pseudonymised", "  ")


def test_missing_registry_and_missing_release_name_the_command(tmp_path, key):
    with pytest.raises(RegistryLabError, match="registry-lab link --cohort ghost"):
        run(tmp_path / "ghost", "research_pseudonymised", "x")
    with pytest.raises(RegistryLabError, match="registry-lab release --cohort ghost --policy direct_care"):
        load_release(tmp_path / "ghost", "direct_care")


def test_registration_opt_out_left_in_the_registry_blocks_every_release(cohort, key):
    from registry_lib.io import write_parquet
    from registry_lib.keys import keyed_hash
    from registry_lib.linkage.tables import OPTOUT_HASHES

    patient = read_parquet(cohort / "registry" / "patient.parquet")
    hashes = pd.DataFrame({
        "nhs_number_hash": keyed_hash(patient["nhs_number"].dropna().iloc[:1],
                                      purpose="registration-optout", key=bytes.fromhex(KEY_A)),
        "optout_person": [1], "request_date": [None], "records_removed": [0], "records_blocked": [2]})
    write_parquet(hashes, cohort / "registry" / "optout_hashes.parquet", OPTOUT_HASHES)
    for policy in ("direct_care", "aggregate_publication"):
        with pytest.raises(RegistryLabError, match="1 registry patient"):
            run(cohort, policy, "x")
    assert not (cohort / "releases").exists()
    # a hash of someone who is not registered is fine
    hashes["nhs_number_hash"] = keyed_hash(pd.Series(["9000000018"]), purpose="registration-optout",
                                           key=bytes.fromhex(KEY_A))
    write_parquet(hashes, cohort / "registry" / "optout_hashes.parquet", OPTOUT_HASHES)
    run(cohort, "direct_care", "x")
    assert "checked" in release_info(cohort, "direct_care")["registration_opt_outs"]


def test_direct_care_is_identifiable_and_keeps_opted_out_patients(cohort, key):
    run(cohort, "direct_care", "Breast screening recall office")
    rel = load_release(cohort, "direct_care")
    reg = read_parquet(cohort / "registry" / "patient.parquet")
    assert len(rel["patient"]) == len(reg)  # NDOP does not apply to direct care
    assert set(rel["patient"]["nhs_number"].dropna()) == set(reg["nhs_number"].dropna())
    assert {"given_name", "family_name", "birth_date", "postcode"} <= set(rel["patient"].columns)
    assert "pseudo_id" not in rel["patient"].columns  # cannot be joined to research pseudonyms
    assert release_info(cohort, "direct_care")["opt_out_removals"]["patient"] == 0


def test_aggregate_release_counts_every_tumour(cohort, key):
    run(cohort, "aggregate_publication", "ONS-style publication")
    rel = load_release(cohort, "aggregate_publication")
    assert list(rel) == ["incidence"]
    cube = rel["incidence"]
    reg_t = read_parquet(cohort / "registry" / "tumour.parquet")
    assert cube["count"].sum() == len(reg_t)  # NDOP does not apply to aggregates
    assert not set(cube.columns) & set(DIRECT_IDENTIFIERS)
    c18 = cube.loc[(cube["site_icd10"] == "C18") & (cube["diagnosis_year"] == 2016), "count"].sum()
    assert c18 == ((reg_t["site_icd10"] == "C18") & (reg_t["diagnosis_date"].dt.year == 2016)).sum()
    assert not (cohort / "releases" / "aggregate_publication" / "risk_report.json").exists()


# ---------------------------------------------------------------------------------------------
# property tests on random registries
# ---------------------------------------------------------------------------------------------
registries = st.builds(
    lambda n, seed, share: example_registry(n_patients=n, seed=seed, ndop_share=share),
    st.integers(1, 60), st.integers(0, 10_000), st.sampled_from([0.0, 0.05, 0.5, 1.0]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(registries, st.sampled_from(["research_pseudonymised", "research_identifiable"]))
def test_no_ndop_patient_in_a_release_that_applies_it(key, reg_ref, policy_name):
    reg, ref = reg_ref
    pol = load_policy(policy_name)
    rel = build_record_release(reg, pol, areas=ref["areas"], key=bytes.fromhex(KEY_A))
    everyone = build_record_release(reg, load_policy("direct_care"), key=bytes.fromhex(KEY_A))
    # on the list, or not checkable against it (no valid NHS number): both left out by default
    opted = (reg["patient"]["ndop_opted_out"] | reg["patient"]["nhs_number"].isna()).to_numpy()
    # recompute the pseudonyms of opted-out people and look for them anywhere in the release
    from registry_lib.release.records import patient_pseudonyms
    pseudo = patient_pseudonyms(reg["patient"], bytes.fromhex(KEY_A))
    banned = set(pseudo[opted])
    for df in rel.tables.values():
        assert not banned & set(df["pseudo_id"])
    assert len(rel.tables["patient"]) == (~opted).sum()
    assert rel.opt_out_removals["patient"] == opted.sum()
    banned_nhs = set(reg["patient"].loc[opted, "nhs_number"].dropna())
    if "nhs_number" in rel.tables["patient"]:
        assert not banned_nhs & set(rel.tables["patient"]["nhs_number"].dropna())
    assert len(everyone.tables["patient"]) == len(reg["patient"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(registries)
def test_no_direct_identifier_in_a_pseudonymised_release(key, reg_ref):
    reg, ref = reg_ref
    rel = build_record_release(reg, load_policy("research_pseudonymised"), areas=ref["areas"],
                               key=bytes.fromhex(KEY_A))
    p = reg["patient"]
    identifiers = set()
    for col in ("nhs_number", "given_name", "family_name", "postcode"):
        identifiers |= set(p[col].dropna().astype(str))
    births = set(p["birth_date"].dropna())
    for name, df in rel.tables.items():
        assert not set(df.columns) & {*DIRECT_IDENTIFIERS, "patient_id"}
        for col in df.columns:
            values = df[col].dropna()
            if pd.api.types.is_datetime64_any_dtype(values):
                if name == "patient":
                    assert not set(values) & births or col == "death_date"
                continue
            assert not set(values.astype(str)) & identifiers, (name, col)
        for col in ("pseudo_id", "tumour_id", "treatment_id"):  # registry ids only as keyed hashes
            if col in df.columns:
                assert df[col].dropna().str.fullmatch(r"[0-9a-f]{64}").all()


# ---------------------------------------------------------------------------------------------
# re-identification risk
# ---------------------------------------------------------------------------------------------
def test_risk_report_counts_small_classes_exactly():
    tumour = pd.DataFrame({
        "pid": list("abcdefg"),
        "age_at_diagnosis": [60, 61, 62, 63, 64, 70, 71],
        "site_icd10": ["C18"] * 5 + ["C50", "C50"],
        "area_id": ["x"] * 7,
        "diagnosis_date": pd.to_datetime(["2019-03-01"] * 5 + ["2019-04-02", "2019-04-20"]),
    })
    patient = pd.DataFrame({"pid": list("abcdefg"), "sex": [1, 1, 1, 1, 2, 2, 2]})
    tables = {"patient": patient, "tumour": tumour}
    qis = ["age_band", "sex", "area_id", "diagnosis_month", "site_icd10"]
    r = risk_report(tables, "pid", qis, k=3)
    # classes: (60,M,..C18) x4, (60,F,C18) x1, (70,F,C50) x2
    assert r["records"] == 7 and r["equivalence_classes"] == 3
    assert r["records_in_small_classes"] == 3 and r["share_in_small_classes"] == pytest.approx(3 / 7, abs=1e-6)
    assert r["unique_records"] == 1
    assert r["records_by_class_size"] == {"1": 1, "2": 2, "3+": 4}
    assert r["share_at_risk_without"]["sex"] == pytest.approx(2 / 7, abs=1e-6)
    assert r["not_released"] == []


def test_local_suppression_reaches_k():
    reg, ref = example_registry(n_patients=300, seed=4)
    rel = build_record_release(reg, load_policy("research_pseudonymised"), areas=ref["areas"],
                               key=bytes.fromhex(KEY_A))
    qis = ["age_band", "sex", "area_id", "diagnosis_month", "site_icd10"]
    before = risk_report(rel.tables, "pseudo_id", qis, k=3)
    assert before["share_in_small_classes"] > 0.5
    new, summary = local_suppression(rel.tables, "pseudo_id", qis, k=3,
                                     order=["area_id", "diagnosis_month", "age_band", "site_icd10", "sex"])
    after = risk_report(new, "pseudo_id", qis, k=3)
    assert after["records_in_small_classes"] == summary["records_still_in_small_classes"]
    assert after["records_in_small_classes"] < 3  # only a lone all-blank remainder can stay
    assert summary["blanked"]["area_id"] > 0
    assert new["tumour"]["area_id"].isna().sum() == summary["blanked"]["area_id"]
    assert len(new["tumour"]) == len(rel.tables["tumour"])  # nothing dropped


def test_risk_report_written_and_local_suppression_applied_by_policy(cohort, key, tmp_path):
    path = _custom_policy(tmp_path, "research_pseudonymised",
                          lambda s: s["risk"].update(local_suppression=True, k=2))
    out = run(cohort, path, "x")
    report = json.loads((out / "risk_report.json").read_text())
    assert report["before_suppression"]["k"] == 2
    assert report["after_suppression"]["records_in_small_classes"] <= 1
    rel = load_release(cohort, out.name)
    qi = pd.DataFrame({"a": rel["tumour"]["area_id"]})
    assert qi["a"].isna().sum() == report["local_suppression"]["blanked"]["area_id"]


def test_class_sizes_treat_blank_as_a_value():
    f = pd.DataFrame({"a": ["x", None, None, "x"], "b": ["1", "1", "1", "1"]})
    assert class_sizes(f).tolist() == [2, 2, 2, 2]


def test_aggregate_cube_groups_missing_values():
    reg, _ = example_registry(n_patients=50, seed=9)
    reg["tumour"].loc[:4, "stage"] = None
    reg["tumour"]["age_at_diagnosis"] = reg["tumour"]["age_at_diagnosis"].astype("Int16")
    reg["tumour"].loc[5:6, "age_at_diagnosis"] = pd.NA
    cube = build_aggregate_release(reg, load_policy("aggregate_publication")).tables["incidence"]
    assert cube["count"].sum() == len(reg["tumour"])
    assert cube.loc[cube["stage"].isna(), "count"].sum() == 5
    assert cube.loc[cube["age_band"].isna(), "count"].sum() == 2  # unknown age is not 90+
