#!/usr/bin/env python3
"""make_safetensors_corpus.py OUTDIR — write the malformed-safetensors corpus.

Every file bad_*.safetensors must be rejected by the reader with a one-line
error containing the expected text listed in OUTDIR/expect.tsv
("file<TAB>substring"); good_*.safetensors must be accepted. The corpus also
seeds the fuzzer (make fuzz). Standard library only, deterministic.
"""
import json
import os
import struct
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
expect = []


def raw(name, data, substr):
    with open(os.path.join(out, name + ".safetensors"), "wb") as f:
        f.write(data)
    expect.append((name + ".safetensors", substr))


def st(name, header, data=b"", substr="", pad=True, header_text=None):
    """A file from a header (dict or exact text) and a data buffer."""
    h = header_text if header_text is not None else json.dumps(header, separators=(",", ":"))
    hb = h.encode("utf-8") if isinstance(h, str) else h
    if pad:
        hb += b" " * ((8 - len(hb) % 8) % 8)
    raw(name, struct.pack("<Q", len(hb)) + hb + data, substr)


f32x4 = struct.pack("<4f", 1, 2, 3, 4)
T = lambda dt, shape, a, b: {"dtype": dt, "shape": shape, "data_offsets": [a, b]}

# ---- good files (must load)
st("good_basic", {"a": T("F32", [2, 2], 0, 16)}, f32x4)
st("good_metadata", {"__metadata__": {"format": "pt", "k": "v"}, "a": T("F32", [4], 0, 16)}, f32x4)
st("good_empty", {}, b"")
st("good_zero_size", {"z": T("F32", [0, 3], 0, 0), "a": T("F32", [4], 0, 16)}, f32x4)
st("good_scalar", {"s": T("F64", [], 0, 8)}, struct.pack("<d", 2.5))
st("good_unpadded", {"a": T("F32", [4], 0, 16)}, f32x4, pad=False)
st("good_unknown_field", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "extra": [1, {"x": None}]}}, f32x4)
st("good_unicode_name", {"héllo \u4e16\u754c": T("F32", [4], 0, 16)}, f32x4)
st("good_escaped_name", None, f32x4, header_text='{"a\\u0041\\n\\ud83d\\ude00":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}')
st("good_f4", {"q": T("F4", [4], 0, 2)}, b"\x21\x43")
st("good_whitespace", None, f32x4, header_text='{ "a" : { "dtype" : "F32" , "shape" : [ 4 ] , "data_offsets" : [ 0 , 16 ] } }\n')
st("good_out_of_order", {"b": T("F32", [2], 8, 16), "a": T("F32", [2], 0, 8)}, f32x4)

# ---- bad files (must be rejected; expected message text)
raw("bad_empty_file", b"", "shorter than the 8-byte header size")
raw("bad_short", b"\x01\x00\x00", "shorter than the 8-byte header size")
raw("bad_header_too_large", struct.pack("<Q", 100_000_001) + b"{}", "exceeds the limit")
raw("bad_header_past_eof", struct.pack("<Q", 1000) + b"{}", "larger than the file")
raw("bad_header_huge_u64", struct.pack("<Q", 2**64 - 1) + b"{}", "exceeds the limit")
st("bad_not_object", None, header_text="[1,2]", substr="does not start with '{'")
st("bad_leading_space", None, header_text=' {"a":1}', substr="does not start with '{'")
st("bad_truncated_json", None, header_text='{"a":{"dtype":"F32","shape":[4],"data_', substr="invalid safetensors header")
st("bad_trailing_garbage", None, f32x4, header_text='{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}x', substr="trailing bytes")
st("bad_not_utf8", None, header_text=b'{"\xff\xfe":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}', substr="not UTF-8")
st("bad_overlong_utf8", None, header_text=b'{"\xc0\xaf":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}', substr="not UTF-8")
st("bad_surrogate_utf8", None, header_text=b'{"\xed\xa0\x80":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}', substr="not UTF-8")
st("bad_lone_surrogate_escape", None, header_text='{"\\ud800":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}', substr="lone surrogate")
st("bad_nul_escape", None, header_text='{"a\\u0000":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}', substr="NUL")
st("bad_control_char", None, header_text='{"a\x01":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}', substr="control character")
st("bad_dtype", {"a": T("F33", [4], 0, 16)}, f32x4, "unknown dtype \"F33\"")
st("bad_dtype_lowercase", {"a": T("f32", [4], 0, 16)}, f32x4, "unknown dtype")
st("bad_dtype_not_string", None, f32x4, header_text='{"a":{"dtype":7,"shape":[4],"data_offsets":[0,16]}}', substr="expected a string")
st("bad_missing_dtype", {"a": {"shape": [4], "data_offsets": [0, 16]}}, f32x4, "missing \"dtype\"")
st("bad_missing_shape", {"a": {"dtype": "F32", "data_offsets": [0, 16]}}, f32x4, "missing \"shape\"")
st("bad_missing_offsets", {"a": {"dtype": "F32", "shape": [4]}}, f32x4, "missing \"data_offsets\"")
st("bad_shape_negative", {"a": T("F32", [-4], 0, 16)}, f32x4, "negative number")
st("bad_shape_float", None, f32x4, header_text='{"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}', substr="fraction or exponent")
st("bad_shape_exponent", None, f32x4, header_text='{"a":{"dtype":"F32","shape":[4e0],"data_offsets":[0,16]}}', substr="fraction or exponent")
st("bad_shape_string", None, f32x4, header_text='{"a":{"dtype":"F32","shape":["4"],"data_offsets":[0,16]}}', substr="non-negative integer")
st("bad_shape_leading_zero", None, f32x4, header_text='{"a":{"dtype":"F32","shape":[04],"data_offsets":[0,16]}}', substr="leading zero")
st("bad_shape_overflow_u64", None, f32x4, header_text='{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,16]}}', substr="integer overflow")
st("bad_shape_product_overflow", {"a": T("F32", [2**40, 2**40], 0, 16)}, f32x4, "overflows")
st("bad_shape_bytes_overflow", {"a": T("F64", [2**61], 0, 16)}, f32x4, "overflows")
st("bad_too_many_dims", {"a": T("F32", [1] * 9 + [4], 0, 16)}, f32x4, "more than 8 dimensions")
st("bad_size_mismatch", {"a": T("F32", [3], 0, 16)}, f32x4, "needs 12 bytes")
st("bad_f4_half_byte", {"a": T("F4", [3], 0, 2)}, b"\0\0", "does not fill whole bytes")
st("bad_end_before_begin", {"a": T("F32", [0], 16, 0)}, f32x4, "end before begin")
st("bad_offsets_past_eof", {"a": T("F32", [8], 0, 32)}, f32x4, "past the end")
st("bad_gap", {"a": T("F32", [2], 0, 8), "b": T("F32", [1], 12, 16)}, f32x4, "gap between tensors")
st("bad_overlap", {"a": T("F32", [3], 0, 12), "b": T("F32", [2], 8, 16)}, f32x4, "overlaps")
st("bad_not_starting_at_zero", {"a": T("F32", [3], 4, 16)}, f32x4, "gap between tensors")
st("bad_trailing_data", {"a": T("F32", [3], 0, 12)}, f32x4, "cover 12 bytes")
st("bad_duplicate_name", None, f32x4, header_text='{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', substr="duplicate tensor name")
st("bad_duplicate_field", None, f32x4, header_text='{"a":{"dtype":"F32","dtype":"F32","shape":[4],"data_offsets":[0,16]}}', substr="duplicate key")
st("bad_duplicate_metadata", None, f32x4, header_text='{"__metadata__":{},"__metadata__":{},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', substr="duplicate \"__metadata__\"")
st("bad_duplicate_metadata_key", None, f32x4, header_text='{"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', substr="duplicate __metadata__ key")
st("bad_metadata_not_string", {"__metadata__": {"k": 1}, "a": T("F32", [4], 0, 16)}, f32x4, "is not a string")
st("bad_offsets_three", None, f32x4, header_text='{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16,16]}}', substr="expected ']'")
st("bad_offsets_negative", None, f32x4, header_text='{"a":{"dtype":"F32","shape":[4],"data_offsets":[-1,16]}}', substr="negative number")
st("bad_tensor_not_object", None, f32x4, header_text='{"a":[1,2]}', substr="expected '{'")
st("bad_deep_nesting", None, f32x4, header_text='{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"x":' + "[" * 100 + "]" * 100 + "}}", substr="nesting too deep")
st("bad_unterminated_string", None, header_text='{"abc', substr="unterminated string")
st("bad_bad_escape", None, header_text='{"a\\q":{}}', substr="bad escape")
st("bad_missing_colon", None, header_text='{"a" {}}', substr="expected ':'")
st("bad_nul_in_header", None, header_text=b'{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}\0\0', substr="trailing bytes")

with open(os.path.join(out, "expect.tsv"), "w") as f:
    for name, substr in expect:
        f.write(f"{name}\t{substr}\n")
print(f"{len(expect)} files in {out}", file=sys.stderr)
