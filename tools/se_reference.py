#!/usr/bin/env python3
"""Independent reference implementation of aorta's selective encryption
(docs/selective-encryption.md, docs/vault-format.md), written from the spec
with Python's `cryptography` package (>= 44, for Argon2id). It rebuilds the
committed test vectors in docs/vectors/vault-format/ from their inputs and
checks them byte for byte, and opens the private containers with AES-GCM.

CI does not run it (the Rust test `vault_format_vectors` checks the same
files); run it by hand after changing the format:

    python3 tools/se_reference.py [docs/vectors/vault-format]
"""
import hashlib
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
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


def hkdf(salt, ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def piece_indices(seed, n):
    # ChaCha20 (djb, 64-bit counter, stream 0) keystream; OpenSSL's 16-byte
    # IV is counter||nonce words, all zero here, identical while < 2^32 blocks.
    enc = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    return [b & 7 for b in enc.update(b"\0" * n)]


def encode(hash_key, seed, content):
    n = (len(content) + 31) // 32
    padded = content + b"\0" * (n * 32 - len(content))
    js = piece_indices(seed, n)
    pub, priv = bytearray(), bytearray()
    for i in range(n):
        unit = padded[32 * i:32 * i + 32]
        pieces = [unit[4 * k:4 * k + 4] for k in range(8)]
        j = js[i]
        h = hashlib.sha256(pieces[j] + hash_key + struct.pack(">Q", i)).digest()
        rest = b"".join(p for k, p in enumerate(pieces) if k != j)
        pub += bytes(a ^ b for a, b in zip(rest, h[:28]))
        priv += pieces[j]
    return bytes(pub), bytes(priv)


def main():
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/vectors/vault-format")
    data = (d / "input.bin").read_bytes()
    pw = (d / "passphrase.txt").read_bytes()
    k = Argon2id(salt=SALT, length=32, iterations=1, lanes=1, memory_cost=8).derive(pw)
    head, content = data[:HEAD_LEN], data[HEAD_LEN:]
    for mode, mode_byte in (("faithful", 1), ("strong", 2)):
        if mode == "faithful":
            hash_key = k
            seed = hkdf(None, k, b"aorta-se v1 faithful prng seed")
        else:
            hash_key = hkdf(SECRET, k, b"aorta-se v1 strong hash key")
            seed = hkdf(SECRET, k, b"aorta-se v1 strong prng seed")
        body, pieces = encode(hash_key, seed, content)
        header = b"AOSP" + bytes([1, mode_byte, 0, 0]) + RECORD_ID + struct.pack(">Q", len(content))
        leaves = [hashlib.sha256(body[o:o + SEGMENT]).digest() for o in range(0, len(body), SEGMENT)]
        pub = header + body + hashlib.sha256(header + b"".join(leaves)).digest()
        want = (d / f"{mode}.public.aosp").read_bytes()
        assert pub == want, f"{mode}: public container differs"
        prv = (d / f"{mode}.private.aosr").read_bytes()
        header = prv[:72]
        assert header == (b"AOSR" + bytes([1, mode_byte, 1, 0]) + RECORD_ID + SALT
                          + struct.pack(">III", 8, 1, 1) + NONCE + struct.pack(">Q", len(content))), mode
        aead_key = hkdf(None, k, b"aorta-se v1 private fragment aead key")
        payload = AESGCM(aead_key).decrypt(NONCE, prv[72:], header)
        s = SECRET if mode == "strong" else b"\0" * 32
        assert payload == pub[-32:] + s + struct.pack(">I", HEAD_LEN) + head + pieces, f"{mode}: payload differs"
        print(f"{mode}: public container and private payload match the reference")
    print("OK")


if __name__ == "__main__":
    main()
