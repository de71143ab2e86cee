"""Any value the validators accept survives our UCI quoting and parses back unchanged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshd import validate as v
from provisioning import uci

# What meshd.validate.string accepts: no control characters.
accepted = st.text(
    alphabet=st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)), max_size=80
).filter(lambda s: "\x7f" not in s)
tricky = st.text(alphabet=" '\"\\#\t$`;x", max_size=20).map(lambda s: s.replace("\t", " "))


@given(st.one_of(accepted, tricky), st.lists(st.one_of(accepted, tricky), max_size=4))
def test_values_survive_a_round_trip(value, items):
    v.string(value, "value", max_len=1000)  # the validator accepts it
    package = uci.Package(
        "meshd",
        (uci.Section("meshd", "main", (("text", value), ("items", tuple(items)))),),
    )
    text = uci.dumps(package)
    parsed = uci.loads(text)
    section = parsed.section("main")
    assert section.get("text") == value
    if items:
        assert section.get("items") == tuple(items)


@given(accepted)
def test_quoted_value_is_one_token(value):
    assert uci._tokens(f"option key {uci.quote(value)}", 1) == ["option", "key", value]
