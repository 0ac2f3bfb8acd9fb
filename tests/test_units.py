import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolkit.errors import BadInput
from toolkit.units import human_bytes, parse_size


@pytest.mark.parametrize("text,value", [
    ("4096", 4096), ("4K", 4096), ("4k", 4096), ("64M", 64 << 20), ("1G", 1 << 30),
    ("16MiB", 16 << 20), ("1.5M", 3 << 19), ("0", 0), (" 2M ", 2 << 20), ("8KB", 8192),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "M", "-1", "12Q", "1.3K", "abc", "1e6"])
def test_parse_size_refuses(text):
    with pytest.raises(BadInput):
        parse_size(text)


@given(st.integers(min_value=0, max_value=1 << 40), st.sampled_from(["", "K", "M", "G"]))
def test_parse_size_roundtrip(n, suffix):
    factor = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[suffix]
    assert parse_size(f"{n}{suffix}") == n * factor


def test_human_bytes():
    assert human_bytes(64 << 20) == "64.0 MiB"
    assert human_bytes(512) == "512 B"
    assert human_bytes(None) == "-"


def test_sizes_are_exact_however_large():
    assert parse_size("99999999999999999999999G") == 99999999999999999999999 << 30  # a float would drift
    assert parse_size("1.25K") == 1280 and parse_size("2.5T") == 5 << 39
    with pytest.raises(BadInput, match="not a whole number of bytes"):
        parse_size("0.3")


def test_sizes_past_size_t_are_refused_with_their_reason_and_large_ones_read_well():
    from toolkit.units import parse_region_size

    assert parse_region_size("16383P") == 16383 << 50 and parse_size("2E") == 2 << 60
    for text in ("16E", "99999999999999999999T"):
        with pytest.raises(BadInput, match="past 16 EiB"):
            parse_region_size(text)
    assert human_bytes(2 << 40) == "2.0 TiB" and human_bytes((1 << 64) - 1) == "16.0 EiB"
    assert human_bytes(3 << 50) == "3.0 PiB"
