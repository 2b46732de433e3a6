"""The sentence of a refused request, as every room says it (appliance/substrate/problems.py)."""

from appliance.substrate.problems import invalid_request_detail, validator_message


def test_a_validators_words_come_without_pydantics_prefix():
    assert validator_message("Value error, a grade needs oedema present") == "a grade needs oedema present"
    assert validator_message("Assertion failed, the dose needs its unit") == "the dose needs its unit"
    assert validator_message("Input should be 1, 2 or 3") == "Input should be 1, 2 or 3"


def test_a_refused_request_names_its_fields_else_says_the_rule_else_the_frameworks_words():
    named = [{"key": "dose", "message": "Value error, the dose is above zero"}, {"key": "route", "message": "x"}]
    assert invalid_request_detail(named, "Validation failed") == "invalid dose, route: the dose is above zero"
    across = [{"message": "Value error, a refusal needs its reason"}]
    assert invalid_request_detail(across, "Validation failed") == "a refusal needs its reason"
    assert invalid_request_detail([], "Validation failed for POST /x") == "Validation failed for POST /x"
    assert invalid_request_detail(None, "Validation failed for POST /x") == "Validation failed for POST /x"
