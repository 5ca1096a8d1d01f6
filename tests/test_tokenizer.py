import pytest

from lengen.tokenizer import default_tokenizer, split


def test_split_multi_char_tokens():
    assert split("[3]:[14];?<bos>a=") == ["[3]", ":", "[14]", ";", "?", "<bos>", "a", "="]


def test_roundtrip_and_fixed_prefix():
    tok = default_tokenizer()
    s = "<bos><reverse_add>4321+789=12220<eos>"
    assert tok.decode(tok.encode(s)) == s
    assert tok.itos[:4] == ["<pad>", "<bos>", "<eos>", "<sep>"]
    assert tok.stoi["0"] == 4  # characters come right after the specials, independent of the task list


def test_unknown_token_is_an_error():
    with pytest.raises(ValueError, match="not in the vocabulary"):
        default_tokenizer().encode("é")
