from engine.runtime.text_stream import TextStream


def feed(stream: TextStream, pieces: list[bytes]) -> list[str]:
    return [stream.push(p) for p in pieces]


def test_multibyte_character_split_across_tokens_is_held_back():
    snowman = "☃".encode()  # 3 bytes
    stream = TextStream()
    out = feed(stream, [b"a", snowman[:1], snowman[1:2], snowman[2:], b"b"])
    assert out == ["a", "", "", "☃", "b"]
    assert stream.flush() == ""
    assert stream.text == "a☃b"


def test_stop_string_across_token_boundaries_is_not_emitted():
    stream = TextStream(stop=["</end>"])
    out = feed(stream, [b"hello </", b"en", b"d> tail"])
    assert "".join(out) == "hello "
    assert stream.stopped
    assert stream.text == "hello "


def test_partial_stop_prefix_is_released_when_it_does_not_complete():
    stream = TextStream(stop=["STOP"])
    out = feed(stream, [b"ST", b"OX", b"!"])
    assert out[0] == ""
    assert "".join(out) == "STOX!"
    assert not stream.stopped


def test_earliest_of_several_stop_strings_wins():
    stream = TextStream(stop=["xyz", "b"])
    assert stream.push(b"aabxyz") == "aa"


def test_flush_releases_held_prefix_and_incomplete_bytes():
    stream = TextStream(stop=["###"])
    stream.push(b"done #")
    assert stream.flush() == "#"
    assert stream.text == "done #"


def test_pending_buffer_stays_bounded_on_long_streams():
    stream = TextStream(stop=["<|never|>"])
    for _ in range(5000):
        stream.push(b"word ")
    assert len(stream._pending) < len("<|never|>")
    assert stream.emitted_chars == 5000 * 5 - len(stream._pending)
