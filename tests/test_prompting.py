import pytest

from conva_nb import prompting as P


def test_frame_rejects_bad_input(embedded):
    _, tok = embedded
    with pytest.raises(ValueError, match="non-empty"):
        P.frame(tok, "  ")
    with pytest.raises(ValueError, match="valid: auto, chat, qa"):
        P.frame(tok, "hi", style="poem")
