"""Sampling validation, stop-string scanning and the Stream object (no model)."""
import pytest

from kit.engines.base import Sampling, StopScanner, Stream
from kit.errors import BadParameter


@pytest.mark.parametrize("name,value", [
    ("temperature", -0.1), ("temperature", float("nan")), ("top_p", 2), ("top_p", 0),
    ("top_k", -1), ("min_p", 1.5), ("repeat_penalty", 0), ("seed", -3),
    ("max_tokens", 0), ("max_tokens", 2.5),
])
def test_impossible_parameters_name_the_parameter(name, value):
    with pytest.raises(BadParameter) as err:
        Sampling(**{name: value})
    assert err.value.name == name
    assert name in str(err.value) and "must be" in str(err.value)


def test_make_overrides_and_rejects_unknown_options():
    s = Sampling.make(Sampling(temperature=0.1), seed=3, top_k=None)
    assert (s.temperature, s.seed, s.top_k) == (0.1, 3, 40)
    with pytest.raises(TypeError, match="temprature"):
        Sampling.make(temprature=1)


def test_a_single_stop_string_becomes_a_tuple():
    assert Sampling(stop="###").stop == ("###",)


def _scan(stops, pieces):
    sc = StopScanner(stops)
    out = [sc.feed(p) for p in pieces]
    return "".join(out) + ("" if sc.hit else sc.flush()), sc.hit


@pytest.mark.parametrize("pieces", [
    ["Hello ##", "# rest"], ["Hello ###", " rest"], ["Hel", "lo #", "#", "#x"],
])
def test_stop_string_split_across_pieces_is_cut(pieces):
    assert _scan(["###"], pieces) == ("Hello ", True)


def test_partial_stop_prefix_is_released_when_it_does_not_complete():
    assert _scan(["###"], ["a #", "# b"]) == ("a ## b", False)


def test_no_stops_passes_everything_through():
    assert _scan([], ["a", "b"]) == ("ab", False)


def test_stream_collects_text_and_can_be_iterated_again():
    def pieces(stream):
        for p in ["a", "b", "c"]:
            if stream.cancelled:
                return
            yield p
        stream.stats.stop_reason = "eos"

    s = Stream(pieces)
    assert list(s) == ["a", "b", "c"]
    assert s.text == "abc" and list(s) == ["a", "b", "c"]
    assert s.stats.stop_reason == "eos"


def test_stream_cancel_stops_the_producer():
    s = Stream(lambda st: iter(lambda: "x", None))  # endless
    got = []
    for piece in s:
        got.append(piece)
        if len(got) == 3:
            s.cancel()
            break
    assert s.cancelled and len(got) == 3
