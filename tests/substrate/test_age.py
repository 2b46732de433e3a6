"""Age on a day, the one rule every room counts by: a birthday counts from the day itself, and one on
29 February is reached on 1 March in a common year."""

import datetime as dt

import pytest

from appliance.substrate.age import months_on, years_on


@pytest.mark.parametrize(("born", "day", "years", "months"), [
    (dt.date(2010, 6, 15), dt.date(2026, 6, 14), 15, 191),
    (dt.date(2010, 6, 15), dt.date(2026, 6, 15), 16, 192),
    (dt.date(2000, 2, 29), dt.date(2026, 2, 28), 25, 311),
    (dt.date(2000, 2, 29), dt.date(2026, 3, 1), 26, 312),
    (dt.date(2026, 1, 31), dt.date(2026, 2, 28), 0, 0),
    (dt.date(2026, 1, 31), dt.date(2026, 3, 1), 0, 1),
])
def test_years_and_months_completed(born, day, years, months):
    assert (years_on(born, day), months_on(born, day)) == (years, months)
