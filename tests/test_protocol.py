"""contract/protocol.py: the frame format and the host's decoder."""

import random
import zlib

import pytest
from neofpga.contract.protocol import CRC_BYTES, HEADER_BYTES, SYNC, Frame, FrameDecoder, encode_frame


def test_frame_layout_is_sync_header_payload_crc():
    data = encode_frame(0x12, 0x34, b"abc")
    assert data[:2] == SYNC == b"\xa5\x5a"
    assert data[2:6] == bytes([0x12, 0x34, 3, 0])
    assert data[6:9] == b"abc"
    assert data[9:] == zlib.crc32(bytes([0x12, 0x34, 3, 0]) + b"abc").to_bytes(4, "little")
    assert len(encode_frame(1, 2)) == HEADER_BYTES + CRC_BYTES


def test_encode_refuses_what_does_not_fit():
    with pytest.raises(ValueError):
        encode_frame(256, 0)
    with pytest.raises(ValueError):
        encode_frame(1, 0, bytes(65536))


def test_decoder_finds_frames_split_anywhere_and_skips_garbage():
    frames = [Frame(i, 255 - i, bytes(range(i))) for i in range(20)]
    stream = b"".join(b"\xa5\x00\xa5" + encode_frame(f.opcode, f.sequence, f.payload) for f in frames)
    rng = random.Random(1)
    decoder, found, at = FrameDecoder(), [], 0
    while at < len(stream):
        step = rng.randint(1, 9)
        found += decoder.feed(stream[at:at + step])
        at += step
    assert found == frames
    assert decoder.skipped == 3 * len(frames) and decoder.bad_frames == 0


def test_a_bad_frame_is_dropped_and_the_next_one_found():
    good = encode_frame(5, 6, b"payload")
    for position in range(len(SYNC), len(good)):
        for bit in (0, 3, 7):
            bad = bytearray(good)
            bad[position] ^= 1 << bit
            decoder = FrameDecoder(max_payload=64)
            # a corrupted length may make the bad frame swallow what follows: idle SYNC-free
            # filler after it lets the decoder finish with it, as the device's timeout does
            found = decoder.feed(bytes(bad) + bytes(200) + good)
            assert found == [Frame(5, 6, b"payload")], (position, bit)
            assert decoder.bad_frames >= 1


def test_too_long_frames_are_refused():
    decoder = FrameDecoder(max_payload=4)
    assert decoder.feed(encode_frame(1, 1, b"12345") + encode_frame(2, 2, b"1234")) == [Frame(2, 2, b"1234")]
    assert decoder.bad_frames == 1


def test_frames_hidden_in_noise_are_found():
    rng = random.Random(2)
    frames = [Frame(rng.randrange(256), rng.randrange(256), rng.randbytes(rng.randrange(40))) for _ in range(50)]
    stream = b"".join(rng.randbytes(rng.randrange(30)).replace(b"\xa5", b"\x00")
                      + encode_frame(f.opcode, f.sequence, f.payload) for f in frames)
    assert FrameDecoder(max_payload=64).feed(stream) == frames
