"""Schemas of the screening and Cancer Patient Experience Survey feeds and their truth.

Example:
    >>> from registry_lib.synth.tables_linked import CPES
    >>> "overall_rating" in CPES.column_names
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

SCREENING = register(Table("screening", "Screening programme histories of people with cancer (breast, bowel, "
                           "cervical): one row per invitation.", [
    C("record_id", S, False, "unique record id"),
    *_IDENTIFIERS,
    C("programme", S, False, "breast | bowel | cervical"),
    C("invitation_date", S, False, "date of the invitation"),
    C("attended", B, False, "the person was tested after this invitation"),
    C("test_type", S, True, "mammogram | FIT | cytology | HPV (null if not attended)"),
    C("test_date", S, True, "date of the test (null if not attended)"),
    C("result", S, True, "negative | positive (positive: referred for assessment)"),
], stage="feeds", key=("record_id",)))

SCREENING_STATISTICS = register(Table("screening_statistics", "Programme statistics (published, aggregate): people "
                                      "eligible and tested per programme, year, area, sex and age band.", [
    C("programme", S, False, "breast | bowel | cervical"),
    C("year", I16, False, "calendar year"),
    C("area_id", S, False, "area code"),
    C("sex", I8, False, "1 male, 2 female"),
    C("age_band", I8, False, "lower bound of the 5-year age band"),
    C("eligible", I32, False, "residents of the band within the programme's ages"),
    C("tested", I32, False, "people tested in the year"),
], stage="reference", key=("programme", "year", "area_id", "sex", "age_band")))

CPES = register(Table("cpes", "National Cancer Patient Experience Survey: the sample, response and answers "
                      "(one row per sampled patient and survey year).", [
    C("record_id", S, False, "unique record id"),
    C("trust_code", S, False, "trust of the sampled episode"),
    C("survey_year", I16, False, "survey year (episodes April-June)"),
    *_IDENTIFIERS,
    C("ethnicity", S, True, "ethnicity as held by the trust"),
    C("site_icd10", S, True, "ICD-10 site of the episode"),
    C("episode_date", S, False, "date of the inpatient or day-case episode"),
    C("responded", B, False, "returned the questionnaire"),
    C("overall_rating", I8, True, "overall rating of care 0 (very poor) - 10 (very good)"),
    C("cns_name", B, True, "given the name of a main contact / clinical nurse specialist"),
    C("told_sensitively", B, True, "told sensitively that they had cancer"),
    C("involved_decisions", B, True, "definitely involved as much as wanted in treatment decisions"),
    C("support_after_treatment", B, True, "given enough support after treatment"),
], stage="feeds", key=("record_id",)))

SCREENING_DETECTION = register(Table("screening_detection", "How each tumour of a screened site was found.", [
    C("tumour_id", I64, False, "true tumour id"),
    C("programme", S, False, "breast | bowel | cervical"),
    C("detection", S, False, "screen_detected | interval | lapsed | never_screened | not_eligible"),
    C("screen_date", D, True, "last routine test before diagnosis (null if none in the interval)"),
    C("years_since_screen", F64, True, "years from that test to diagnosis (interval cancers; 0 if screen-detected)"),
], stage="truth", key=("tumour_id",)))

LINKED_FEEDS = {t.name: t for t in (SCREENING, CPES)}
LINKED_REFERENCE = {t.name: t for t in (SCREENING_STATISTICS,)}
LINKED_TRUTH = {t.name: t for t in (SCREENING_DETECTION,)}
