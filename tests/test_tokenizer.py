import subprocess
import sys

import pytest

from lengen.tasks import markers
from lengen.tokenizer import CHARS, NODES, SPECIALS, default_tokenizer, split


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


def test_tasks_do_not_import_the_tokenizer():
    """The dependency is one-way: the tokenizer reads the registry's markers, no task reads the tokenizer."""
    code = "import sys, lengen.tasks; assert 'lengen.tokenizer' not in sys.modules, 'lengen.tasks imported it'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_vocabulary_order_specials_chars_nodes_markers():
    tok = default_tokenizer()
    assert tok.itos == list(SPECIALS) + list(CHARS) + list(NODES) + markers()
    assert markers() == sorted(markers()) and "<shortest_path_far>" not in markers()  # a variant: no marker
