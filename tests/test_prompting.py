import pytest
import torch

from conva_nb import prompting as P
from conva_nb.datasets import load_prompts


def test_stop_criterion_reads_only_new_text(embedded):
    _, tok = embedded
    prompt = tok(P.frame(tok, "What is tea?")).input_ids
    rows = [prompt + tok(s, add_special_tokens=False).input_ids
            for s in (" Hot water on leaves.\n\nQuestion: Why", " Hot water on leaves and")]
    n = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (n - len(r)) for r in rows])
    # the prompt itself holds blank lines and "Question:"; only the answer may stop a row
    assert P._StopAtFrameEnd(tok, len(prompt))(ids, None).tolist() == [True, False]


def test_stopping_early_leaves_answers_unchanged(embedded, monkeypatch):
    model, tok = embedded
    qs = [r["prompt"] for r in load_prompts("value", "hedonism", split="dev")][:6]
    early = P.generate(model, tok, qs, batch_size=3)
    monkeypatch.setattr(P._StopAtFrameEnd, "__call__",
                        lambda self, ids, scores, **kw: torch.zeros(ids.shape[0], dtype=torch.bool))
    full = P.generate(model, tok, qs, batch_size=3)
    assert early == full and all(early)


def test_frame_rejects_bad_input(embedded):
    _, tok = embedded
    with pytest.raises(ValueError, match="non-empty"):
        P.frame(tok, "  ")
    with pytest.raises(ValueError, match="valid: auto, chat, qa"):
        P.frame(tok, "hi", style="poem")
