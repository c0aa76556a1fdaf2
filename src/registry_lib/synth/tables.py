"""Schemas of synthetic England: reference data, truth and raw feeds.

Feeds keep identifiers exactly as a hospital would send them: strings, possibly wrong or
missing (dates are ISO ``YYYY-MM-DD`` strings and may be impossible, e.g. after a day-month
swap). Truth and reference tables use proper types.

Sex codes follow the NHS Data Dictionary: ``"1"`` male, ``"2"`` female, ``"9"`` not specified
(feeds, as strings); truth and registry use int8 1/2.

Example:
    >>> from registry_lib.synth.tables import NOTIFICATIONS
    >>> "nhs_number" in NOTIFICATIONS.column_names
    True
"""

from __future__ import annotations

import pyarrow as pa

from registry_lib.schema import Column as C
from registry_lib.schema import Table, register
from registry_lib.synth.feed_columns import IDENTIFIERS as _IDENTIFIERS

S, I8, I16, I32, I64, F64, D, B = (
    pa.string(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.float64(), pa.date32(), pa.bool_(),
)

# --------------------------------------------------------------------------------------------
# reference/
# --------------------------------------------------------------------------------------------
AREAS = register(Table("areas", "LSOA-like small areas (about 1,500 residents at full scale).", [
    C("area_id", S, False, "area code, e.g. E01000001"),
    C("region", S, False, "one of the 9 English regions"),
    C("x", F64, False, "easting in metres on a British-National-Grid-like plane"),
    C("y", F64, False, "northing in metres"),
    C("deprivation_quintile", I8, False, "1 = least deprived … 5 = most deprived"),
    C("urban", B, False, "true where the area lies in a city or town"),
], stage="reference", key=("area_id",)))

POPULATION = register(Table("population", "Mid-year residents by area, year, sex and 5-year age band.", [
    C("area_id", S, False, "area code"),
    C("year", I16, False, "calendar year"),
    C("sex", I8, False, "1 male, 2 female"),
    C("age_band", I8, False, "lower bound of the 5-year band: 0, 5, …, 90 (90 = 90+)"),
    C("population", I32, False, "residents"),
], stage="reference"))

POSTCODES = register(Table("postcodes", "Postcode directory: the area each postcode lies in.", [
    C("postcode", S, False, "postcode, e.g. 'LS6 2AB'"),
    C("area_id", S, False, "area code"),
], stage="reference", key=("postcode",)))

POINT_SOURCES = register(Table("point_sources", "Putative point sources of environmental exposure.", [
    C("source_id", S, False, "e.g. PS0001"),
    C("source_type", S, False, "power_station | phone_mast | incinerator | industrial_site"),
    C("name", S, False, "display name"),
    C("x", F64, False, "easting in metres"),
    C("y", F64, False, "northing in metres"),
    C("start_year", I16, False, "year the source began operating"),
], stage="reference", key=("source_id",)))

LIFE_TABLE = register(Table("life_table", "Annual probability of death (all causes) for the general population.", [
    C("year", I16, False, "calendar year"),
    C("sex", I8, False, "1 male, 2 female"),
    C("deprivation_quintile", I8, False, "1–5"),
    C("age", I8, False, "single year of age 0–100 (100 = 100+)"),
    C("qx", F64, False, "probability of dying within the year"),
], stage="reference"))

STANDARD_POPULATIONS = register(Table("standard_populations", "Standard populations for age standardisation.", [
    C("standard", S, False, "esp2013 | icss1 | icss2 | icss3"),
    C("age_band", I8, False, "lower bound of the age band"),
    C("weight", F64, False, "weight (ESP per 100,000; ICSS as proportions)"),
], stage="reference"))

TRUSTS = register(Table("trusts", "NHS trusts that diagnose and treat cancer.", [
    C("trust_code", S, False, "3-character trust code, e.g. R0A"),
    C("region", S, False, "region"),
    C("x", F64, False, "easting in metres"),
    C("y", F64, False, "northing in metres"),
], stage="reference", key=("trust_code",)))

NATIONAL_INCIDENCE = register(Table("national_incidence", "Published national cancer incidence (England, all "
                                   "registrations of the site) per person-year, as the reference rates of SIR studies.", [
    C("year", I16, False, "calendar year"),
    C("site_icd10", S, False, "ICD-10 site, 3 characters"),
    C("sex", I8, False, "1 male, 2 female"),
    C("age_band", I8, False, "lower bound of the 5-year age band (90 = 90+)"),
    C("rate", F64, False, "registrations per person-year"),
], stage="reference", key=("year", "site_icd10", "sex", "age_band")))

# --------------------------------------------------------------------------------------------
# truth/
# --------------------------------------------------------------------------------------------
TRUE_PATIENTS = register(Table("patients", "The true people behind every feed record.", [
    C("patient_id", I64, False, "true person id"),
    C("nhs_number", S, False, "true 10-digit NHS number (never-issued 9xx range, valid check digit)"),
    C("given_name", S, False, "given name"),
    C("family_name", S, False, "family name at first diagnosis"),
    C("family_name_later", S, True, "family name after marriage, if changed"),
    C("name_change_date", D, True, "date of the surname change"),
    C("birth_date", D, False, "date of birth"),
    C("sex", I8, False, "1 male, 2 female"),
    C("ethnicity", S, False, "ONS 5-group ethnicity"),
    C("postcode", S, False, "home postcode at first diagnosis"),
    C("postcode_later", S, True, "postcode after a house move, if any"),
    C("move_date", D, True, "date of the house move"),
    C("area_id", S, False, "area of residence at first diagnosis"),
    C("deprivation_quintile", I8, False, "1–5"),
    C("performance_status", I8, False, "WHO performance status 0–4 at first diagnosis"),
    C("comorbidity_score", I8, False, "Charlson comorbidity 0, 1, 2, 3 (3 = 3+)"),
    C("death_date", D, True, "date of death, null if alive at the end of follow-up"),
    C("death_cause_icd10", S, True, "underlying cause of death (ICD-10)"),
    C("ndop_opted_out", B, False, "on the national data opt-out list"),
    C("registration_opted_out", B, False, "asked the registry not to register them"),
    C("registration_optout_date", D, True, "date of the registration opt-out request"),
], stage="truth", key=("patient_id",)))

TRUE_TUMOURS = register(Table("tumours", "The true tumours (one row per primary).", [
    C("tumour_id", I64, False, "true tumour id"),
    C("patient_id", I64, False, "true person id"),
    C("diagnosis_date", D, False, "date of diagnosis"),
    C("age_at_diagnosis", I16, False, "age in completed years"),
    C("site_icd10", S, False, "ICD-10 3-character site"),
    C("morphology_icdo3", S, False, "ICD-O-3 morphology code, e.g. 8140"),
    C("behaviour", S, False, "ICD-O-3 behaviour (3 = malignant)"),
    C("stage", S, False, "true stage 1–4"),
    C("stage_recorded", S, False, "stage as recorded: 1–4 or U (unknown)"),
    C("grade", S, False, "G1–G4 or GX"),
    C("laterality", S, False, "L, R, B (bilateral), M (midline) or 9 (not applicable)"),
    C("route_to_diagnosis", S, False, "one of the 8 Routes to Diagnosis"),
    C("basis_of_diagnosis", S, False, "ENCR basis of diagnosis code 0–9"),
    C("diagnosing_trust", S, False, "trust code"),
    C("area_id", S, False, "area of residence at diagnosis"),
    C("in_cluster", B, False, "added by the injected cluster effect"),
], stage="truth", key=("tumour_id",)))

TRUE_TREATMENTS = register(Table("treatments", "The true treatments given.", [
    C("treatment_id", I64, False, "true treatment id"),
    C("patient_id", I64, False, "true person id"),
    C("tumour_id", I64, False, "true tumour id"),
    C("modality", S, False, "surgery | sact | radiotherapy"),
    C("start_date", D, False, "start date"),
    C("intent", S, False, "curative | adjuvant | neoadjuvant | palliative"),
    C("regimen", S, True, "SACT regimen name"),
    C("cycles", I16, True, "SACT cycles"),
    C("rt_region", S, True, "radiotherapy region (chest, mantle, breast, pelvis, …)"),
    C("dose_gy", F64, True, "radiotherapy total dose in Gy"),
    C("fractions", I16, True, "radiotherapy fractions"),
    C("procedure_code", S, True, "OPCS-4 procedure code for surgery"),
], stage="truth", key=("treatment_id",)))

RECORD_TRUTH = register(Table("record_truth", "The true person, tumour and treatment of every feed record.", [
    C("feed", S, False, "notifications | sact | radiotherapy | surgery | deaths | registration_optouts"),
    C("record_id", S, False, "record id in that feed"),
    C("patient_id", I64, False, "true person id"),
    C("tumour_id", I64, True, "true tumour id (null for deaths and opt-outs)"),
    C("treatment_id", I64, True, "true treatment id (treatment feeds)"),
    C("errors", S, False, "';'-separated identifier errors injected into this record ('' if none)"),
], stage="truth", key=("feed", "record_id")))

# --------------------------------------------------------------------------------------------
# feeds/  (identifiers as sent: strings, possibly wrong or missing)
# --------------------------------------------------------------------------------------------

NOTIFICATIONS = register(Table("notifications", "Hospital cancer notifications: several per tumour.", [
    C("record_id", S, False, "unique record id"),
    C("trust_code", S, False, "sending trust"),
    C("source", S, False, "pathology | mdt | pas | screening"),
    C("received_date", S, False, "date the registry received it"),
    *_IDENTIFIERS,
    C("ethnicity", S, True, "ethnicity as sent"),
    C("diagnosis_date", S, True, "date of diagnosis as sent"),
    C("site_icd10", S, True, "ICD-10 site, 3 or 4 characters (e.g. C50 or C509)"),
    C("morphology_icdo3", S, True, "ICD-O-3 morphology, e.g. 8140"),
    C("behaviour", S, True, "ICD-O-3 behaviour"),
    C("stage", S, True, "1–4, or null when not staged by this source"),
    C("grade", S, True, "G1–G4, GX"),
    C("laterality", S, True, "L, R, B, M, 9"),
    C("route_to_diagnosis", S, True, "route, where the source knows it"),
    C("basis_of_diagnosis", S, True, "ENCR code"),
    C("performance_status", I8, True, "WHO performance status (MDT records)"),
    C("comorbidity_score", I8, True, "Charlson score (PAS records)"),
], stage="feeds", key=("record_id",)))

SACT = register(Table("sact", "Systemic anti-cancer therapy dataset: one row per regimen.", [
    C("record_id", S, False, "unique record id"),
    C("trust_code", S, False, "treating trust"),
    *_IDENTIFIERS,
    C("site_icd10", S, True, "primary diagnosis ICD-10"),
    C("regimen", S, False, "regimen name"),
    C("intent", S, True, "curative | adjuvant | neoadjuvant | palliative"),
    C("cycles", I16, True, "cycles given"),
    C("start_date", S, False, "regimen start date"),
    C("performance_status", I8, True, "WHO performance status at start"),
], stage="feeds", key=("record_id",)))

RADIOTHERAPY = register(Table("radiotherapy", "Radiotherapy dataset: one row per course.", [
    C("record_id", S, False, "unique record id"),
    C("trust_code", S, False, "treating trust"),
    *_IDENTIFIERS,
    C("site_icd10", S, True, "primary diagnosis ICD-10"),
    C("rt_region", S, False, "treatment region"),
    C("dose_gy", F64, True, "prescribed dose in Gy"),
    C("fractions", I16, True, "prescribed fractions"),
    C("intent", S, True, "curative | adjuvant | palliative"),
    C("start_date", S, False, "course start date"),
], stage="feeds", key=("record_id",)))

SURGERY = register(Table("surgery", "Hospital episodes with a cancer resection.", [
    C("record_id", S, False, "unique record id"),
    C("trust_code", S, False, "treating trust"),
    *_IDENTIFIERS,
    C("site_icd10", S, True, "primary diagnosis ICD-10"),
    C("procedure_code", S, False, "OPCS-4 code"),
    C("procedure_date", S, False, "date of the operation"),
], stage="feeds", key=("record_id",)))

DEATHS = register(Table("deaths", "Death registrations (ONS).", [
    C("record_id", S, False, "unique record id"),
    *_IDENTIFIERS,
    C("death_date", S, False, "date of death"),
    C("underlying_cause_icd10", S, True, "underlying cause, ICD-10 (3 or 4 characters)"),
    C("registration_date", S, False, "date the death was registered"),
], stage="feeds", key=("record_id",)))

REGISTRATION_OPTOUTS = register(Table("registration_optouts", "Requests not to be registered (cancer registration opt-out).", [
    C("record_id", S, False, "unique record id"),
    C("nhs_number", S, True, "NHS number"),
    C("given_name", S, True, "given name"),
    C("family_name", S, True, "family name"),
    C("birth_date", S, True, "date of birth"),
    C("request_date", S, False, "date of the request"),
], stage="feeds", key=("record_id",)))

NDOP = register(Table("ndop", "The national data opt-out list, by NHS number.", [
    C("nhs_number", S, False, "NHS number"),
    C("optout_date", S, False, "date the opt-out was registered"),
], stage="feeds", key=("nhs_number",)))

FEEDS = {t.name: t for t in (NOTIFICATIONS, SACT, RADIOTHERAPY, SURGERY, DEATHS, REGISTRATION_OPTOUTS, NDOP)}
TRUTH = {t.name: t for t in (TRUE_PATIENTS, TRUE_TUMOURS, TRUE_TREATMENTS, RECORD_TRUTH)}
REFERENCE = {t.name: t for t in (AREAS, POPULATION, POSTCODES, POINT_SOURCES, LIFE_TABLE, STANDARD_POPULATIONS, TRUSTS,
                                  NATIONAL_INCIDENCE)}

# The screening and CPES feeds (issue 14) live in tables_linked.py; written with the others.
from registry_lib.synth.tables_linked import LINKED_FEEDS, LINKED_REFERENCE, LINKED_TRUTH  # noqa: E402

FEEDS.update(LINKED_FEEDS)
REFERENCE.update(LINKED_REFERENCE)
TRUTH.update(LINKED_TRUTH)
