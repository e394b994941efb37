import pytest

from conva_nb import values as V


def test_ten_values_in_circle_order():
    assert V.VALUE_NAMES == ("self-direction", "stimulation", "hedonism", "achievement", "power",
                             "security", "conformity", "tradition", "benevolence", "universalism")
    assert [v.angle_deg for v in V.VALUES] == [36.0 * i for i in range(10)]
    assert set(V.GROUPS) == {"openness to change", "self-enhancement", "conservation",
                             "self-transcendence"}
    assert sum(len(g) for g in V.GROUPS.values()) == 10


@pytest.mark.parametrize("text", ["self-direction", "Self_Direction", "SELF DIRECTION",
                                  "selfdirection", " self - direction "])
def test_lookup_is_tolerant(text):
    assert V.canonical(text) == "self-direction"
    assert V.get_value(text).group == "openness to change"


def test_unknown_value_lists_valid_names():
    with pytest.raises(ValueError) as err:
        V.canonical("kindness")
    msg = str(err.value)
    assert "kindness" in msg
    assert all(name in msg for name in V.VALUE_NAMES)


def test_opposites_and_distance():
    assert V.opposite("power") == "universalism"
    assert V.opposite("universalism") == "power"
    assert V.opposite("hedonism") == "tradition"
    assert V.circle_distance("self-direction", "universalism") == 1
    assert V.circle_distance("achievement", "benevolence") == 5
    assert all(V.circle_distance(a, V.opposite(a)) == 5 for a in V.VALUE_NAMES)
