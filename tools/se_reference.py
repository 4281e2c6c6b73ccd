#!/usr/bin/env python3
"""Independent reference implementation of aorta's selective encryption
(docs/selective-encryption.md, docs/vault-format.md), written from the spec
with Python's `cryptography` package (>= 44, for Argon2id) and, for format
v2's checksum, the `blake3` package. It rebuilds the committed test vectors
in docs/vectors/vault-format/ (format v1 and v2) from their inputs and checks
them byte for byte, and opens the private containers with AES-GCM.

CI does not run it (the Rust test `vault_format_vectors` checks the same
files); run it by hand after changing the format:

    python3 tools/se_reference.py [docs/vectors/vault-format]
"""
import hashlib
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# The fixed values the Rust generator uses (tests/vault_format_vectors.rs).
SALT = b"aorta-vec-salt-1"
RECORD_ID = b"record-id-000001"
NONCE = b"nonce-000001"
SECRET = bytes([0x5A]) * 32
HEAD_LEN = 10
SEGMENT = 8192 * 28  # public body bytes per checksum leaf
LEAF_CONTEXT = "aorta-se v2 public fragment checksum segment"
ROOT_CONTEXT = "aorta-se v2 public fragment checksum"


def hkdf(salt, ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def piece_indices(seed, n):
    # ChaCha20 (djb, 64-bit counter, stream 0) keystream; OpenSSL's 16-byte
    # IV is counter||nonce words, all zero here, identical while < 2^32 blocks.
    enc = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    return [b & 7 for b in enc.update(b"\0" * n)]


def sha_mask(hash_key):
    return lambda piece, i: hashlib.sha256(piece + hash_key + struct.pack(">Q", i)).digest()


def aes_mask(key):
    # AES-256 of X_i,b = piece || u64be(i) || b || 0x4d || 0x00 0x00, b = 0, 1 (ECB = raw blocks).
    def mask(piece, i):
        enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        x = b"".join(piece + struct.pack(">QBB", i, b, 0x4D) + b"\0\0" for b in (0, 1))
        return enc.update(x) + enc.finalize()
    return mask


def encode(mask, seed, content):
    n = (len(content) + 31) // 32
    padded = content + b"\0" * (n * 32 - len(content))
    js = piece_indices(seed, n)
    pub, priv = bytearray(), bytearray()
    for i in range(n):
        unit = padded[32 * i:32 * i + 32]
        pieces = [unit[4 * k:4 * k + 4] for k in range(8)]
        j = js[i]
        h = mask(pieces[j], i)
        rest = b"".join(p for k, p in enumerate(pieces) if k != j)
        pub += bytes(a ^ b for a, b in zip(rest, h[:28]))
        priv += pieces[j]
    return bytes(pub), bytes(priv)


def checksum(version, header, body):
    segs = [body[o:o + SEGMENT] for o in range(0, len(body), SEGMENT)]
    if version == 1:
        return hashlib.sha256(header + b"".join(hashlib.sha256(g).digest() for g in segs)).digest()
    import blake3  # only format v2 needs it

    leaves = b"".join(blake3.blake3(g, derive_key_context=LEAF_CONTEXT).digest() for g in segs)
    return blake3.blake3(header + leaves, derive_key_context=ROOT_CONTEXT).digest()


# (file stem, input file, D_head length, mode, format version)
CASES = [
    ("faithful", "input.bin", HEAD_LEN, "faithful", 1),
    ("strong", "input.bin", HEAD_LEN, "strong", 1),
    ("faithful-v2", "input.bin", HEAD_LEN, "faithful", 2),
    ("strong-v2", "input.bin", HEAD_LEN, "strong", 2),
    ("strong-v2-2000", "input-2000.bin", 0, "strong", 2),
]


def main():
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/vectors/vault-format")
    pw = (d / "passphrase.txt").read_bytes()
    k = Argon2id(salt=SALT, length=32, iterations=1, lanes=1, memory_cost=8).derive(pw)
    for stem, input_name, head_len, mode, version in CASES:
        data = (d / input_name).read_bytes()
        head, content = data[:head_len], data[head_len:]
        mode_byte = 1 if mode == "faithful" else 2
        if mode == "faithful":  # the same in v1 and v2 (Algorithm 1)
            hash_key = k
            mask = sha_mask(hash_key)
            seed = hkdf(None, k, b"aorta-se v1 faithful prng seed")
        elif version == 1:
            hash_key = hkdf(SECRET, k, b"aorta-se v1 strong hash key")
            mask = sha_mask(hash_key)
            seed = hkdf(SECRET, k, b"aorta-se v1 strong prng seed")
        else:
            hash_key = hkdf(SECRET, k, b"aorta-se v2 strong unit mask aes-256 key")
            mask = aes_mask(hash_key)
            seed = hkdf(SECRET, k, b"aorta-se v2 strong prng seed")
        body, pieces = encode(mask, seed, content)
        header = b"AOSP" + bytes([version, mode_byte, 0, 0]) + RECORD_ID + struct.pack(">Q", len(content))
        pub = header + body + checksum(version, header, body)
        want = (d / f"{stem}.public.aosp").read_bytes()
        assert pub == want, f"{stem}: public container differs"
        prv = (d / f"{stem}.private.aosr").read_bytes()
        header = prv[:72]
        assert header == (b"AOSR" + bytes([version, mode_byte, 1, 0]) + RECORD_ID + SALT
                          + struct.pack(">III", 8, 1, 1) + NONCE + struct.pack(">Q", len(content))), stem
        aead_key = hkdf(None, k, b"aorta-se v1 private fragment aead key")
        payload = AESGCM(aead_key).decrypt(NONCE, prv[72:], header)
        s = SECRET if mode == "strong" else b"\0" * 32
        assert payload == pub[-32:] + s + struct.pack(">I", head_len) + head + pieces, f"{stem}: payload differs"
        material = (b"AOSM" + bytes([version, mode_byte, 0, 0]) + RECORD_ID + struct.pack(">Q", len(content))
                    + pub[-32:] + hash_key + seed + struct.pack(">I", head_len) + head + pieces)
        assert material == (d / f"{stem}.material.aosm").read_bytes(), f"{stem}: recovery material differs"
        print(f"{stem}: public container, private payload and recovery material match the reference")
    print("OK")


if __name__ == "__main__":
    main()
