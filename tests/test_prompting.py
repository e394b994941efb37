import pytest

from conva_nb import prompting as P


def test_frame_rejects_bad_input(embedded):
    _, tok = embedded
    with pytest.raises(ValueError, match="non-empty"):
        P.frame(tok, "  ")
    with pytest.raises(ValueError, match="valid: auto, chat, qa"):
        P.frame(tok, "hi", style="poem")


def test_shared_preamble_gives_the_same_answers_and_scores_on_the_embedded_model(embedded):
    """The few-shot preamble computed once per batch (the runner's path) changes nothing:
    the same greedy answers, and the same multiple-choice log-likelihoods."""
    import numpy as np

    from conva_nb.datasets import load_prompts
    from conva_nb.prefix import sliding_window
    from conva_nb.scoring import continuation_logprobs
    model, tok = embedded
    assert sliding_window(model) >= 512      # long enough for prefix + question + answer
    qs = [r["prompt"] for r in load_prompts("value", "hedonism", "test")][:6]
    plain = P.generate(model, tok, qs, batch_size=6, max_new_tokens=16)
    assert P.generate(model, tok, qs, batch_size=6, max_new_tokens=16,
                      share_prefix=True) == plain
    rows = load_prompts("irrelevant", split="test")[:4]
    texts = [P.frame(tok, r["prompt"]) for r in rows for _ in r["choices"]]
    conts = [c for r in rows for c in r["choices"]]
    full, _ = continuation_logprobs(model, tok, texts, conts, 16)
    shared, _ = continuation_logprobs(model, tok, texts, conts, 16, share_prefix=True)
    np.testing.assert_allclose(shared, full, rtol=1e-4, atol=1e-3)
