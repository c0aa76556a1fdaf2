"""Who the synthetic patients are: postcodes, NHS numbers, names, marriages and house moves.

Names come from Faker's en_GB word lists, sampled in bulk with numpy (never one Faker call per
person): family names with Faker's own UK frequencies, given names by sex weighted by rank (the
lists are ordered by popularity), so common names are common, as term-frequency adjustment in
linkage expects. NHS numbers come from the never-issued 9xx range with valid check digits.
Postcodes look like UK postcodes (``"LS6 2AB"``): each region has its real postcode areas
(``LS``, ``M``, ``SW`` …), districts are spatially compact groups of areas, so two postcodes
with the same outward code (``LS6``) are near each other.

Example:
    >>> import numpy as np, pandas as pd
    >>> areas = pd.DataFrame({"area_id": ["E01", "E02"], "region": ["London", "London"],
    ...                       "x": [530000.0, 531000.0], "y": [180000.0, 181000.0]})
    >>> pcs = make_postcodes(areas, np.random.default_rng(1))
    >>> bool(pcs.postcode.is_unique), sorted(pcs.area_id.unique())
    (True, ['E01', 'E02'])
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.nhs_number import generate_nhs_numbers
from registry_lib.synth.feed_dates import change_window_end, date_in_window, to_days
from registry_lib.synth.feed_params import feed_params

# Real English postcode areas by region (Royal Mail; areas straddling a boundary are put in the
# region holding most of them).
REGION_POSTCODE_AREAS: dict[str, tuple[str, ...]] = {
    "north_east": ("NE", "SR", "DH", "DL", "TS"),
    "north_west": ("M", "L", "BB", "BL", "CA", "CH", "CW", "FY", "LA", "OL", "PR", "SK", "WA", "WN"),
    "yorkshire": ("LS", "BD", "HD", "HG", "HU", "HX", "DN", "S", "WF", "YO"),
    "east_midlands": ("DE", "LE", "LN", "NG", "NN"),
    "west_midlands": ("B", "CV", "DY", "HR", "ST", "TF", "WS", "WV", "WR"),
    "east": ("AL", "CB", "CM", "CO", "IP", "LU", "NR", "SG", "SS", "PE"),
    "london": ("E", "EC", "N", "NW", "SE", "SW", "W", "WC", "BR", "CR", "DA", "EN", "HA", "IG",
               "KT", "RM", "SM", "TW", "UB"),
    "south_east": ("BN", "CT", "GU", "ME", "MK", "OX", "PO", "RG", "RH", "SL", "SO", "TN", "HP"),
    "south_west": ("BA", "BH", "BS", "DT", "EX", "GL", "PL", "SN", "SP", "TA", "TQ", "TR"),
}
# ONS region codes E12000001 … E12000009, in that order.
_ONS_REGION_ORDER = ("north_east", "north_west", "yorkshire", "east_midlands", "west_midlands",
                     "east", "london", "south_east", "south_west")
# Letters allowed in the last two characters of a postcode (Royal Mail: no C, I, K, M, O, V).
_UNIT_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
_UNITS = np.char.add(np.repeat(_UNIT_LETTERS, 20), np.tile(_UNIT_LETTERS, 20))  # 400 pairs
_MAX_DISTRICT = 99


def canonical_region(name: str) -> str | None:
    """The key of :data:`REGION_POSTCODE_AREAS` for a region name or ONS code, else None.

    Example:
        >>> canonical_region("Yorkshire and The Humber"), canonical_region("E12000007")
        ('yorkshire', 'london')
    """
    text = str(name).strip()
    match = re.fullmatch(r"E1200000([1-9])", text)
    if match:
        return _ONS_REGION_ORDER[int(match.group(1)) - 1]
    s = " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split())
    for key, words in (("london", "london"), ("yorkshire", "yorkshire"), ("yorkshire", "humber"),
                       ("north_east", "north east"), ("north_west", "north west"),
                       ("east_midlands", "east midlands"), ("west_midlands", "west midlands"),
                       ("south_east", "south east"), ("south_west", "south west")):
        if words in s:
            return key
    if s.startswith("east") or "eastern" in s or "anglia" in s:
        return "east"
    return None


def _region_letters(regions: list[str]) -> dict[str, tuple[str, ...]]:
    """Postcode-area letters per region name; unrecognised regions get unused letter pairs."""
    out: dict[str, tuple[str, ...]] = {}
    used: set[str] = set()
    unknown = []
    for region in regions:
        key = canonical_region(region)
        if key is None or key in used:
            unknown.append(region)
        else:
            used.add(key)
            out[region] = REGION_POSTCODE_AREAS[key]
    # Regions we cannot place get synthetic 'Q' areas (no real postcode area starts with Q).
    spare = [f"Q{c}" for c in "ABCDEFGHJKLMNPRSTUWXYZ"]
    for i, region in enumerate(unknown):
        out[region] = tuple(spare[(2 * i) % len(spare): (2 * i) % len(spare) + 2])
    return out


def make_postcodes(areas: pd.DataFrame, rng: np.random.Generator,
                   per_area_mean: float | None = None) -> pd.DataFrame:
    """A postcode directory: several unique UK-format postcodes per area.

    Areas are ordered along a snake through strips of each region and cut into districts of
    about ``areas_per_district`` areas (fewer in small cohorts, so that each region has at least
    ``min_districts_per_region`` districts; feeds.yaml), districts are shared among the region's
    real postcode areas, each area gets a sector digit and ``1 + Poisson(per_area_mean - 1)``
    unit codes. Returns ``postcode, area_id`` sorted by postcode.

    Example:
        >>> areas = pd.DataFrame({"area_id": [f"E{i}" for i in range(40)], "region": "North West",
        ...                       "x": np.arange(40.0), "y": np.zeros(40)})
        >>> pcs = make_postcodes(areas, np.random.default_rng(0), per_area_mean=3)
        >>> pcs.postcode.str.fullmatch(r"[A-Z]{1,2}\\d{1,2} \\d[A-Z]{2}").all()
        np.True_
    """
    needed = {"area_id", "region", "x", "y"}
    missing = needed - set(areas.columns)
    if missing:
        raise RegistryLabError(f"reference/areas: missing column(s) {', '.join(sorted(missing))} needed for postcodes")
    if areas["area_id"].duplicated().any():
        dup = areas["area_id"][areas["area_id"].duplicated()].iloc[0]
        raise RegistryLabError(f"reference/areas: area_id {dup!r} appears more than once")
    params = feed_params({})["identities"]["postcodes"]
    mean = float(per_area_mean if per_area_mean is not None else params["per_area_mean"])
    if mean < 1:
        raise RegistryLabError(f"postcodes per area: mean {mean} must be at least 1")
    apd_default = int(params["areas_per_district"])
    min_districts = max(1, int(params["min_districts_per_region"]))
    regions = sorted(areas["region"].astype(str).unique())
    letters_by_region = _region_letters(regions)

    area_ids = areas["area_id"].astype(str).to_numpy()
    region_of = areas["region"].astype(str).to_numpy()
    xs = areas["x"].to_numpy(dtype=float)
    ys = areas["y"].to_numpy(dtype=float)
    outward = np.empty(len(areas), dtype=object)
    sector = np.empty(len(areas), dtype=np.int64)
    group = np.empty(len(areas), dtype=np.int64)  # (district, sector) group id
    group_base = 0
    for region in regions:  # loop over the 9 regions
        idx = np.flatnonzero(region_of == region)
        n = len(idx)
        pc_areas = letters_by_region[region]
        apd = min(apd_default, max(1, n // min_districts))
        apd = max(apd, int(np.ceil(n / (_MAX_DISTRICT * len(pc_areas)))))
        n_districts = int(np.ceil(n / apd))
        n_strips = max(1, int(round(np.sqrt(n_districts))))
        x_rank = np.argsort(np.argsort(xs[idx], kind="stable"), kind="stable")
        strip = x_rank * n_strips // n
        snake_y = np.where(strip % 2 == 0, ys[idx], -ys[idx])
        order = np.lexsort((idx, snake_y, strip))
        district = np.empty(n, dtype=np.int64)
        district[order] = np.arange(n) // apd
        letter_of_district = np.arange(n_districts) * len(pc_areas) // n_districts
        first = np.searchsorted(letter_of_district, letter_of_district, side="left")
        number = (np.arange(n_districts) - first + 1)[district]
        letter_idx = letter_of_district[district]
        outward[idx] = np.char.add(np.array(pc_areas)[letter_idx], number.astype(str))
        rank_in_district = np.empty(n, dtype=np.int64)
        rank_in_district[order] = np.arange(n) % apd
        sector[idx] = rank_in_district % 10
        group[idx] = group_base + district * 10 + sector[idx]
        group_base += n_districts * 10

    group_size = np.bincount(group)[group]
    cap = 400 // group_size
    counts = np.minimum(1 + rng.poisson(mean - 1, size=len(areas)), cap)
    # Units within a (district, sector) group: consecutive slots from a random start.
    order = np.lexsort((np.arange(len(areas)), group))
    csum = np.cumsum(counts[order]) - counts[order]
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]]) if len(group) else group
    first_of_group = np.zeros(group.max() + 1 if len(group) else 0, dtype=np.int64)
    first_of_group[g_sorted[starts]] = csum[starts]
    slot0 = np.empty(len(areas), dtype=np.int64)
    slot0[order] = csum - first_of_group[group[order]]
    group_offset = rng.integers(0, 400, size=len(first_of_group))
    unit_perm = rng.permutation(400)

    rows = np.repeat(np.arange(len(areas)), counts)
    within = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    slot = (group_offset[group[rows]] + slot0[rows] + within) % 400
    inward = np.char.add(sector[rows].astype(str), _UNITS[unit_perm[slot]])
    postcode = np.char.add(np.char.add(outward[rows].astype(str), " "), inward)
    out = pd.DataFrame({"postcode": postcode.astype(object), "area_id": area_ids[rows].astype(object)})
    out = out.sort_values("postcode", kind="stable").reset_index(drop=True)
    if not out["postcode"].is_unique:  # a bug, not a user error
        raise AssertionError("make_postcodes produced duplicate postcodes")
    return out


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def name_frequencies(exponent: float = 0.9, offset: float = 10.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Faker en_GB name lists with sampling probabilities: ``{"female"|"male"|"family": (names, p)}``.

    Example:
        >>> names, p = name_frequencies()["family"]
        >>> names[np.argmax(p)]
        np.str_('Smith')
    """
    from faker.providers.person.en_GB import Provider

    def ranked(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        w = (np.arange(1, len(names) + 1) + offset) ** -exponent
        return np.array(names), w / w.sum()

    family = np.array(list(Provider.last_names.keys()))
    fw = np.array(list(Provider.last_names.values()), dtype=float)
    return {
        "female": ranked(tuple(Provider.first_names_female)),
        "male": ranked(tuple(Provider.first_names_male)),
        "family": (family, fw / fw.sum()),
    }


def _draw_other(draw: np.ndarray, original: np.ndarray, n_choices: int) -> np.ndarray:
    """Replace draws equal to the original by the next choice (so the value always changes)."""
    return np.where(draw == original, (draw + 1) % n_choices, draw)


def _postcode_groups(pcs: np.ndarray) -> dict[str, np.ndarray]:
    """Start and size of each postcode's outward-code group and postcode-area group."""
    outward = np.strings.partition(pcs, " ")[0]
    letters = np.strings.rstrip(outward, "0123456789")
    result = {}
    for name, key in (("outward", outward), ("letters", letters)):
        change = np.ones(len(key), dtype=bool)
        change[1:] = key[1:] != key[:-1]
        gid = np.cumsum(change) - 1
        starts = np.flatnonzero(change)
        sizes = np.diff(np.append(starts, len(key)))
        result[name + "_start"] = starts[gid]
        result[name + "_size"] = sizes[gid]
    return result


def assign_identities(patients: pd.DataFrame, postcodes: pd.DataFrame, config: dict[str, Any],
                      rng: np.random.Generator) -> pd.DataFrame:
    """Add NHS number, names, postcode, later surname and later postcode to each patient.

    ``patients`` needs patient_id, sex (1/2), birth_date, area_id, first_diagnosis_date and
    death_date. Returns a copy with the same rows in the same order and the added columns
    nhs_number, given_name, family_name, family_name_later, name_change_date, postcode,
    postcode_later, move_date. Rates come from ``feeds.yaml`` ``identities`` (overridable via
    ``config["feeds"]["identities"]``).

    Example:
        >>> areas = pd.DataFrame({"area_id": ["E1"], "region": ["London"], "x": [0.0], "y": [0.0]})
        >>> pcs = make_postcodes(areas, np.random.default_rng(0))
        >>> pts = pd.DataFrame({"patient_id": [1, 2], "sex": [1, 2], "area_id": "E1",
        ...     "birth_date": pd.to_datetime(["1950-01-02", "1960-03-04"]),
        ...     "first_diagnosis_date": pd.to_datetime(["2019-05-01", "2020-01-01"]),
        ...     "death_date": pd.to_datetime([None, "2021-01-01"])})
        >>> out = assign_identities(pts, pcs, {}, np.random.default_rng(0))
        >>> out.nhs_number.str.len().tolist(), out.postcode.isin(pcs.postcode).all()
        ([10, 10], np.True_)
    """
    required = ["patient_id", "sex", "birth_date", "area_id", "first_diagnosis_date", "death_date"]
    missing = [c for c in required if c not in patients.columns]
    if missing:
        raise RegistryLabError(f"assign_identities: patients lack column(s) {', '.join(missing)}")
    params = feed_params(config)["identities"]
    n = len(patients)
    sex = patients["sex"].to_numpy()
    bad_sex = ~np.isin(sex, [1, 2])
    if bad_sex.any():
        pid = patients["patient_id"].to_numpy()[bad_sex][0]
        raise RegistryLabError(f"assign_identities: patient {pid} has sex {sex[bad_sex][0]!r}; expected 1 or 2")
    female = sex == 2
    names = name_frequencies(float(params["names"]["first_name_rank_exponent"]),
                             float(params["names"]["first_name_rank_offset"]))

    out = patients.copy()
    out["nhs_number"] = generate_nhs_numbers(n, rng).astype(object)

    given = np.empty(n, dtype=object)
    for key, mask in (("female", female), ("male", ~female)):
        pool, p = names[key]
        given[mask] = pool[rng.choice(len(pool), size=int(mask.sum()), p=p)]
    out["given_name"] = given

    fam_pool, fam_p = names["family"]
    fam_idx = rng.choice(len(fam_pool), size=n, p=fam_p)
    out["family_name"] = fam_pool[fam_idx].astype(object)

    diag = to_days(patients["first_diagnosis_date"])
    death = to_days(patients["death_date"])
    if np.isnat(diag).any():
        pid = patients["patient_id"].to_numpy()[np.isnat(diag)][0]
        raise RegistryLabError(f"assign_identities: patient {pid} has no first_diagnosis_date")
    window_end = change_window_end(diag, death, config, float(params["window_years"]))

    # Surname change at marriage.
    sc = params["surname_change"]
    p_change = np.where(female, float(sc["female"]), float(sc["male"]))
    change_date, ok = date_in_window(diag, window_end, rng)
    changed = (rng.random(n) < p_change) & ok
    later_idx = _draw_other(rng.choice(len(fam_pool), size=n, p=fam_p), fam_idx, len(fam_pool))
    out["family_name_later"] = np.where(changed, fam_pool[later_idx].astype(object), None)
    out["name_change_date"] = pd.to_datetime(np.where(changed, change_date, np.datetime64("NaT")))

    # Home postcode in the patient's area.
    directory = postcodes.sort_values("postcode", kind="stable")
    pcs = directory["postcode"].to_numpy(dtype=str)
    pc_area_code, pc_areas = pd.factorize(directory["area_id"].astype(str))
    by_area = np.argsort(pc_area_code, kind="stable")
    count = np.bincount(pc_area_code, minlength=len(pc_areas))
    first = np.cumsum(count) - count
    patient_area = patients["area_id"].astype(str).to_numpy()
    code = pd.Index(pc_areas).get_indexer(patient_area)
    if (code < 0).any():
        i = int(np.flatnonzero(code < 0)[0])
        raise RegistryLabError(
            f"assign_identities: area {patient_area[i]!r} of patient {patients['patient_id'].iloc[i]} "
            "has no postcode in reference/postcodes")
    pos = by_area[first[code] + np.floor(rng.random(n) * count[code]).astype(np.int64)]
    out["postcode"] = pcs[pos].astype(object)

    # House move: mostly within the same postcode district (outward code), otherwise to another
    # district of the same postcode area (or anywhere, where the area has a single district).
    hm = params["house_move"]
    move_date, ok = date_in_window(diag, window_end, rng)
    g = _postcode_groups(pcs)
    o_start, o_size = g["outward_start"][pos], g["outward_size"][pos]
    l_start, l_size = g["letters_start"][pos], g["letters_size"][pos]
    local = (rng.random(n) < float(hm["same_district"])) & (o_size >= 2)
    # elsewhere: a block [start, start + size) with the own district's block cut out
    far_start = np.where(l_size > o_size, l_start, 0)
    far_size = np.where(l_size > o_size, l_size - o_size, len(pcs) - o_size)
    u = rng.random(n)
    k_local = o_start + np.floor(u * np.maximum(o_size - 1, 1)).astype(np.int64)
    k_local = np.where(k_local >= pos, k_local + 1, k_local)
    k_far = far_start + np.floor(u * np.maximum(far_size, 1)).astype(np.int64)
    k_far = np.where(k_far >= o_start, k_far + o_size, k_far)
    new_pos = np.minimum(np.where(local, k_local, k_far), len(pcs) - 1)
    possible = local | (far_size >= 1)
    moved = (rng.random(n) < float(hm["rate"])) & ok & possible
    out["postcode_later"] = np.where(moved, pcs[new_pos].astype(object), None)
    out["move_date"] = pd.to_datetime(np.where(moved, move_date, np.datetime64("NaT")))
    look = params.get("lookalikes") or {}
    if float(look.get("twins", 0.0)) > 0 or float(look.get("same_name_birthday", 0.0)) > 0:
        out = make_lookalikes(out, float(look.get("twins", 0.0)), float(look.get("same_name_birthday", 0.0)), rng)
    return out


_TWIN_COLUMNS = ("family_name", "family_name_later", "name_change_date", "postcode", "postcode_later", "move_date")


def make_lookalikes(people: pd.DataFrame, twins: float, same_name: float, rng: np.random.Generator) -> pd.DataFrame:
    """Make pairs of patients who share a birth date look alike (vectorised; rows unchanged).

    ``twins``: share of patients made one of a twin pair: the second takes the first's family
    name (and later surname) and home postcode (and later move). ``same_name``: share made one of
    a same-name-same-birthday pair (same sex): the second takes the first's given and family
    name. NHS numbers, sex (twins) and everything else stay their own. Pairs come only from
    patients already sharing a birth date, so no date or age changes; where there are too few,
    fewer pairs are made.

    Example:
        >>> df = pd.DataFrame({"patient_id": [1, 2, 3], "sex": [1, 1, 2],
        ...     "birth_date": pd.to_datetime(["1950-01-02"] * 2 + ["1960-01-01"]),
        ...     "given_name": ["Ann", "Bob", "Cy"], "family_name": ["Lee", "Kay", "Day"],
        ...     "family_name_later": [None] * 3, "name_change_date": pd.to_datetime([None] * 3),
        ...     "postcode": ["A1 1AA", "B1 1BB", "C1 1CC"], "postcode_later": [None] * 3,
        ...     "move_date": pd.to_datetime([None] * 3)})
        >>> out = make_lookalikes(df, 1.0, 0.0, np.random.default_rng(0))
        >>> out["family_name"].nunique(), out["postcode"].nunique(), out["given_name"].tolist()
        (2, 2, ['Ann', 'Bob', 'Cy'])
    """
    out = people.copy()
    n = len(out)
    used = np.zeros(n, dtype=bool)
    for share, by_sex, cols in ((twins, False, _TWIN_COLUMNS), (same_name, True, ("given_name", "family_name"))):
        if share <= 0:
            continue
        keys = ["birth_date", "sex"] if by_sex else ["birth_date"]
        free = np.flatnonzero(~used)
        sub = out.iloc[free][keys].reset_index(drop=True)
        order = np.lexsort([rng.random(len(free))] + [sub[k].to_numpy() for k in reversed(keys)])
        grp = sub.iloc[order].groupby(keys, sort=False).ngroup().to_numpy() if len(order) else np.array([], int)
        rank = pd.Series(grp).groupby(grp).cumcount().to_numpy()
        first = np.flatnonzero((rank % 2 == 0)[:-1] & (grp[1:] == grp[:-1]))  # pair (k, k+1) within a group
        a, b = free[order[first]], free[order[first + 1]]
        want = min(len(a), int(round(share * n / 2)))
        pick = rng.permutation(len(a))[:want]
        sel = pick[np.argsort(a[pick], kind="stable")]
        a, b = a[sel], b[sel]
        for c in cols:
            vals = out[c].to_numpy(copy=True)
            vals[b] = vals[a]
            out[c] = vals if not pd.api.types.is_datetime64_any_dtype(out[c]) else pd.to_datetime(vals)
        used[a] = used[b] = True
    return out
