"""Integration: the shipped data on the embedded model (Issue: no negation or topic shortcut)."""
import pytest

from conva_nb.probes import get_bank, middle_layers, negation_control_accuracy, transfer_accuracy

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def _best_middle(bank):
    return max(middle_layers(bank), key=lambda l: bank.test_acc[bank.layers.index(l)])


@pytest.mark.parametrize("value", ["security"])
def test_controlled_probe_is_no_negation_detector(embedded, value):
    model, tok = embedded
    bank = get_bank(model, tok, value, progress=False)
    layer = _best_middle(bank)
    assert bank.test_acc[bank.layers.index(layer)] > 0.7
    neg = negation_control_accuracy(model, tok, bank, layer)
    print(value, "best middle layer", layer, "negation control", neg)
    assert neg["acc"] <= 0.65


@pytest.mark.parametrize("value", ["security"])
def test_naive_probe_learns_topic_not_value(embedded, value):
    model, tok = embedded
    bank = get_bank(model, tok, value, data="naive", progress=False)
    layer = _best_middle(bank)
    assert bank.test_acc[bank.layers.index(layer)] >= 0.9   # looks perfect on its own data ...
    transfer = transfer_accuracy(model, tok, bank)[str(layer)]
    print(value, "naive probe layer", layer, "transfer to controlled", transfer)
    assert transfer <= 0.70                                  # ... but does not find the value


def test_shipped_banks_match_the_shipped_data():
    """Every controlled bank the package ships was trained on the data it ships now."""
    from conva_nb.probes import SHIPPED_BANKS, data_fingerprint
    from conva_nb.values import VALUE_NAMES
    names = {p.name for p in (SHIPPED_BANKS / "embedded").iterdir()}
    for v in VALUE_NAMES:
        assert f"{v}-controlled-last-{data_fingerprint(v)}" in names, \
            f"{v}: shipped bank is stale or missing; run tools/ship_banks.py"
