#!/usr/bin/env python3
"""Writes tests/data/fuzz/kv_file/seed.mgkv: a small, valid saved-conversation KV entry
(core/cache/kv_file.h, version 1) matching the expectation fuzz/fuzz_kv_file.cpp uses.
Checksums come from the system's libxxhash (the same XXH3-64 the app links)."""
import ctypes, json, struct, sys

xxh = ctypes.CDLL("libxxhash.so.0")
xxh.XXH3_64bits.restype = ctypes.c_uint64
xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

def h(b):
    return xxh.XXH3_64bits(b, len(b))

layers, heads, head_dim, positions = 2, 2, 4, 3
meta = json.dumps({"model": "fuzz-model", "conversation": "fuzz-conversation", "layers": layers,
                   "kvHeads": heads, "headDim": head_dim, "dtype": "float32", "positions": positions,
                   "messages": [{"user": True, "text": "0" * 32, "answer": []},
                                {"user": False, "text": "1" * 32, "answer": [5, 6, 2]}]},
                  separators=(",", ":")).encode()
keys = struct.pack("<3q", 1, -123456789, 7)
payload = b"".join(struct.pack("<f", float(i % 17) / 4) for i in range(layers * 2 * heads * positions * head_dim))
head = b"MGDKV\r\n\x1a" + struct.pack("<IIQQQQQ", 1, len(meta), len(keys), len(payload), h(meta + keys), h(payload), 0)
head += struct.pack("<Q", h(head))
out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/fuzz/kv_file/seed.mgkv"
open(out, "wb").write(head + meta + keys + payload)
