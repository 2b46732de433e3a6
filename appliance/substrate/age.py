"""A person's age on a day, as every room counts it: whole years (or months) completed, a birthday
counting from the day itself. One rule, because the rooms act on it: NEWS2 is not scored under 16, a
child is placed in the children's ward, a clinic books women of 15–49, a page shows "7 y" or "5 mo"."""

from __future__ import annotations

import datetime as dt


def years_on(born: dt.date, day: dt.date) -> int:
    """Age in whole years on `day`."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def months_on(born: dt.date, day: dt.date) -> int:
    """Age in whole months on `day`."""
    return (day.year - born.year) * 12 + day.month - born.month - (day.day < born.day)


def age_label(born: dt.date, day: dt.date) -> str:
    """The age a list shows: "7 y" from two years, "5 mo" under two, "12 d" in the first month."""
    years = years_on(born, day)
    if years >= 2:
        return f"{years} y"
    months = months_on(born, day)
    if months >= 1:
        return f"{months} mo"
    return f"{(day - born).days} d"
