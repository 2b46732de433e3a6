"""A body weight, as every room keeps and shows it: the record keeps kilograms to the gram (three decimals,
tenant revision t0051), because a newborn's 30 g a day, a 1450 g preterm baby, a neonate's fluids and a
dose by weight are all lost at 100 g. A weight under 10 kg (a baby or a small child, weighed on scales that
read grams) is shown to the gram, "1.450 kg"; an older child's or an adult's to 0.1 kg, as it always was
and as their scales read. In kilograms everywhere, so one chart and one column never mix units."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

GRAMS_SHOWN_BELOW_KG = Decimal(10)
KEPT_PLACES = 3  # kilograms to the gram


def kept_to_the_gram(value: Decimal | None) -> Decimal | None:
    """A weight given in kilograms, refused (ValueError, a sentence) when it is finer than a gram."""
    if value is not None and -value.normalize().as_tuple().exponent > KEPT_PLACES:
        raise ValueError(f"a weight is kept to the gram: give at most {KEPT_PLACES} decimals in kilograms "
                         f"(1.450 for 1450 g), not {value}")
    return value


def weight_text(value: Decimal | float | int | None) -> str:
    """A weight in kilograms as pages and sentences show it, without its unit: "1.450" under 10 kg, "72.5"
    from 10 kg on; "" for none."""
    if value is None:
        return ""
    kilograms = Decimal(str(value))
    places = Decimal(1).scaleb(-KEPT_PLACES) if kilograms < GRAMS_SHOWN_BELOW_KG else Decimal("0.1")
    return format(kilograms.quantize(places, ROUND_HALF_UP), "f")
