import math

import pytest
import torch

from modalzoo.evaluation import CodebookUsage


def test_uniform_codes_use_the_whole_codebook():
    usage = CodebookUsage([16])
    usage.update(torch.arange(16).repeat(3).view(3, 1, 16))
    assert usage.compute() == pytest.approx({"codebook_usage": 1.0, "codebook_perplexity": 16.0, "codebook_entropy_bits": 4.0})


def test_one_code_has_perplexity_one_and_padding_is_not_counted():
    usage = CodebookUsage([8, 4])
    codes = torch.zeros(2, 2, 5, dtype=torch.long)
    codes[1, :, 3:] = 3  # padding positions hold another code
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    usage.update(codes, mask)
    assert usage.compute() == pytest.approx(
        {"codebook_usage": (1 / 8 + 1 / 4) / 2, "codebook_perplexity": 1.0, "codebook_entropy_bits": 0.0}
    )


def test_perplexity_of_a_skewed_histogram():
    usage = CodebookUsage([4])
    usage.update(torch.tensor([[[0, 0, 0, 1]]]))  # p = (3/4, 1/4)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    result = usage.compute()
    assert result["codebook_perplexity"] == pytest.approx(math.exp(entropy))
    assert result["codebook_entropy_bits"] == pytest.approx(entropy / math.log(2))
    assert result["codebook_usage"] == 0.5


def test_codes_beyond_the_codebooks_are_refused():
    with pytest.raises(ValueError, match="at most 1"):
        CodebookUsage([4]).update(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="no codes"):
        CodebookUsage([4]).compute()
