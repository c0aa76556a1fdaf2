"""NHS numbers: modulus-11 check digits worked by hand, validation edge cases, generation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_lib.nhs_number import check_digit, generate_nhs_numbers, is_valid_nhs_number


# Hand computations (weights 10, 9, …, 2 on the first nine digits; check = 11 - sum mod 11):
#   943476591: 90+36+24+28+42+30+20+27+2 = 299; 299 mod 11 = 2; 11-2 = 9   -> 9434765919
#   401023213: 40+0+8+0+12+15+8+3+6     =  92;  92 mod 11 = 4; 11-4 = 7   -> 4010232137
#   200000001: 20+2                     =  22;  22 mod 11 = 0; 11-0 = 11 -> 0
#   100000001: 10+2                     =  12;  12 mod 11 = 1; 11-1 = 10 -> no valid number
#   999999999: 9*(10+…+2)=9*54          = 486; 486 mod 11 = 2; 11-2 = 9   -> 9999999999
def test_check_digit_by_hand():
    assert check_digit("943476591") == 9
    assert check_digit("401023213") == 7
    assert check_digit("200000001") == 0
    assert check_digit("100000001") == 10
    assert check_digit("999999999") == 9


def test_is_valid_known_numbers_and_edge_cases():
    values = pd.Series([
        "9434765919",    # valid
        "4010232137",    # valid
        "2000000010",    # valid, check digit 0 from 11
        "9434765911",    # wrong check digit
        "1000000010",    # stem with check value 10: never valid
        "9434765199",    # 19 -> 91 transposed in the body
        None, "", "943476591", "94347659190", "943 476 5919", "943476591X",
        "９４３４７６５９１９",  # full-width digits are not ASCII digits
    ], dtype=object)
    expected = [True, True, True, False, False, False, False, False, False, False, False, False, False]
    assert is_valid_nhs_number(values).tolist() == expected
    assert is_valid_nhs_number(pd.Series([], dtype=object)).tolist() == []


def test_generate_edge_sizes_and_determinism():
    assert len(generate_nhs_numbers(0, np.random.default_rng(1))) == 0
    a = generate_nhs_numbers(1000, np.random.default_rng(7))
    b = generate_nhs_numbers(1000, np.random.default_rng(7))
    c = generate_nhs_numbers(1000, np.random.default_rng(8))
    assert (a == b).all() and not (a == c).all()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=1, max_value=3000), seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_generated_numbers_are_valid_distinct_and_9xx(n, seed):
    nums = generate_nhs_numbers(n, np.random.default_rng(seed))
    assert len(nums) == n
    assert len(set(nums.tolist())) == n
    assert all(len(s) == 10 and s.isdigit() and s.startswith("9") for s in nums)
    assert is_valid_nhs_number(pd.Series(nums)).all()
    # The scalar and vectorised check digits agree.
    assert all(check_digit(s[:9]) == int(s[9]) for s in nums[:50])


@settings(max_examples=60, deadline=None)
@given(stem=st.text(alphabet="0123456789", min_size=9, max_size=9),
       pos=st.integers(min_value=0, max_value=7))
def test_adjacent_transposition_in_the_body_always_fails(stem, pos):
    cd = check_digit(stem)
    if cd == 10 or stem[pos] == stem[pos + 1]:
        return
    number = stem + str(cd)
    swapped = number[:pos] + number[pos + 1] + number[pos] + number[pos + 2:]
    assert is_valid_nhs_number(pd.Series([number, swapped])).tolist() == [True, False]
